"""Checkpoints from training jobs, through the filesystem or S3: one copy, two doors.

Needs the ``ckpt`` extra (PyTorch, zarr, numcodecs): ``pip install 'aif-gateway[ckpt]'``.
"""

from .api import PendingSave, load, save, save_async, verify
from .dcp import AifStorageReader, AifStorageWriter, CheckpointNotFound, IntegrityError, SaveStats
from .target import DoorOptions, open_door
from .zarrfmt import load_zarr, save_zarr

__all__ = ["AifStorageReader", "AifStorageWriter", "CheckpointNotFound", "DoorOptions", "IntegrityError",
           "PendingSave", "SaveStats", "load", "load_zarr", "open_door", "save", "save_async", "save_zarr",
           "verify"]
