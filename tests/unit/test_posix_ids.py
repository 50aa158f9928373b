"""Whom each S3 user acts as (aif_gateway/posix_ids.py), and what a new file inherits
(aif_gateway/fsio/dirdefaults.py)."""

from __future__ import annotations

import os
import pwd
import struct

import pytest

from aif_gateway.fsio.creds import PosixIds
from aif_gateway.fsio.dirdefaults import _acl_for_new_file
from aif_gateway.identity import Identity
from aif_gateway.posix_ids import PosixIdError, PosixIdMap, resolve

NOBODY = pwd.getpwnam("nobody")


def user(**fields) -> Identity:
    return Identity(name="u", access_key="AK", secret_key="s", **fields)


def test_explicit_ids_are_taken_as_they_are() -> None:
    assert resolve(user(uid=1000, gid=1001, groups=(5, 6)), require_posix_ids=True) == PosixIds(1000, 1001, (5, 6))


def test_a_user_without_ids_acts_as_the_gateway_unless_ids_are_required() -> None:
    assert resolve(user(), require_posix_ids=False) is None
    with pytest.raises(PosixIdError, match="has no POSIX ids"):
        resolve(user(), require_posix_ids=True)


def test_uid_0_is_squashed_to_nobody_unless_allowed() -> None:
    assert resolve(user(uid=0, gid=0), require_posix_ids=False) == PosixIds(NOBODY.pw_uid, NOBODY.pw_gid)
    assert resolve(user(uid=0, gid=0, allow_root=True), require_posix_ids=False) == PosixIds(0, 0)


def test_group_0_is_dropped_unless_allowed() -> None:
    assert resolve(user(uid=7, gid=0, groups=(0, 9)), require_posix_ids=False) == PosixIds(7, NOBODY.pw_gid, (9,))
    assert resolve(user(uid=7, gid=0, groups=(0,), allow_root=True), require_posix_ids=False) == PosixIds(7, 0, (0,))


def test_posix_user_is_looked_up_by_name() -> None:
    entry = pwd.getpwnam("root")
    ids = resolve(user(posix_user="root", allow_root=True), require_posix_ids=True)
    assert (ids.uid, ids.gid) == (entry.pw_uid, entry.pw_gid)
    assert entry.pw_gid not in ids.groups  # the primary group is not repeated


def test_an_unknown_posix_user_says_what_to_check() -> None:
    with pytest.raises(PosixIdError, match="getent passwd no-such-aif-user"):
        resolve(user(posix_user="no-such-aif-user"), require_posix_ids=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="a gateway not run as root maps every key to its own user")
def test_the_map_answers_per_access_key() -> None:
    alice = Identity("alice", "AKA", "s", uid=1, gid=1)
    admin = Identity("admin", "AKB", "s")
    table = PosixIdMap.build([alice, admin])
    assert table.ids_for(alice) == PosixIds(1, 1) and table.ids_for(admin) is None


def _acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


USER_OBJ, USER, GROUP_OBJ, MASK, OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ANY = 0xFFFFFFFF


def test_a_default_acl_becomes_the_access_acl_limited_by_the_creation_mode() -> None:
    default = _acl((USER_OBJ, 7, ANY), (USER, 7, 1002), (GROUP_OBJ, 5, ANY), (MASK, 7, ANY), (OTHER, 5, ANY))
    # Created with 0640: the mask takes the group bits, other loses everything.
    assert _acl_for_new_file(default, 0o640) == _acl(
        (USER_OBJ, 6, ANY), (USER, 7, 1002), (GROUP_OBJ, 5, ANY), (MASK, 4, ANY), (OTHER, 0, ANY)
    )


def test_without_a_mask_the_group_entry_takes_the_group_bits() -> None:
    default = _acl((USER_OBJ, 7, ANY), (GROUP_OBJ, 7, ANY), (OTHER, 7, ANY))
    assert _acl_for_new_file(default, 0o666) == _acl((USER_OBJ, 6, ANY), (GROUP_OBJ, 6, ANY), (OTHER, 6, ANY))


@pytest.mark.parametrize("data", [b"", b"\x02\x00\x00", _acl((USER_OBJ, 7, ANY)) + b"\x01"])
def test_a_malformed_default_acl_is_not_copied(data: bytes) -> None:
    assert _acl_for_new_file(data, 0o666) is None
