"""The calls a training loop makes: ``save``, ``save_async``, ``load``, ``verify``.

Thin wrappers over ``torch.distributed.checkpoint`` with this package's storage: they work in a
single process and under ``torch.distributed`` alike (every rank calls them, as with ``dcp``).

- ``save(state_dict, dest, **options) -> SaveStats``: blocks until the checkpoint is complete.
- ``save_async(state_dict, dest, **options) -> PendingSave``: returns once the state dict is
  copied to host memory (``blocked_s`` says how long that took); the files are written in a
  background thread while training goes on. ``wait(timeout)`` returns the ``SaveStats`` or
  raises the save's error; ``done()`` polls. One save at a time per process is the usual
  pattern: wait for the previous one before starting the next.
- ``load(state_dict, src, verify=False, **options)``: fills ``state_dict`` in place (resharded
  if the checkpoint was saved by another number of ranks).
- ``verify(src, **options) -> dict``: rereads every data file and checks it against the manifest.

``options`` are the target options of ``destination.TargetOptions`` (endpoint, access_key, secret_key,
region, root, via, threads, part_size, md5, fsync) plus the writer's ``files_per_rank`` and
``overwrite``; ``process_group`` is passed to dcp.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, cast

import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from .dcp import AifStorageReader, AifStorageWriter, SaveStats
from .destination import TargetOptions, open_target
from .manifest import verify_target

__all__ = ["PendingSave", "load", "save", "save_async", "verify"]

_WRITER_ONLY = ("files_per_rank", "overwrite", "cache_staged_state_dict")


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    writer = {k: options.pop(k) for k in _WRITER_ONLY if k in options}
    return writer, options


@contextmanager
def _original_errors() -> Iterator[None]:
    """dcp wraps every rank's failure in a CheckpointException; callers of this module get the
    error itself (this rank's, else the first failing rank's), with the wrapper as its cause."""
    try:
        yield
    except CheckpointException as exc:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        failure = exc.failures.get(rank) or next(iter(exc.failures.values()), None)
        if failure is None:
            raise
        raise failure[0] from exc


def save(
    state_dict: dict[str, Any], dest: str | os.PathLike[str], *, process_group: Any = None, **options: Any
) -> SaveStats:
    writer_opts, target_opts = _split_options(dict(options))
    writer = AifStorageWriter(dest, **writer_opts, **target_opts)
    try:
        with _original_errors():
            dcp.save(state_dict, storage_writer=writer, process_group=process_group)
    finally:
        writer.close()
    return writer.stats


class PendingSave:
    def __init__(self, future: Future[Any], writer: AifStorageWriter, blocked_s: float) -> None:
        self._future = future
        self._writer = writer
        self.blocked_s = blocked_s

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> SaveStats:
        """The finished save's statistics; its exception if it failed (the checkpoint then does
        not exist: its ``.metadata`` was never written)."""
        try:
            with _original_errors():
                self._future.result(timeout)
        finally:
            if self._future.done():
                self._writer.close()
        return self._writer.stats


def save_async(
    state_dict: dict[str, Any], dest: str | os.PathLike[str], *, process_group: Any = None, **options: Any
) -> PendingSave:
    writer_opts, target_opts = _split_options(dict(options))
    writer = AifStorageWriter(dest, **writer_opts, **target_opts)
    started = time.perf_counter()
    response = dcp.async_save(state_dict, storage_writer=writer, process_group=process_group)
    blocked = time.perf_counter() - started
    future = getattr(response, "upload_completion", response)  # AsyncSaveResponse or a Future
    return PendingSave(cast(Future[Any], future), writer, blocked)


def load(
    state_dict: dict[str, Any],
    src: str | os.PathLike[str],
    *,
    verify: bool = False,
    process_group: Any = None,
    **options: Any,
) -> None:
    reader = AifStorageReader(src, verify=verify, **options)
    try:
        # dcp folds a missing .metadata into an AssertionError; say it plainly instead.
        reader.read_metadata()
        with _original_errors():
            dcp.load(state_dict, storage_reader=reader, process_group=process_group)
    finally:
        reader.close()


def verify(src: str | os.PathLike[str], **options: Any) -> dict[str, Any]:
    """Reread every data file of the checkpoint at ``src`` against its manifest
    (``manifest.verify_target``): {"files", "bytes", "items"}, or IntegrityError naming the first
    file and byte range that differ (CheckpointNotFound when it is not complete)."""
    target = open_target(src, TargetOptions.from_keywords(**options))
    try:
        return verify_target(target)
    finally:
        target.close()
