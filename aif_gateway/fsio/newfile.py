"""Create a new file laid out for its filesystem: the calls the storage layer makes.

A layout is an optimisation, never a reason to fail a write: wherever it cannot be given, the
file is made with the filesystem's defaults.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from . import gpfs, lustre
from .dirdefaults import TEMP_FILE_MODE
from .fsinfo import fs_info
from .layout import plan_write, preallocation
from .reserve import Reservation

__all__ = ["create_new_file", "space_reservation"]

log = logging.getLogger("aif_gateway.fsio")

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC

_warned: set[str] = set()


def _warn(what: str, path: Path, exc: Exception) -> None:
    level = logging.DEBUG if what in _warned else logging.WARNING
    _warned.add(what)
    log.log(
        level, f"{what} failed; writing with the filesystem's defaults", extra={"path": str(path), "error": str(exc)}
    )


def create_new_file(path: Path, expected_size: int | None) -> int:
    """Create ``path`` exclusively (``O_WRONLY | O_CREAT | O_EXCL``, mode ``TEMP_FILE_MODE``: its
    owner's alone until published) and return its descriptor (blocking).

    On Lustre the file first gets the layout ``layout.plan_write`` chose for ``expected_size`` (a
    layout reserves nothing, so a size hint is enough for it). Anywhere else, and whenever ``lfs``
    fails, it is a plain ``open``. The first failure of each kind is logged as a warning, later
    ones at debug level.
    """
    fs = fs_info(path.parent)
    plan = plan_write(fs, expected_size)
    if plan.lustre is not None:
        try:
            lustre.create_with_layout(path, plan.lustre)
            # lfs made the file (nobody else knows its random name): open, do not recreate.
            return os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except (lustre.LayoutError, OSError) as exc:
            _warn("lfs setstripe", path, exc)
            try:
                os.unlink(path)  # whatever a failed lfs may have left
            except FileNotFoundError:
                pass
    return os.open(path, _CREATE_FLAGS, TEMP_FILE_MODE)


def space_reservation(path: Path, fd: int, expected_size: int | None) -> Reservation | None:
    """Where the policy preallocates (GPFS, and ext4 for large objects), the ``Reservation`` that
    reserves the new file's blocks as its bytes arrive, up to ``expected_size``; None elsewhere."""
    fs = fs_info(path.parent)
    limit = preallocation(fs, expected_size)
    if not limit:
        return None
    reserve = gpfs.preallocate if fs.kind == "gpfs" else gpfs.reserve_keeping_size
    return Reservation(fd, 0, limit, reserve, "preallocation")
