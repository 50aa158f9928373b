"""Where the gateway's identities come from, and the first-start key pair.

Order: ``--users FILE`` and/or ``AIF_ACCESS_KEY``/``AIF_SECRET_KEY`` (an administrator). With
neither, a pair is generated on first start and kept in ``ROOT/.aifgw/credentials`` (mode 0600),
so a restart keeps working with the keys the user already pasted into their tools.
"""

from __future__ import annotations

import json
import os
import secrets
import string
from pathlib import Path

from .config import DEFAULT_REGION
from .identity import Identity, IdentityError, IdentityTable, load_users_file

CREDENTIALS_FILE = Path(".aifgw") / "credentials"


def _random(n: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _load_or_create_generated(root: Path) -> tuple[Identity, bool]:
    path = root / CREDENTIALS_FILE
    try:
        data = json.loads(path.read_text())
        return Identity(name="admin", access_key=data["access_key"],
                        secret_key=data["secret_key"], admin=True), False
    except FileNotFoundError:
        pass
    except (ValueError, KeyError) as exc:
        raise IdentityError(f"{path}: unreadable credentials ({exc}); delete it to generate a new pair")
    ident = Identity(
        name="admin",
        access_key="AIF" + _random(17, string.ascii_uppercase + string.digits),
        secret_key=_random(40, string.ascii_letters + string.digits),
        admin=True,
    )
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


def banner(ident: Identity, endpoint: str, root: Path, created: bool, region: str = DEFAULT_REGION) -> str:
    """Ready-to-paste client settings for the generated administrator (clients must sign for
    the gateway's ``region``)."""
    how = "generated now" if created else "loaded"
    return f"""
aif-gateway credentials ({how}; stored in {root / CREDENTIALS_FILE}, mode 0600)
  access key: {ident.access_key}
  secret key: {ident.secret_key}
  endpoint:   {endpoint}

awscli:
  export AWS_ACCESS_KEY_ID={ident.access_key} AWS_SECRET_ACCESS_KEY={ident.secret_key} AWS_DEFAULT_REGION={region}
  aws --endpoint-url {endpoint} s3 mb s3://demo
  aws --endpoint-url {endpoint} s3 cp ./file.bin s3://demo/

rclone:
  export RCLONE_CONFIG_AIF_TYPE=s3 RCLONE_CONFIG_AIF_PROVIDER=Other RCLONE_CONFIG_AIF_ENDPOINT={endpoint}
  export RCLONE_CONFIG_AIF_ACCESS_KEY_ID={ident.access_key} RCLONE_CONFIG_AIF_SECRET_ACCESS_KEY={ident.secret_key}
  export RCLONE_CONFIG_AIF_REGION={region}
  rclone lsf aif:demo

boto3:
  s3 = boto3.client("s3", endpoint_url="{endpoint}", aws_access_key_id="{ident.access_key}",
                    aws_secret_access_key="{ident.secret_key}", region_name="{region}")
"""
