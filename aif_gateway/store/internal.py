"""Where the gateway keeps a bucket's internal state, and how it keeps local users out of it.

Why not inside the bucket: users write bucket directories from login nodes too, and whoever may
write a directory may rename any entry of it, ``.aifgw`` included, and put a directory of their
own in its place (with symlinked data files and forged records in it). So a bucket's state lives
in the gateway's own tree, ``ROOT/.aifgw/state/<bucket>``, which only the gateway can rename
(the root directory belongs to it), on the same filesystem as the buckets so that publishing
stays a ``rename``. A mapped bucket on another filesystem than the root keeps its state in
``<bucket dir>/.aifgw``: there a user who may write the bucket can rename it away (a denial of
service on a bucket they can write anyway), but never make the gateway use theirs, since every
directory below is checked before use (``check_dir``: a real directory, the gateway's, with
exactly the expected mode) and refused otherwise.

Layout (owner, mode)::

    STATE/              gateway 0711   traversable, not listable
    STATE/locks         gateway 0600   key locks (``locks.key_lock``)
    STATE/tmp/          gateway 1733   temp files: each its writer's own (random name, O_EXCL, 0600);
                                       sticky, so nobody renames or removes another's
    STATE/uploads/      gateway 1733   one directory per multipart upload, its initiator's, 0700:
                                       the kernel keeps other users out of its parts and records
    STATE/completed/    gateway 0700   answers of finished Completes (retries get the same answer)
    STATE/meta, tags, blobs  gateway 0700   metadata sidecars and oversized xattr values

Temp files and upload directories are created with the requesting user's ids, so the bytes are
the user's (quota included) and publishing them is a rename the kernel allows exactly when the
user may write the destination directory. Everything the gateway must trust is written with the
gateway's own ids into directories no user can write.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from ..errors import S3Error
from ..fsio.creds import GATEWAY
from .paths import INTERNAL_DIR

__all__ = ["STATE_LAYOUT", "bucket_state_dir", "check_dir", "prepare_root", "prepare_state"]

log = logging.getLogger(__name__)

STATE_SUBDIR = "state"
# ``ROOT/.aifgw`` and ``ROOT/.aifgw/state``: traversable by the users whose state lies below, never listable.
ROOT_STATE_MODE = 0o711
_SHARED = 0o1733  # anyone may create; nobody may list, rename or remove what is not theirs
_PRIVATE = 0o700
STATE_LAYOUT = {"": 0o711, "tmp": _SHARED, "uploads": _SHARED, "completed": _PRIVATE}


class StateTampered(S3Error):
    """A directory the gateway keeps its state in is not what the gateway made."""

    def __init__(self, path: Path, why: str) -> None:
        log.error(
            "internal state directory refused",
            extra={
                "path": str(path),
                "problem": why,
                "remedy": "move it aside (it may hold another user's files); the gateway recreates it",
            },
        )
        super().__init__("InternalError", "The bucket's internal state is damaged; the gateway's log says where.")


def bucket_state_dir(root: Path, name: str, bucket_dir: Path) -> Path:
    """The state directory of bucket ``name`` at ``bucket_dir`` (blocking: stats both)."""
    try:
        same_fs = os.stat(bucket_dir).st_dev == os.stat(root).st_dev
    except FileNotFoundError:
        same_fs = True
    if same_fs:
        return Path(root) / INTERNAL_DIR / STATE_SUBDIR / name
    return Path(bucket_dir) / INTERNAL_DIR


def check_dir(path: Path, mode: int) -> None:
    """``path`` must be a directory (not a symlink) of the gateway's; its mode is set to ``mode``
    where it differs (only the gateway, or root, can have changed it: an older layout's)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise StateTampered(path, "not a directory (a symlink or a file stands in its place)")
    if st.st_uid != GATEWAY.uid:
        raise StateTampered(path, f"owned by uid {st.st_uid}, not the gateway's uid {GATEWAY.uid}")
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode, follow_symlinks=False)


def _make_dir(path: Path, mode: int) -> None:
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        return
    os.chmod(path, mode)  # mkdir's mode passes through the umask; sticky bits not at all


def prepare_root(root: Path) -> None:
    """Make ``ROOT`` and ``ROOT/.aifgw`` (the gateway's, 0711) at start, and warn about a root
    that others may write: they could rename the gateway's state away (blocking)."""
    os.makedirs(root, exist_ok=True)
    internal = Path(root) / INTERNAL_DIR
    _make_dir(internal, ROOT_STATE_MODE)
    check_dir(internal, ROOT_STATE_MODE)
    st = os.stat(root)
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        log.warning(
            "the root directory is writable by other users, who could rename the gateway's "
            "internal state; make it the gateway's alone (chmod go-w)",
            extra={"root": str(root)},
        )


def prepare_state(state: Path) -> None:
    """Create (as needed) and check ``state`` and its shared subdirectories (blocking).

    Call with the gateway's own ids. The parents of a root-level state directory are created
    too (``ROOT/.aifgw``, ``ROOT/.aifgw/state``: gateway 0711)."""
    if state.parent.name == STATE_SUBDIR and state.parent.parent.name == INTERNAL_DIR:
        os.makedirs(state.parent.parent.parent, exist_ok=True)
        for parent in (state.parent.parent, state.parent):
            _make_dir(parent, ROOT_STATE_MODE)
            check_dir(parent, ROOT_STATE_MODE)
    for sub, mode in STATE_LAYOUT.items():
        path = state / sub if sub else state
        try:
            _make_dir(path, mode)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            raise StateTampered(path, "a parent directory vanished while it was being created") from None
        check_dir(path, mode)
