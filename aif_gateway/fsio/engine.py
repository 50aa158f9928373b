"""The data-path engine: the C extension ``aif_gateway._native`` when it is importable, else its
pure-Python version ``aif_gateway.fsio.pyengine``. Both keep the contract in ``aif_gateway/_native.pyi``.

``AIF_ENGINE`` chooses: ``python`` forces the Python version, ``native`` requires the C extension (an
ImportError otherwise, so a deployment that expects native speed cannot silently lose it), and
unset or ``auto`` takes native when it is there.
"""

from __future__ import annotations

import os
from types import ModuleType

# The contract of both engines (aif_gateway/_native.pyi), plus which one runs.
__all__ = [
    "ENGINE",
    "RESOLVE_BENEATH",
    "RESOLVE_NO_MAGICLINKS",
    "RESOLVE_NO_SYMLINKS",
    "RESOLVE_NO_XDEV",
    "ChunkedDecoder",
    "ChunkedError",
    "Hasher",
    "aligned_buffer",
    "copy_range",
    "copy_small_files",
    "engine_info",
    "fallocate",
    "open_beneath",
    "pread_striped",
    "pwrite_striped",
    "recv_hashed",
    "reflink",
    "restore_thread_creds",
    "set_thread_creds",
    "stat_entries",
    "thread_creds",
    "write_hashed",
]


def _choose(requested: str) -> ModuleType:
    # The Python version is imported only when it runs: it loads awscrt, a tenth of a second that every
    # short-lived command (``aif-gateway stage``) would otherwise pay.
    if requested == "python":
        from . import pyengine

        return pyengine
    if requested not in ("native", "auto", ""):
        raise ValueError(f"AIF_ENGINE must be native, python or auto, not {requested!r}")
    try:
        from .. import _native
    except ImportError:
        if requested == "native":
            raise
        from . import pyengine

        return pyengine
    return _native


_engine = _choose(os.environ.get("AIF_ENGINE", "auto").strip().lower())

Hasher = _engine.Hasher
write_hashed = _engine.write_hashed
recv_hashed = _engine.recv_hashed
pwrite_striped = _engine.pwrite_striped
pread_striped = _engine.pread_striped
copy_range = _engine.copy_range
reflink = _engine.reflink
fallocate = _engine.fallocate
aligned_buffer = _engine.aligned_buffer
engine_info = _engine.engine_info
ChunkedDecoder = _engine.ChunkedDecoder
ChunkedError = _engine.ChunkedError
stat_entries = _engine.stat_entries
copy_small_files = _engine.copy_small_files
set_thread_creds = _engine.set_thread_creds
restore_thread_creds = _engine.restore_thread_creds
thread_creds = _engine.thread_creds
open_beneath = _engine.open_beneath
RESOLVE_BENEATH: int = _engine.RESOLVE_BENEATH
RESOLVE_NO_SYMLINKS: int = _engine.RESOLVE_NO_SYMLINKS
RESOLVE_NO_MAGICLINKS: int = _engine.RESOLVE_NO_MAGICLINKS
RESOLVE_NO_XDEV: int = _engine.RESOLVE_NO_XDEV
# Which engine runs: "native" or "python".
ENGINE: str = engine_info()["engine"]
