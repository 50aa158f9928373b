"""A zarr v3 store over a checkpoint target: zarr reads and writes through the filesystem or S3.

Keys are file names under the target's location. Every write is one target file: published whole
(a rename, or one completed upload), so a reader never sees half a chunk, and through a
``BucketTarget`` it is an object the gateway serves at once.

Byte ranges. Every request reads exactly its bytes (``CheckpointTarget.read_into``: a pread, or a ranged
GET); ``CheckpointTarget.size`` (a stat, or a HEAD) first turns offsets, suffixes and ranges running past the
end into a plain range.

Not atomic: ``set_if_not_exists`` checks, then writes (targets have no exclusive create), so two
writers racing on one key can both write. Listing asks the target for every file under the
location and filters here (``CheckpointTarget.list`` takes no prefix).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, Store, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from .destination import TargetOptions, open_target
from .targets import CheckpointTarget

__all__ = ["AifZarrStore"]

_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _check_range(byte_range: ByteRequest | None) -> None:
    if byte_range is None:
        return
    if isinstance(byte_range, RangeByteRequest):
        if byte_range.start < 0 or byte_range.end < byte_range.start:
            raise ValueError(f"bad byte range {byte_range}: want 0 <= start <= end")
    elif isinstance(byte_range, OffsetByteRequest):
        if byte_range.offset < 0:
            raise ValueError(f"bad byte range {byte_range}: negative offset")
    elif isinstance(byte_range, SuffixByteRequest):
        if byte_range.suffix < 0:
            raise ValueError(f"bad byte range {byte_range}: negative suffix")
    else:
        raise TypeError(f"Unexpected byte_range, got {byte_range}.")


def _read_at(target: CheckpointTarget, name: str, offset: int, length: int) -> bytearray:
    buf = bytearray(length)
    target.read_into(name, offset, memoryview(buf))
    return buf


def _read(target: CheckpointTarget, name: str, byte_range: ByteRequest | None) -> bytes | bytearray | memoryview:
    """The bytes ``byte_range`` names, with S3's rules (a range past the end gives what is there).
    One request for a whole file or a range (zarr's usual reads); a size first (a stat, a HEAD)
    only for offsets and suffixes."""
    if byte_range is None:
        return target.read_bytes(name)
    if isinstance(byte_range, RangeByteRequest):
        start, end = byte_range.start, byte_range.end
        if end > start:
            try:
                return _read_at(target, name, start, end - start)
            except EOFError:
                pass  # the range runs past the end: what is there, below
    else:
        start = end = 0  # set from the size below
    total = target.size(name)  # FileNotFoundError for a missing key
    if isinstance(byte_range, RangeByteRequest):
        end = min(end, total)
    elif isinstance(byte_range, OffsetByteRequest):
        start, end = byte_range.offset, total
    else:
        start, end = max(0, total - byte_range.suffix), total
    try:
        return _read_at(target, name, start, max(0, end - start))
    except EOFError:
        # Shrank since it was sized (rewritten meanwhile): one whole read gives what is there now.
        return memoryview(target.read_bytes(name))[start:end]


def _write(target: CheckpointTarget, name: str, data: Any) -> None:
    file = target.open_file(name)
    try:
        file.write(data, keep=True)  # zarr's buffer outlives this call: sent from where it is
    except BaseException:
        file.abort()
        raise
    file.commit()


def _reopen(dest: str, read_only: bool, options: TargetOptions) -> AifZarrStore:
    return AifZarrStore(
        dest, read_only=read_only, **{f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    )


class AifZarrStore(Store):
    """A ``zarr.abc.store.Store``, with zarr's synchronous store calls too (``get_sync``,
    ``set_sync``, ``delete_sync``). ``target`` is a ``CheckpointTarget`` (used as it is, left open
    by ``close()``: it belongs to its opener), or a destination for ``destination.open_target``
    (``s3://bucket/prefix`` or a path, with ``TargetOptions`` keywords): the store then opens the
    target itself, closes it on ``close()``, reopens it when used again, and can be pickled (the
    other side reopens the same destination)."""

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True

    def __init__(
        self, target: CheckpointTarget | str | os.PathLike[str], *, read_only: bool = False, **target_options: Any
    ) -> None:
        super().__init__(read_only=read_only)
        self._target: CheckpointTarget | None = None
        self._closer: weakref.finalize[..., Any] | None = None
        if isinstance(target, CheckpointTarget):
            if target_options:
                raise TypeError("target options are for a destination, not for an open CheckpointTarget")
            self._target, self._dest, self._options = target, None, None
        else:
            self._dest = os.fspath(target)
            self._options = TargetOptions.from_keywords(**target_options)
        self._where = (self.target.kind, self.target.location)

    @property
    def target(self) -> CheckpointTarget:
        if self._target is None:  # an owned target: opened here, and again after close()
            assert self._dest is not None
            self._target = open_target(self._dest, self._options)
            # a store dropped without close() (zarr never closes the copies with_read_only
            # makes) still closes its target's connections and threads
            self._closer = weakref.finalize(self, self._target.close)
        return self._target

    # -- identity ---------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, AifZarrStore) and self._where == other._where

    def __hash__(self) -> int:
        return hash(self._where)

    def __str__(self) -> str:
        return f"aif-{self._where[0]}://{self._where[1]}"

    def __repr__(self) -> str:
        return f"AifZarrStore('{self}')"

    def __reduce__(self) -> tuple[Any, ...]:
        if self._dest is None:
            raise TypeError(
                "an AifZarrStore over an open CheckpointTarget cannot be pickled: build it from a destination "
                "(AifZarrStore('s3://bucket/prefix', endpoint=...)) to send it to another process"
            )
        return _reopen, (self._dest, self.read_only, self._options)

    def with_read_only(self, read_only: bool = False) -> AifZarrStore:
        if self._dest is None:
            return AifZarrStore(self.target, read_only=read_only)
        assert self._options is not None  # set with _dest
        return _reopen(self._dest, read_only, self._options)

    # -- lifetime ---------------------------------------------------------------------------
    async def _open(self) -> None:
        _ = self.target
        await super()._open()

    def close(self) -> None:
        super().close()
        if self._closer is not None:
            self._closer()
            self._closer, self._target = None, None

    # -- reads ------------------------------------------------------------------------------
    def get_sync(
        self, key: str, *, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        _check_range(byte_range)
        try:
            data = _read(self.target, key, byte_range)
        except _MISSING:
            return None
        return (prototype or default_buffer_prototype()).buffer.from_bytes(data)

    async def get(
        self, key: str, prototype: BufferPrototype | None = None, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        _check_range(byte_range)
        return await asyncio.to_thread(self.get_sync, key, prototype=prototype, byte_range=byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        return list(await asyncio.gather(*(self.get(key, prototype, rng) for key, rng in key_ranges)))

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.target.exists, key)

    async def getsize(self, key: str) -> int:
        return await asyncio.to_thread(self.target.size, key)

    # -- writes -----------------------------------------------------------------------------
    def set_sync(self, key: str, value: Buffer) -> None:
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(f"AifZarrStore.set(): value must be a zarr Buffer, not {type(value).__name__}")
        _write(self.target, key, value.as_buffer_like())

    async def set(self, key: str, value: Buffer) -> None:
        self._check_writable()
        await asyncio.to_thread(self.set_sync, key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        self._check_writable()
        if not await self.exists(key):
            await self.set(key, value)

    def delete_sync(self, key: str) -> None:
        self._check_writable()
        self.target.delete(key)

    async def delete(self, key: str) -> None:
        self._check_writable()
        await asyncio.to_thread(self.target.delete, key)

    async def delete_dir(self, prefix: str) -> None:
        self._check_writable()
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        names = [name async for name in self.list_prefix(prefix)]
        await asyncio.gather(*(asyncio.to_thread(self.target.delete, name) for name in names))

    # -- listing ----------------------------------------------------------------------------
    async def _names(self) -> list[str]:
        return await asyncio.to_thread(lambda: sorted(self.target.list()))

    async def list(self) -> AsyncIterator[str]:
        for name in await self._names():
            yield name

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        for name in await self._names():
            if name.startswith(prefix):
                yield name

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        seen: set[str] = set()
        for name in await self._names():
            if name.startswith(prefix):
                child = name[len(prefix) :].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child
