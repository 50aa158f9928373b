"""``torch.distributed.checkpoint`` storage on any checkpoint target: ``AifStorageWriter``, ``AifStorageReader``.

The files are those of PyTorch's own ``FileSystemWriter``: ``__<rank>_<n>.distcp`` data files
holding one ``torch.save`` record per tensor or blob, and a pickled ``.metadata`` that maps every
item to (file, offset, length) with PyTorch's own ``_StorageInfo``. So a checkpoint written here
loads with stock ``FileSystemReader`` from the tree, and a stock one loads here through S3.
Added beside them: ``aif-manifest.json`` (every item's xxh3-64; the items tile each file, so it
covers every byte), which ``AifStorageReader(verify=True)`` and ``ckpt.verify`` check.

Complete or invisible: readers find a checkpoint by its ``.metadata``, written last, after every
rank's files and the manifest are published (each file atomically: a rename, or a completed
multipart upload). Saving over an existing checkpoint first deletes its ``.metadata``, before any
rank writes a byte, so an interrupted overwrite leaves nothing loadable rather than old metadata
over new files.

Why the tensor records are written without torch.save's zip CRC32: computing it took a third of
torch.save's time; the manifest's xxh3 replaces it and ``torch.load`` reads records without it
(``torch.utils.serialization.config.save.compute_crc32``, a per-thread setting, switched off in
this module's serialising threads only while they serialise).
"""

from __future__ import annotations

import ctypes
import dataclasses
import io
import json
import os
import pickle
import re
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, cast

import numpy as np
import torch
import xxhash
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint.filesystem import _StorageInfo, _StoragePrefix
from torch.distributed.checkpoint.metadata import Metadata, MetadataIndex, StorageMeta
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    LoadPlanner,
    ReadItem,
    SavePlan,
    SavePlanner,
    WriteItem,
    WriteItemType,
)
from torch.distributed.checkpoint.staging import BlockingAsyncStager
from torch.distributed.checkpoint.storage import StorageReader, StorageWriter, WriteResult
from torch.futures import Future
from torch.utils.serialization import config as serialization_config

from .destination import TargetOptions, open_target
from .manifest import MANIFEST, METADATA, CheckpointNotFound, IntegrityError, load_manifest_items
from .targets import CheckpointTarget
from .writer import FileWriter, as_bytes_view

__all__ = ["AifStorageReader", "AifStorageWriter", "SaveStats"]

SUFFIX = ".distcp"
_DATA_FILE = re.compile(r"__\d+_\d+\.distcp")  # this checkpoint's own level only, not nested ones
KEEP_MIN = 64 * 1024  # pieces at least this large that lie in a tensor's storage are sent from there
COALESCE_GAP = 1 << 20  # reads of items closer than this in a file become one read
READ_MAX = 64 << 20
HASH_ASIDE = 4 << 20  # records at least this large are hashed by the hashing threads
SMALL_RECORD = 1 << 20


# -- torch.save without its CRC ------------------------------------------------------------------
@contextmanager
def _without_zip_crc() -> Iterator[None]:
    """torch's serialization config is per thread: this thread's torch.save skips the CRC."""
    saved = serialization_config.save.compute_crc32
    serialization_config.save.compute_crc32 = False
    try:
        yield
    finally:
        serialization_config.save.compute_crc32 = saved


def _address(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data) if len(view) else 0


class _RecordStream:
    """The file-like torch.save writes one record into: its bytes go to the file (the tensor's
    own storage by reference), and are kept, in order, for hashing.

    torch.save makes about 40 small writes per record (zip headers, the pickle); they are
    gathered here and passed on in one piece, so the per-tensor cost stays small."""

    def __init__(self, file: FileWriter, storage: tuple[int, int] | None) -> None:
        self.file = file
        self.storage = storage
        self.pieces: list[Any] = []
        self.length = 0
        self.data_offset: int | None = None  # where the storage's bytes start, when written whole
        self._small = bytearray()

    def write(self, data: Any) -> int:
        view = data if type(data) is memoryview and data.format == "B" else as_bytes_view(data)
        n = len(view)
        if n < KEEP_MIN:
            self._small += view
            self.length += n
            return n
        keep = False
        if self.storage is not None:
            lo, hi = self.storage
            start = _address(view)
            keep = lo <= start and start + n <= hi
            if start == lo and start + n == hi:
                self.data_offset = self.length
        self.flush()
        self.pieces.append(view)
        self.file.write(view, keep=keep)
        self.length += n
        return n

    def flush(self) -> None:
        if self._small:
            self.pieces.append(self._small)
            self.file.write(self._small, keep=True)  # a buffer of its own, never reused
            self._small = bytearray()

    def tell(self) -> int:
        return self.length

    def writable(self) -> bool:
        return True


def _plain(tensor: torch.Tensor) -> bool:
    """Its bytes are exactly its storage's, in row-major order."""
    return (
        tensor.is_contiguous()
        and tensor.storage_offset() == 0
        and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    )


def _storage_span(tensor: torch.Tensor) -> tuple[int, int]:
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.data_ptr() + storage.nbytes()


def _xxh3(pieces: list[Any]) -> str:
    hasher = xxhash.xxh3_64()
    for piece in pieces:
        hasher.update(piece)
    return hasher.hexdigest()


def _write_item(
    file: FileWriter, data: Any, item: WriteItem, file_name: str, hashers: ThreadPoolExecutor
) -> WriteResult:
    offset = file.position
    if item.type == WriteItemType.BYTE_IO:
        stream = _RecordStream(file, None)
        stream.write(cast(io.BytesIO, data).getbuffer())
        stream.flush()
    else:
        tensor = cast(torch.Tensor, data)
        if tensor.device.type != "cpu":
            tensor = tensor.cpu()
        stream = _RecordStream(file, _storage_span(tensor))
        torch.save(tensor, cast(IO[bytes], stream))  # a write-only file object: all torch.save uses
        stream.flush()
    info = _StorageInfo(file_name, offset, stream.length)
    # Carried to the coordinator with the result, moved into the manifest by finish(). Large
    # records are hashed by other threads (xxhash releases the GIL) while the next ones are
    # serialised and written: a future here, its digest once _write_file has waited for it.
    info.xxh3 = (  # type: ignore[attr-defined]
        hashers.submit(_xxh3, stream.pieces) if stream.length >= HASH_ASIDE else _xxh3(stream.pieces)
    )
    if item.type != WriteItemType.BYTE_IO and stream.data_offset is not None and _plain(tensor):
        # Where the raw bytes sit in the record: a reader can land them in the state dict's tensor.
        info.raw = [stream.data_offset, str(tensor.dtype), list(tensor.shape)]  # type: ignore[attr-defined]
    return WriteResult(index=item.index, size_in_bytes=stream.length, storage_data=info)


def _split(items: list[WriteItem], files: int) -> list[list[WriteItem]]:
    """Items into ``files`` groups of about equal bytes (blobs spread round-robin)."""
    if files <= 1:
        return [items]
    groups: list[list[WriteItem]] = [[] for _ in range(files)]
    sizes = [0] * files
    blobs = [i for i in items if i.type == WriteItemType.BYTE_IO]
    tensors = sorted((i for i in items if i.type != WriteItemType.BYTE_IO), key=_nbytes, reverse=True)
    for n, item in enumerate(blobs):
        groups[n % files].append(item)
    for item in tensors:
        k = sizes.index(min(sizes))
        groups[k].append(item)
        sizes[k] += _nbytes(item)
    return [g for g in groups if g] or [[]]


def _nbytes(item: WriteItem) -> int:
    assert item.tensor_data is not None
    n = 1
    for s in item.tensor_data.size:
        n *= s
    return n * item.tensor_data.properties.dtype.itemsize


@dataclass
class SaveStats:
    """What one rank's ``write_data`` did (the coordinator's also covers ``finish``)."""

    via: str = ""  # the target's kind: "filesystem" or "s3"
    location: str = ""
    files: int = 0
    bytes: int = 0
    write_s: float = 0.0
    finish_s: float = 0.0

    @property
    def door(self) -> str:
        """The old name of ``via`` (deprecated)."""
        warnings.warn("SaveStats.door is deprecated: use SaveStats.via", DeprecationWarning, stacklevel=2)
        return self.via


class AifStorageWriter(StorageWriter, BlockingAsyncStager):
    """Writes a DCP checkpoint to ``dest`` (``s3://bucket/prefix`` or a path); ``checkpoint_id``
    given to ``dcp.save`` overrides it. Target options: see ``destination.TargetOptions``.
    ``files_per_rank`` data files per rank are serialised and written in parallel. Two by
    default: local filesystems (ext4, XFS, tmpfs) serialise writes to one file on its inode
    lock, so one file holds a rank to one writer's speed whatever the threads (measured in
    perf/RESULTS.md, "Checkpoints"); parallel filesystems write a file's stripes in parallel."""

    def __init__(
        self,
        dest: str | os.PathLike[str] | None = None,
        *,
        files_per_rank: int = 2,
        overwrite: bool = True,
        cache_staged_state_dict: bool = False,
        **target_options: Any,
    ) -> None:
        StorageWriter.__init__(self)
        BlockingAsyncStager.__init__(self, cache_staged_state_dict=cache_staged_state_dict)
        self.dest = os.fspath(dest) if dest is not None else None
        self.options = TargetOptions.from_keywords(**target_options)
        self.files_per_rank = max(1, files_per_rank)
        self.overwrite = overwrite
        self.rank = 0
        self.is_coordinator = True
        self.use_collectives = True
        self.stats = SaveStats()
        self._stats_lock = threading.Lock()
        self._target: CheckpointTarget | None = None

    # -- StorageWriter ------------------------------------------------------------------------
    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id is not None:
            self.dest = os.fspath(checkpoint_id)
        if self.dest is None:
            raise ValueError("no checkpoint destination: pass dest= or checkpoint_id=")
        self._close_target()
        self.stats = SaveStats()

    def set_up_storage_writer(self, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.is_coordinator = is_coordinator
        self.rank = kwargs.get("rank") or 0
        self.use_collectives = kwargs.get("use_collectives", True)

    @property
    def target(self) -> CheckpointTarget:
        if self._target is None:
            if self.dest is None:
                raise ValueError("no checkpoint destination: pass dest= or checkpoint_id=")
            self._target = open_target(self.dest, self.options)
            self.stats.via, self.stats.location = self._target.kind, self._target.location
        return self._target

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        if self.rank is not None and not self.use_collectives:
            self._retire_old_checkpoint(f"__{self.rank}{METADATA}")
            plan = dataclasses.replace(plan, storage_data=_StoragePrefix(f"__{self.rank}_"))
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        # The coordinator, before any rank writes: an old checkpoint here stops being loadable.
        self._retire_old_checkpoint(METADATA)
        return [
            dataclasses.replace(p, storage_data=_StoragePrefix(f"__{i}_")) if p.storage_data is None else p
            for i, p in enumerate(plans)
        ]

    def _retire_old_checkpoint(self, metadata_name: str) -> None:
        if not self.target.exists(metadata_name):
            return
        if not self.overwrite:
            raise FileExistsError(f"a checkpoint exists at {self.target.location} and overwrite=False")
        self.target.delete(metadata_name)

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        started = time.perf_counter()
        prefix = cast(_StoragePrefix, plan.storage_data).prefix
        groups = _split(plan.items, self.files_per_rank)
        names = [f"{prefix}{n}{SUFFIX}" for n in range(len(groups))]
        target = self.target
        if len(groups) == 1:
            results = [self._write_file(target, names[0], groups[0], planner)]
        else:
            with ThreadPoolExecutor(len(groups), thread_name_prefix="aif-ckpt-serialise") as pool:
                results = list(pool.map(lambda a: self._write_file(target, a[0], a[1], planner), zip(names, groups)))
        self.stats.files += len(groups)
        self.stats.write_s = time.perf_counter() - started
        if not self.is_coordinator:
            self._close_target()  # only the coordinator has more to do (finish)
        out: list[WriteResult] = [r for group in results for r in group]
        future: Future[list[WriteResult]] = Future()
        future.set_result(out)
        return future

    def _write_file(
        self, target: CheckpointTarget, name: str, items: list[WriteItem], planner: SavePlanner
    ) -> list[WriteResult]:
        file = target.open_file(name, sum(_nbytes(i) for i in items if i.type != WriteItemType.BYTE_IO))
        results = []
        try:
            # Blobs first, then tensors: the stock writer's order.
            with _without_zip_crc(), ThreadPoolExecutor(target.threads, thread_name_prefix="aif-ckpt-hash") as hashers:
                for item in sorted(items, key=lambda i: i.type != WriteItemType.BYTE_IO):
                    results.append(_write_item(file, planner.resolve_data(item), item, name, hashers))
                for r in results:
                    if not isinstance(r.storage_data.xxh3, str):
                        r.storage_data.xxh3 = r.storage_data.xxh3.result()
            # The items tile the file, so a digest of their digests names its content (the
            # object's ETag in a gateway bucket) without another pass over the bytes.
            content = xxhash.xxh3_128("".join(r.storage_data.xxh3 for r in results).encode()).digest()
            size = file.commit(content)
            with self._stats_lock:  # files_per_rank threads finish files at once
                self.stats.bytes += size
        except BaseException:
            file.abort()
            raise
        return results

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        started = time.perf_counter()
        storage: dict[MetadataIndex, _StorageInfo] = {}
        files: dict[str, dict[str, Any]] = {}
        for result in (r for rank in results for r in rank):
            info = result.storage_data
            digest = info.__dict__.pop("xxh3", None)
            raw = info.__dict__.pop("raw", None)
            storage[result.index] = info
            entry = files.setdefault(info.relative_path, {"size": 0, "items": []})
            entry["size"] = max(entry["size"], info.offset + info.length)
            entry["items"].append([info.offset, info.length, digest] + (raw or []))
        for entry in files.values():
            entry["items"].sort()
        metadata.version = "1.0.0"
        metadata.storage_data = storage
        metadata.storage_meta = self.storage_meta()
        # items: [offset, length, xxh3_64 of those bytes] plus, for a tensor whose record holds its
        # storage whole, [offset of the raw bytes in the record, dtype, shape].
        manifest = {"format": "aif-gateway/dcp-manifest/1", "hash": "xxh3_64", "files": files}
        target = self.target
        metadata_name = METADATA if self.use_collectives else f"__{self.rank}{METADATA}"
        target.put_bytes(
            MANIFEST if self.use_collectives else f"__{self.rank}.{MANIFEST}",
            json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode(),
        )
        target.put_bytes(metadata_name, pickle.dumps(metadata))  # last: the checkpoint now exists
        if self.use_collectives:
            # Data files of an older checkpoint saved here with more ranks or files: unreferenced now.
            for stale in [n for n in target.list() if _DATA_FILE.fullmatch(n) and n not in files]:
                target.delete(stale)
        self.stats.finish_s = time.perf_counter() - started
        self._close_target()

    def storage_meta(self) -> StorageMeta | None:
        return StorageMeta(checkpoint_id=self.dest)

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return bool(os.fspath(checkpoint_id))

    @property
    def checkpoint_id(self) -> str | None:
        return self.dest

    def _close_target(self) -> None:
        if self._target is not None:
            self._target.close()
            self._target = None

    def close(self) -> None:
        self._close_target()
        BlockingAsyncStager.close(self)


class AifStorageReader(StorageReader):
    """Reads a DCP checkpoint (written here or by any stock writer) from ``src``. ``verify``:
    check every item read against the manifest's xxh3 (an error for checkpoints without one)."""

    def __init__(
        self,
        src: str | os.PathLike[str] | None = None,
        *,
        verify: bool = False,
        read_threads: int = 8,
        **target_options: Any,
    ) -> None:
        super().__init__()
        self.src = os.fspath(src) if src is not None else None
        self.options = TargetOptions.from_keywords(**target_options)
        self.verify = verify
        self.read_threads = read_threads
        self.storage_data: dict[MetadataIndex, _StorageInfo] = {}
        self.manifest: dict[tuple[str, int], list[Any]] = {}
        self.bytes_read = 0
        self.straight_reads = 0  # tensors read straight into the state dict's memory
        self._target: CheckpointTarget | None = None

    @property
    def target(self) -> CheckpointTarget:
        if self._target is None:
            if self.src is None:
                raise ValueError("no checkpoint to read: pass src= or checkpoint_id=")
            self._target = open_target(self.src, self.options)
        return self._target

    def reset(self, checkpoint_id: str | os.PathLike[str] | None = None) -> None:
        if checkpoint_id is not None:
            self.src = os.fspath(checkpoint_id)
        if self._target is not None:
            self._target.close()
            self._target = None
        self.storage_data, self.manifest, self.bytes_read = {}, {}, 0

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        rank = kwargs.get("rank")
        name = METADATA if rank is None else f"__{rank}{METADATA}"
        try:
            data = self.target.read_bytes(name)
        except FileNotFoundError:
            raise CheckpointNotFound(
                f"no complete checkpoint at {self.target.location}: {name} is missing (the save was interrupted, "
                "is still running, or nothing was saved there)"
            ) from None
        metadata = pickle.loads(data)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        return cast(Metadata, metadata)

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args: Any, **kwargs: Any) -> None:
        self.storage_data = metadata.storage_data
        rank = kwargs.get("rank")
        name = MANIFEST if kwargs.get("use_collectives", True) or rank is None else f"__{rank}.{MANIFEST}"
        self.manifest = load_manifest_items(self.target, required=self.verify, name=name)

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        per_file: dict[str, list[ReadItem]] = {}
        straight: list[tuple[ReadItem, list[Any]]] = []
        for item in plan.items:
            info = self.storage_data[item.storage_index]
            entry = self.manifest.get((info.relative_path, info.offset))
            if (
                item.type == LoadItemType.TENSOR
                and entry is not None
                and len(entry) == 6
                and not any(item.storage_offsets)
                and list(item.lengths) == entry[5]
            ):
                straight.append((item, entry))
            else:
                per_file.setdefault(info.relative_path, []).append(item)
        ranges = [r for name, items in per_file.items() for r in self._coalesce(name, items)]
        lock = threading.Lock()  # planners are not thread-safe: commits happen one at a time

        def read_straight(job: tuple[ReadItem, list[Any]]) -> None:
            """A whole saved tensor straight into the state dict's tensor: no buffer, no torch.load, no copy."""
            req, entry = job
            info = self.storage_data[req.storage_index]
            with lock:
                out = planner.resolve_tensor(req).detach()
            if not (out.is_contiguous() and str(out.dtype) == entry[4] and list(out.shape) == entry[5]):
                read((info.relative_path, info.offset, info.offset + info.length, [req]))
                return
            nbytes = out.numel() * out.element_size()
            data_at = info.offset + entry[3]
            into = _memory_of(out)
            if self.verify:
                head, tail = bytearray(entry[3]), bytearray(info.length - entry[3] - nbytes)
                self.target.read_into(info.relative_path, info.offset, memoryview(head))
                self.target.read_into(info.relative_path, data_at, into)
                self.target.read_into(info.relative_path, data_at + nbytes, memoryview(tail))
                hasher = xxhash.xxh3_64(head)
                hasher.update(into)
                hasher.update(tail)
                self._compare(info, hasher.hexdigest(), entry[2])
            else:
                self.target.read_into(info.relative_path, data_at, into)
            with lock:
                planner.commit_tensor(req, out)
                self.bytes_read += nbytes
                self.straight_reads += 1

        def read(job: tuple[str, int, int, list[ReadItem]]) -> None:
            name, start, end, items = job
            buffer = bytearray(end - start)
            view = memoryview(buffer)
            self.target.read_into(name, start, view)
            for req in items:
                info = self.storage_data[req.storage_index]
                piece = view[info.offset - start : info.offset - start + info.length]
                if self.verify:
                    self._check(name, info, piece)
                if req.type == LoadItemType.BYTE_IO:
                    with lock:
                        planner.load_bytes(req, io.BytesIO(bytes(piece)))
                    continue
                # Small records: one copy into a BytesIO beats _ViewFile's Python-level reads.
                source = io.BytesIO(piece) if len(piece) < SMALL_RECORD else _ViewFile(piece)
                tensor = torch.load(cast(IO[bytes], source), map_location="cpu", weights_only=True)
                tensor = narrow_tensor_by_index(tensor, req.storage_offsets, req.lengths)
                with lock:
                    out = planner.resolve_tensor(req).detach()
                    if out.size() != tensor.size():
                        raise ValueError(
                            f"{req.storage_index}: checkpoint holds {tuple(tensor.size())}, "
                            f"the state dict expects {tuple(out.size())}"
                        )
                    out.copy_(tensor)
                    planner.commit_tensor(req, out)
            with lock:
                self.bytes_read += len(buffer)

        try:
            with ThreadPoolExecutor(self.read_threads, thread_name_prefix="aif-ckpt-read") as pool:
                futures = [pool.submit(read_straight, j) for j in straight] + [pool.submit(read, r) for r in ranges]
                for f in futures:
                    f.result()
        finally:
            self.close()  # dcp has no "done" call for readers: this was the last use of the target
        future: Future[None] = Future()
        future.set_result(None)
        return future

    def _coalesce(self, name: str, items: list[ReadItem]) -> list[tuple[str, int, int, list[ReadItem]]]:
        """Items of one file in offset order, merged into reads of at most READ_MAX bytes."""
        spans = sorted(
            ((self.storage_data[i.storage_index].offset, self.storage_data[i.storage_index].length, i) for i in items),
            key=lambda s: s[0],
        )
        out: list[tuple[str, int, int, list[ReadItem]]] = []
        for offset, length, item in spans:
            if out and offset - out[-1][2] <= COALESCE_GAP and offset + length - out[-1][1] <= READ_MAX:
                _, start, end, group = out[-1]
                out[-1] = (name, start, max(end, offset + length), group + [item])
            else:
                out.append((name, offset, offset + length, [item]))
        return out

    def _check(self, name: str, info: _StorageInfo, piece: memoryview) -> None:
        entry = self.manifest.get((name, info.offset))
        if entry is None:
            raise IntegrityError(f"{name} at {info.offset}: not in the checkpoint's manifest")
        self._compare(info, xxhash.xxh3_64(piece).hexdigest(), entry[2])

    def _compare(self, info: _StorageInfo, got: str, expected: str) -> None:
        if got != expected:
            raise IntegrityError(
                f"{self.target.location}/{info.relative_path}: bytes {info.offset}-"
                f"{info.offset + info.length - 1} do not match the manifest's xxh3 "
                "(the file changed or is damaged)"
            )

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id: str | os.PathLike[str]) -> bool:
        return bool(os.fspath(checkpoint_id))

    @property
    def checkpoint_id(self) -> str | None:
        return self.src

    def close(self) -> None:
        if self._target is not None:
            self._target.close()
            self._target = None


def _memory_of(tensor: torch.Tensor) -> memoryview:
    """A writable byte view of a contiguous CPU tensor's memory (any dtype, bfloat16 included)."""
    nbytes = tensor.numel() * tensor.element_size()
    if nbytes == 0:
        return memoryview(bytearray())
    return memoryview((ctypes.c_char * nbytes).from_address(tensor.data_ptr())).cast("B")


class _ViewFile(io.RawIOBase):
    """A read-only, seekable file over a memoryview, without copying it (torch.load's input)."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        n = min(len(out), len(self._view) - self._pos)
        out[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos
