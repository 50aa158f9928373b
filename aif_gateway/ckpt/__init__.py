"""Checkpoints from training jobs, through the filesystem or S3: one copy, two doors.

Saving and loading need the ``ckpt`` extra (PyTorch, zarr, numcodecs):
``pip install 'aif-gateway[ckpt]'``. The names below are imported when first used, so the
doors, the manifest and ``verify`` work on a node without PyTorch (``aif-gateway ckpt verify``).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "save": "api", "save_async": "api", "load": "api", "verify": "api", "PendingSave": "api",
    "AifStorageWriter": "dcp", "AifStorageReader": "dcp", "SaveStats": "dcp",
    "CheckpointNotFound": "manifest", "IntegrityError": "manifest",
    "DoorOptions": "destination", "open_door": "destination",
    "save_zarr": "zarrfmt", "load_zarr": "zarrfmt",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'aif_gateway.ckpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
