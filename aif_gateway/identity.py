"""Who is calling: access keys mapped to named users, and the POSIX user each one acts as.

A user's POSIX ids come from the users file, explicitly (``uid``, ``gid``, ``groups``) or by
name through NSS (``posix_user``: passwd, LDAP, SSSD...); ``aif_gateway.posix_ids`` turns
them into the ids a request's filesystem work runs with.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Identity",
    "IdentityError",
    "IdentityTable",
    "identity_from_entry",
    "load_users_file",
    "parse_users",
    "read_users_file",
]


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

    def __iter__(self) -> Iterator[Identity]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def replace_with(self, other: IdentityTable) -> None:
        """Take ``other``'s identities (a reload). One rebinding: a lookup sees the old table or
        the new one, never a mix; a request keeps the Identity it authenticated with."""
        self._by_key = other._by_key


def load_users_file(path: Path) -> list[Identity]:
    """Parse ``[[users]]`` tables: name, access_key, secret_key; optional uid, gid, groups,
    posix_user, admin, allow_root. The file must be private to a trusted owner (read_users_file)."""
    return parse_users(read_users_file(path), path)


def read_users_file(path: Path, *, check_owner: bool = True) -> str:
    """The users file's text, refused unless only its owner may read or write it.

    It holds every user's secret key, and whoever may write it may make any key an admin; so
    with ``check_owner`` its owner must also be root or this process's user. ``aif-gateway users``
    run by root edits a file whatever its owner (it keeps the owner), hence the switch.
    """
    try:
        # O_NONBLOCK: a FIFO put in its place is refused below, instead of hanging the open.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise IdentityError(f"{path}: users file not found") from None
    with os.fdopen(fd, "rb") as f:
        # Checked on the open file, so a file swapped in after the check is not the one read.
        problem = users_file_problem(os.fstat(fd), path, check_owner=check_owner)
        if problem:
            raise IdentityError(problem)
        data = f.read()
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise IdentityError(f"{path}: not UTF-8 text ({exc})") from None


def users_file_problem(st: os.stat_result, path: Path, *, check_owner: bool = True) -> str | None:
    """What is wrong with a users file's type, mode or owner, with what to run; None when nothing."""
    if not stat.S_ISREG(st.st_mode):
        return f"{path}: not a regular file"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return (
            f"{path}: mode {mode:04o} lets other users read or change it, and it holds every "
            f"user's secret key; make it private to its owner: chmod 600 {path}"
        )
    euid = os.geteuid()
    if check_owner and st.st_uid not in (0, euid):
        return (
            f"{path}: owned by uid {st.st_uid}, who could make any key an admin; only root or "
            f"the gateway's own user (uid {euid}) may own it: chown {euid} {path}"
        )
    return None


def parse_users(text: str, path: Path) -> list[Identity]:
    """The users in a users file's text; ``path`` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise IdentityError(f"{path}: not valid TOML: {exc}") from None
    users = data.get("users")
    if not isinstance(users, list) or not users:
        raise IdentityError(f"{path}: expected one or more [[users]] tables")
    out: list[Identity] = []
    first_seen: dict[tuple[str, str], int] = {}
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
        ident = identity_from_entry(entry, where)
        # Names must be unique too: logs, and `aif-gateway users show NAME`, name users by them.
        for field, value in (("name", ident.name), ("access_key", ident.access_key)):
            if (field, value) in first_seen:
                raise IdentityError(
                    f"{where}: {field} {value!r} is already used by [[users]] "
                    f"#{first_seen[field, value]}; each must be unique"
                )
            first_seen[field, value] = i
        out.append(ident)
    return out


USER_FIELDS = frozenset(
    {"name", "access_key", "secret_key", "uid", "gid", "groups", "posix_user", "admin", "allow_root"}
)


def _is_id(value: object) -> bool:
    # bool is an int subclass: `uid = true` is a mistake, not uid 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32 - 1


def identity_from_entry(entry: dict[str, Any], where: str) -> Identity:
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
