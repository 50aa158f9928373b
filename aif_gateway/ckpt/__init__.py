"""Checkpoints from training jobs, through the filesystem or S3: one copy, two doors.

Saving and loading need the ``ckpt`` extra (PyTorch, zarr, numcodecs):
``pip install 'aif-gateway[ckpt]'``. The names below are imported when first used, so the
doors, the manifest and ``verify`` work on a node without PyTorch (``aif-gateway ckpt verify``).
"""

from __future__ import annotations

from ..lazy_exports import lazy_exports

_HOMES = {
    "save": "api", "save_async": "api", "load": "api", "verify": "api", "PendingSave": "api",
    "AifStorageWriter": "dcp", "AifStorageReader": "dcp", "SaveStats": "dcp",
    "CheckpointNotFound": "manifest", "IntegrityError": "manifest",
    "DoorOptions": "target", "open_door": "target",
    "save_zarr": "zarrfmt", "load_zarr": "zarrfmt",
}
__all__ = sorted(_HOMES)

__getattr__, __dir__ = lazy_exports(__name__, _HOMES)
