"""A file made elsewhere takes what its new directory would have given it at creation.

Uploads are written in the gateway's tmp/ and renamed into place, so the kernel never applies
the destination directory's inheritance to them: the group of a setgid directory and its
default POSIX ACL. ``inherit_from_directory`` applies both just before the rename, as the
kernel would have for a file created there with ``NEW_FILE_MODE``: the group becomes the
directory's (the kernel does that for any creator, member of the group or not, so it is done
with the gateway's ids), and the default ACL becomes the file's access ACL, each entry limited
by the creation mode's bits as in the kernel's ``posix_acl_create``, the umask ignored as it
is there (done with the caller's ids: the file is theirs).

Public API: ``inherit_from_directory(path, dir_fd)``.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from .creds import as_gateway
from .newfile import NEW_FILE_MODE

DEFAULT_ACL = "system.posix_acl_default"
ACCESS_ACL = "system.posix_acl_access"

_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_USER_OBJ, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x04, 0x10, 0x20
_NO_ACLS = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}


def _acl_for_new_file(default_acl: bytes, mode: int) -> bytes | None:
    """The access ACL a file created with ``mode`` gets from ``default_acl`` (None: malformed)."""
    body = default_acl[_HEADER.size:]
    if len(default_acl) < _HEADER.size or len(body) % _ENTRY.size:
        return None
    entries = [_ENTRY.unpack_from(body, i) for i in range(0, len(body), _ENTRY.size)]
    has_mask = any(tag == _MASK for tag, _, _ in entries)
    limits = {_USER_OBJ: (mode >> 6) & 7, _OTHER: mode & 7, _MASK if has_mask else _GROUP_OBJ: (mode >> 3) & 7}
    out = [default_acl[:_HEADER.size]]
    for tag, perm, ident in entries:
        out.append(_ENTRY.pack(tag, perm & limits.get(tag, 7), ident))
    return b"".join(out)


def inherit_from_directory(path: str | os.PathLike[str], dir_fd: int) -> None:
    """Give the file at ``path`` its directory's setgid group and default ACL (blocking)."""
    directory = os.fstat(dir_fd)
    if directory.st_mode & stat.S_ISGID and os.lstat(path).st_gid != directory.st_gid:
        try:
            with as_gateway():
                os.chown(path, -1, directory.st_gid, follow_symlinks=False)
        except PermissionError:
            # A gateway not run as root (a personal one) may give only its own groups; the
            # file keeps the user's group, as it would after a cp -p.
            pass
    try:
        default_acl = os.getxattr(dir_fd, DEFAULT_ACL)
    except OSError as exc:
        if exc.errno in _NO_ACLS:
            return
        raise
    acl = _acl_for_new_file(default_acl, NEW_FILE_MODE)
    if acl is not None:
        os.setxattr(path, ACCESS_ACL, acl, follow_symlinks=False)
