"""Where the gateway's identities come from, and the first-start key pair.

Order: ``--users FILE`` and/or ``AIF_ACCESS_KEY``/``AIF_SECRET_KEY`` (an administrator). With
neither, a pair is generated on first start and kept in ``ROOT/.aifgw/credentials`` (mode 0600),
so a restart keeps working with the keys the user already pasted into their tools. Its secret is
printed once, when generated; later starts name the file and the access key only.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path

from .config import Settings
from .identity import Identity, IdentityError, IdentityTable, load_users_file
from .posix_ids import PosixIdMap

__all__ = [
    "CREDENTIALS_FILE",
    "banner",
    "key_reminder",
    "load_identities",
    "new_access_key",
    "new_secret_key",
    "resolve_identities",
]

CREDENTIALS_FILE = Path(".aifgw") / "credentials"


def _random(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_access_key() -> str:
    """20 upper-case letters and digits, as AWS's: clients and tools that check the shape accept it."""
    return "AIF" + _random(17, string.ascii_uppercase + string.digits)


def new_secret_key() -> str:
    """40 characters (~238 bits), as long as AWS's secrets."""
    return _random(40, string.ascii_letters + string.digits)


def _load_or_create_generated(root: Path) -> tuple[Identity, bool]:
    path = root / CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text())
        return Identity(name="admin", access_key=data["access_key"], secret_key=data["secret_key"], admin=True), False
    except FileNotFoundError:
        pass
    except (ValueError, KeyError) as exc:
        raise IdentityError(f"{path}: unreadable credentials ({exc}); delete it to generate a new pair") from exc
    ident = Identity(name="admin", access_key=new_access_key(), secret_key=new_secret_key(), admin=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL: when several gateways start at once on one root, exactly one pair wins.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _load_or_create_generated(root)
    with os.fdopen(fd, "w") as f:
        json.dump({"access_key": ident.access_key, "secret_key": ident.secret_key}, f)
    return ident, True


def resolve_identities(root: Path, users_file: Path | None) -> tuple[IdentityTable, Identity | None, bool]:
    """Returns (table, the generated admin or None, whether it was created just now)."""
    identities: list[Identity] = []
    env_key, env_secret = os.environ.get("AIF_ACCESS_KEY"), os.environ.get("AIF_SECRET_KEY")
    if bool(env_key) != bool(env_secret):
        raise IdentityError("set both AIF_ACCESS_KEY and AIF_SECRET_KEY, or neither")
    if env_key and env_secret:
        identities.append(Identity(name="admin", access_key=env_key, secret_key=env_secret, admin=True))
    if users_file is not None:
        identities.extend(load_users_file(users_file))
    generated = None
    created = False
    if not identities:
        generated, created = _load_or_create_generated(root)
        identities.append(generated)
    return IdentityTable(identities), generated, created


def load_identities(settings: Settings) -> tuple[IdentityTable, PosixIdMap]:
    """Everyone who may call the gateway and the POSIX ids each acts with, as the users are
    (re)loaded (SIGHUP); ``PosixIdError`` when ids the settings require cannot be had."""
    table = resolve_identities(settings.root, settings.users_file)[0]
    return table, PosixIdMap.build(table, require_posix_ids=settings.require_posix_ids)


def banner(ident: Identity, endpoint: str, root: Path, region: str) -> str:
    """Ready-to-paste client settings for the administrator generated just now: the only time
    its secret is shown (later starts print ``key_reminder``)."""
    return f"""
aif-gateway credentials (generated now; stored in {root / CREDENTIALS_FILE}, mode 0600; the secret
key is shown only this once)
  access key: {ident.access_key}
  secret key: {ident.secret_key}
  endpoint:   {endpoint}

awscli:
  export AWS_ACCESS_KEY_ID={ident.access_key} AWS_SECRET_ACCESS_KEY={ident.secret_key} AWS_DEFAULT_REGION={region}
  aws --endpoint-url {endpoint} s3 mb s3://demo
  echo hello > hello.txt && aws --endpoint-url {endpoint} s3 cp hello.txt s3://demo/
  aws --endpoint-url {endpoint} s3 ls s3://demo/

rclone:
  export RCLONE_CONFIG_AIF_TYPE=s3 RCLONE_CONFIG_AIF_PROVIDER=Other RCLONE_CONFIG_AIF_ENDPOINT={endpoint}
  export RCLONE_CONFIG_AIF_ACCESS_KEY_ID={ident.access_key} RCLONE_CONFIG_AIF_SECRET_ACCESS_KEY={ident.secret_key}
  export RCLONE_CONFIG_AIF_REGION={region}
  rclone lsf aif:demo

boto3:
  s3 = boto3.client("s3", endpoint_url="{endpoint}", aws_access_key_id="{ident.access_key}",
                    aws_secret_access_key="{ident.secret_key}", region_name="{region}")
"""


def key_reminder(ident: Identity, endpoint: str, root: Path) -> str:
    """What a later start says about the generated pair: where it is, never the secret."""
    return (
        f"\naif-gateway credentials: access key {ident.access_key}, endpoint {endpoint}; the secret key is "
        f"in {root / CREDENTIALS_FILE} (mode 0600, JSON field secret_key)\n"
    )
