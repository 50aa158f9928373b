"""The POSIX user each S3 user acts as: ids from the users file or from NSS, root squashed.

- ``uid``/``gid``/``groups`` in the users file are taken as they are;
- ``posix_user = "alice"`` is looked up through NSS (``getpwnam`` + ``getgrouplist``), so sites
  with LDAP or SSSD need not copy ids into the file; the lookup happens when the users are
  loaded (at start and at each reload), not per request;
- uid 0 acts as ``nobody``, and group 0 (as primary or supplementary group) is dropped for
  ``nobody``'s group, unless the user has ``allow_root = true`` (root squash, as NFS does);
- a user with no POSIX ids acts with the gateway's own ids (a one-user gateway, the generated
  key of a first start), unless ``require_posix_ids`` refuses such users;
- a gateway not running as root cannot act as anyone else: every key acts as the gateway's user
  (a personal gateway on a login node), and the start-up log says so.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable

from .fsio.creds import PosixIds
from .identity import Identity, IdentityError

__all__ = ["PosixIdError", "PosixIdMap", "personal_gateway", "resolve"]

NOBODY_NAME = "nobody"
NOBODY_ID = 65534


class PosixIdError(IdentityError):
    """A user whose POSIX identity cannot be resolved; the message says what to change."""


def personal_gateway() -> bool:
    """The gateway runs as an ordinary user: it can act only as that user."""
    return os.geteuid() != 0


def _nobody() -> PosixIds:
    try:
        entry = pwd.getpwnam(NOBODY_NAME)
        return PosixIds(entry.pw_uid, entry.pw_gid)
    except KeyError:
        return PosixIds(NOBODY_ID, NOBODY_ID)


def _by_name(identity: Identity) -> PosixIds:
    name = identity.posix_user or ""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise PosixIdError(
            f"user {identity.name!r}: posix_user {name!r} is not known to this node's NSS "
            f"(check `getent passwd {name}`)"
        ) from None
    groups = [g for g in os.getgrouplist(name, entry.pw_gid) if g != entry.pw_gid]
    return PosixIds(entry.pw_uid, entry.pw_gid, tuple(groups))


def resolve(identity: Identity, *, require_posix_ids: bool) -> PosixIds | None:
    if identity.posix_user:
        ids = _by_name(identity)
    elif identity.uid is not None and identity.gid is not None:
        ids = PosixIds(identity.uid, identity.gid, tuple(identity.groups))
    elif require_posix_ids:
        raise PosixIdError(
            f"user {identity.name!r} has no POSIX ids and require_posix_ids is on: give it "
            "uid and gid, or posix_user, in the users file"
        )
    else:
        return None
    if identity.allow_root:
        return ids
    nobody = _nobody()
    if ids.uid == 0:
        return nobody
    if ids.gid == 0 or 0 in ids.groups:
        return PosixIds(ids.uid, nobody.gid if ids.gid == 0 else ids.gid, tuple(g for g in ids.groups if g != 0))
    return ids


class PosixIdMap:
    """The POSIX ids each user acts with, by access key."""

    def __init__(self, by_key: dict[str, PosixIds | None]) -> None:
        self._by_key = by_key

    @classmethod
    def build(cls, identities: Iterable[Identity], *, require_posix_ids: bool = False) -> PosixIdMap:
        """Resolve every user's ids (when the users are loaded); ``PosixIdError`` for one that cannot be."""
        if personal_gateway():
            return cls({})
        return cls({i.access_key: resolve(i, require_posix_ids=require_posix_ids) for i in identities})

    def ids_for(self, identity: Identity) -> PosixIds | None:
        """The ids ``identity`` acts with; None for the gateway's own ids."""
        return self._by_key.get(identity.access_key)

    def replace_with(self, other: PosixIdMap) -> None:
        """Take ``other``'s mapping in place (a reload), as ``IdentityTable.replace_with`` does."""
        self._by_key = other._by_key
