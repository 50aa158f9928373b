"""A file made elsewhere takes what its new directory would have given it at creation.

Uploads are written in the gateway's tmp/ (mode ``TEMP_FILE_MODE``: nobody else may read bytes
not yet published) and renamed into place, so the kernel never applies the destination's
defaults to them. ``take_directory_defaults`` gives the file, just before the rename, what the
kernel would have given a file created there with ``NEW_FILE_MODE`` (as cp and most tools
create files):
- its mode: ``NEW_FILE_MODE`` less the gateway's umask (the unit's ``UMask=``);
- the group of a setgid directory (the kernel gives it to any creator, member of the group or
  not, so it is done with the gateway's ids);
- the directory's default ACL as the file's access ACL, each entry limited by the creation
  mode's bits as in the kernel's ``posix_acl_create``, the umask ignored as it is there.
Mode and ACL are set with the caller's ids: the file is theirs.
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from .creds import as_gateway

__all__ = ["TEMP_FILE_MODE", "take_directory_defaults"]

# The mode cp and most tools create files with: a published file gets it, less the umask.
NEW_FILE_MODE = 0o666
# The mode of a file in tmp/: nobody else may read bytes not yet published.
TEMP_FILE_MODE = 0o600

DEFAULT_ACL = "system.posix_acl_default"
ACCESS_ACL = "system.posix_acl_access"

_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")
_USER_OBJ, _GROUP_OBJ, _MASK, _OTHER = 0x01, 0x04, 0x10, 0x20
_NO_ACLS = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}


def _acl_for_new_file(default_acl: bytes, mode: int) -> bytes | None:
    """The access ACL a file created with ``mode`` gets from ``default_acl`` (None: malformed)."""
    body = default_acl[_HEADER.size :]
    if len(default_acl) < _HEADER.size or len(body) % _ENTRY.size:
        return None
    entries = [_ENTRY.unpack_from(body, i) for i in range(0, len(body), _ENTRY.size)]
    has_mask = any(tag == _MASK for tag, _, _ in entries)
    limits = {_USER_OBJ: (mode >> 6) & 7, _OTHER: mode & 7, _MASK if has_mask else _GROUP_OBJ: (mode >> 3) & 7}
    out = [default_acl[: _HEADER.size]]
    for tag, perm, ident in entries:
        out.append(_ENTRY.pack(tag, perm & limits.get(tag, 7), ident))
    return b"".join(out)


def _read_umask() -> int:
    # Read, not set-and-restore: os.umask is process-wide, and a thread could create a file in
    # between. The gateway never changes its umask after start.
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


_UMASK = _read_umask()


def take_directory_defaults(path: str | os.PathLike[str], dir_fd: int) -> None:
    """Give the file at ``path`` the mode, setgid group and default ACL a file created in the
    directory ``dir_fd`` would have had (blocking)."""
    os.chmod(path, NEW_FILE_MODE & ~_UMASK, follow_symlinks=False)
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
