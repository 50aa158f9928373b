"""Who is calling: access keys mapped to named users with POSIX ids.

The uid/gid are stored and exposed now so that per-request fsuid/fsgid can be switched on
later without reshaping the storage layer.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Identity:
    name: str
    access_key: str
    secret_key: str = ""
    uid: int | None = None
    gid: int | None = None
    admin: bool = False


class IdentityError(ValueError):
    """A users file that cannot be used; the message names the file and the problem."""


class IdentityTable:
    def __init__(self, identities: list[Identity]) -> None:
        self._by_key: dict[str, Identity] = {}
        for ident in identities:
            if ident.access_key in self._by_key:
                raise IdentityError(f"access key {ident.access_key!r} is defined twice")
            self._by_key[ident.access_key] = ident

    def lookup(self, access_key: str) -> Identity | None:
        return self._by_key.get(access_key)

    def __iter__(self):
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)


def load_users_file(path: Path) -> list[Identity]:
    """Parse ``[[users]]`` tables: name, access_key, secret_key, optional uid, gid, admin."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise IdentityError(f"{path}: users file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise IdentityError(f"{path}: not valid TOML: {exc}") from None
    users = data.get("users")
    if not isinstance(users, list) or not users:
        raise IdentityError(f"{path}: expected one or more [[users]] tables")
    out = []
    for i, entry in enumerate(users, 1):
        where = f"{path}: [[users]] #{i}"
        if not isinstance(entry, dict):
            raise IdentityError(f"{where}: not a table")
        missing = [k for k in ("name", "access_key", "secret_key") if not entry.get(k)]
        if missing:
            raise IdentityError(f"{where}: missing {', '.join(missing)}")
        unknown = set(entry) - {"name", "access_key", "secret_key", "uid", "gid", "admin"}
        if unknown:
            raise IdentityError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for k in ("uid", "gid"):
            if k in entry and (not isinstance(entry[k], int) or entry[k] < 0):
                raise IdentityError(f"{where}: {k} must be a non-negative integer")
        out.append(
            Identity(
                name=str(entry["name"]),
                access_key=str(entry["access_key"]),
                secret_key=str(entry["secret_key"]),
                uid=entry.get("uid"),
                gid=entry.get("gid"),
                admin=bool(entry.get("admin", False)),
            )
        )
    return out
