"""Who is calling: access keys mapped to named users, and the POSIX user each one acts as.

A user's POSIX ids come from the users file, explicitly (``uid``, ``gid``, ``groups``) or by
name through NSS (``posix_user``: passwd, LDAP, SSSD...); ``aif_gateway.posix_ids`` turns
them into the ids a request's filesystem work runs with.
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
    groups: tuple[int, ...] = ()  # supplementary groups, with uid/gid
    posix_user: str | None = None  # a login name resolved through NSS, instead of uid/gid/groups
    admin: bool = False
    allow_root: bool = False  # uid 0 acts as root; otherwise it is squashed to nobody


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
    """Parse ``[[users]]`` tables: name, access_key, secret_key; optional uid, gid, groups,
    posix_user, admin, allow_root."""
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
        unknown = set(entry) - USER_FIELDS
        if unknown:
            raise IdentityError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        out.append(identity_from_entry(entry, where))
    return out


USER_FIELDS = frozenset(
    {"name", "access_key", "secret_key", "uid", "gid", "groups", "posix_user", "admin", "allow_root"})


def _is_id(value: object) -> bool:
    # bool is an int subclass: `uid = true` is a mistake, not uid 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32 - 1


def identity_from_entry(entry: dict, where: str) -> Identity:
    """One users-file table as an Identity; ``where`` prefixes every error message."""
    for k in ("uid", "gid"):
        if k in entry and not _is_id(entry[k]):
            raise IdentityError(f"{where}: {k} must be an integer from 0 to 4294967294")
    groups = entry.get("groups", [])
    if not isinstance(groups, list) or not all(_is_id(g) for g in groups):
        raise IdentityError(f"{where}: groups must be a list of numeric group ids, e.g. groups = [100, 2001]")
    posix_user = entry.get("posix_user")
    if posix_user is not None:
        if not isinstance(posix_user, str) or not posix_user:
            raise IdentityError(f"{where}: posix_user must be a login name")
        if {"uid", "gid", "groups"} & set(entry):
            raise IdentityError(f"{where}: give either posix_user (ids looked up by name) or uid/gid/groups, not both")
    if "uid" in entry and "gid" not in entry:
        raise IdentityError(f"{where}: uid needs gid (the primary group files are created with)")
    if ("gid" in entry or groups) and "uid" not in entry:
        raise IdentityError(f"{where}: gid and groups need uid")
    for k in ("admin", "allow_root"):
        if k in entry and not isinstance(entry[k], bool):
            raise IdentityError(f"{where}: {k} must be true or false")
    return Identity(
        name=str(entry["name"]),
        access_key=str(entry["access_key"]),
        secret_key=str(entry["secret_key"]),
        uid=entry.get("uid"),
        gid=entry.get("gid"),
        groups=tuple(groups),
        posix_user=posix_user,
        admin=entry.get("admin", False),
        allow_root=entry.get("allow_root", False),
    )
