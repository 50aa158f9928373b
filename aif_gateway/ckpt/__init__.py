"""Checkpoints from training jobs, through the filesystem or S3: one copy, readable both ways.

Saving and loading need the ``ckpt`` extra (PyTorch, zarr, numcodecs):
``pip install 'aif-gateway[ckpt]'``. The names below are imported when first used, so
opening a target, the manifest and ``verify`` work on a node without PyTorch
(``aif-gateway ckpt verify``).
"""

from __future__ import annotations

import warnings
from typing import Any

from ..lazy_exports import lazy_exports

_HOMES = {
    "save": "api",
    "save_async": "api",
    "load": "api",
    "verify": "api",
    "PendingSave": "api",
    "AifStorageWriter": "dcp",
    "AifStorageReader": "dcp",
    "SaveStats": "dcp",
    "CheckpointNotFound": "manifest",
    "IntegrityError": "manifest",
    "TargetOptions": "destination",
    "open_target": "destination",
    "save_zarr": "zarrfmt",
    "load_zarr": "zarrfmt",
}
__all__ = sorted(_HOMES)  # noqa: PLE0605 (the names load on first use, from _HOMES)
# Names from before the rename, kept working (each use warns); not in __all__. Old name: (new
# name, what it gives). DoorOptions also takes door=, the old name of via=.
_DEPRECATED = {"DoorOptions": ("TargetOptions", "from_keywords"), "open_door": ("open_target", None)}

_load, __dir__ = lazy_exports(__name__, _HOMES)


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        new, method = _DEPRECATED[name]
        warnings.warn(f"aif_gateway.ckpt.{name} is deprecated: use {new}", DeprecationWarning, stacklevel=2)
        value = _load(new)
        return getattr(value, method) if method else value
    return _load(name)
