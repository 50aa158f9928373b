"""What can go wrong while staging, as one exception type with an exit code per kind.

The exit codes are the command line's contract (``stage/cli/commands.py`` lists them).
"""

from __future__ import annotations

import errno
from typing import Any

__all__ = ["EXIT_SIGINT", "EXIT_SIGTERM", "StageError", "from_os_error"]

EXIT_CODES = {"transfer": 1, "verify": 1, "usage": 2, "source_missing": 3, "no_space": 4, "permission": 5}
KINDS = frozenset(EXIT_CODES)
# A stage stopped by a signal exits as shells report one: 128 + the signal's number.
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
_MISSING = {errno.ENOENT, errno.ENOTDIR}


class StageError(Exception):
    """``kind`` is one of ``KINDS``; ``exit_code`` follows the CLI contract (1 transfer/verify,
    2 usage, 3 source missing, 4 no space, 5 permission). The engine sets ``report`` when a stage
    fails after it started."""

    def __init__(self, kind: str, message: str, path: str | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown stage error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.path = path
        self.report: Any = None  # the Report of the failed stage, when it got that far

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]

    def __str__(self) -> str:
        return self.message


def from_os_error(exc: OSError, path: str, doing: str, *, source: bool) -> StageError:
    """The one place where an ``errno`` becomes a kind and a message that names the path and says
    what to do. ``doing`` completes "while ...", e.g. "reading the source" or "writing the
    destination"."""
    code = exc.errno
    if code in _NO_SPACE:
        return StageError(
            "no_space",
            f"no space left on the filesystem of {path} (while {doing}): free space or raise the "
            "quota, then re-run; finished files and ranges are kept and will not be copied again",
            path,
        )
    if code in _PERMISSION:
        side = "source" if source else "destination"
        return StageError(
            "permission",
            f"permission denied on the {side} {path} (while {doing}): "
            + ("make it readable by this user" if source else "make it writable by this user or choose another --to"),
            path,
        )
    if source and code in _MISSING:
        return StageError("source_missing", f"source not found: {path} (while {doing})", path)
    return StageError("transfer", f"{path}: {exc.strerror or exc} (while {doing})", path)
