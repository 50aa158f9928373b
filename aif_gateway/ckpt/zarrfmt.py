"""Checkpoints as a zarr v3 group: every tensor an array any zarr reader opens, bit for bit.

``save_zarr`` writes a state dict, ``load_zarr`` reads it back; both open their destination
(``s3://bucket/prefix`` or a path) with ``destination.open_target`` and ``TargetOptions`` keywords.

Layout. One group. A tensor of one dimension or more is an array named by its key path:
nested dicts, lists and tuples become groups (``{"model": {"w": t}}`` -> array ``model/w``,
``{"t": (x, y)}`` -> ``t/0``, ``t/1``); each component is percent-encoded but for letters,
digits and ``_.-~`` (so a ``/`` in a key never splits it), a leading ``__`` (reserved by zarr)
becomes ``%5F_``, and int keys are their decimal digits. Arrays are sharded
(``sharding_indexed``: shards of about ``shard_mib``, inner chunks of about ``chunk_mib``, cut
along dim 0 first, the shard index at the start of each shard so a partial read never needs
the object's size) and compressed with zarr's ``zstd`` or ``blosc`` (zstd inside, shuffled by
item size). Each array has the
attribute ``torch_dtype``. Dtypes numpy lacks (bfloat16, the float8 types, complex32) are
stored as unsigned integers of the same width, so they come back bit for bit: plain zarr gives
the ``uint16`` of a bfloat16 tensor, ``view(torch.bfloat16)`` of it gives the tensor.
Everything else, 0-d tensors (dtype and bytes in hex) and plain values (numbers, strings, None,
lists, tuples, dicts), sits in the root group's attribute ``aif_checkpoint`` as a tree that
also records each array's path and the original keys (ints stay ints).

Complete or invisible: the root group's ``zarr.json`` is written last, after every array, and
is deleted first when a checkpoint is saved over another one; ``load_zarr`` refuses a location
without it (``CheckpointNotFound``), and so does plain zarr. Saving over a checkpoint deletes
the files of its arrays (the tree names them) and of the arrays being written; files an
interrupted save left under other names stay, unused: only the tree says what a checkpoint
holds. A location holding some other zarr group is not overwritten (``FileExistsError``).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
import zarr
import zarr.api.asynchronous as zasync
import zarr.codecs
from zarr.abc.store import Store
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.core.array import ShardsConfigParam
from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import WrapperStore

from .destination import TargetOptions, open_target
from .manifest import CheckpointNotFound
from .targets import CheckpointTarget, MiB
from .zarrstore import AifZarrStore

__all__ = ["load_zarr", "save_zarr"]

ATTR = "aif_checkpoint"
FORMAT_VERSION = 1
ROOT_META = "zarr.json"
CODECS = ("zstd", "blosc")
ARRAYS_AT_ONCE = 8  # arrays written or read concurrently (each one's shards are concurrent too)

# torch dtypes numpy has no type for: stored as the unsigned integer of the same width.
_RAW_BY_WIDTH = {1: torch.uint8, 2: torch.uint16, 4: torch.uint32}
_RAW_DTYPES = {
    name: getattr(torch, name)
    for name in (
        "bfloat16",
        "complex32",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e5m2",
        "float8_e5m2fnuz",
        "float8_e8m0fnu",
        "float4_e2m1fn_x2",
    )
    if hasattr(torch, name)
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown torch dtype {name!r} in the checkpoint")
    return dtype


def _numpy_view(tensor: torch.Tensor) -> np.ndarray:
    """``tensor``'s memory as numpy (no copy); dtypes numpy lacks as same-width uints."""
    if _dtype_name(tensor.dtype) in _RAW_DTYPES:
        tensor = tensor.view(_RAW_BY_WIDTH[tensor.element_size()])
    return tensor.numpy()


# -- the tree of a state dict --------------------------------------------------------------------
def _name(key: object) -> str:
    """A zarr node name for a state-dict key (zarr forbids ``/``, ``..`` and a leading ``__``)."""
    text = quote(str(key), safe="")  # keeps letters, digits and ``_.-~``; ``/`` becomes %2F
    if text.startswith("__"):
        text = "%5F" + text[1:]
    if text in (".", ".."):
        text = text.replace(".", "%2E")
    return text


@dataclass
class _Flat:
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    nbytes: int = 0


def _encode(value: Any, path: list[str], flat: _Flat) -> dict[str, Any]:
    where = "/".join(path) or "(root)"
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized:
            raise TypeError(f"{where}: cannot save a {value.layout} / quantized tensor; convert it to dense")
        tensor = value.detach().resolve_conj().resolve_neg().cpu().contiguous()
        if tensor.dim() == 0:
            scalar: dict[str, Any] = {
                "dtype": _dtype_name(tensor.dtype),
                "hex": _numpy_view(tensor.reshape(1)).tobytes().hex(),
            }
            try:
                item = tensor.item()
            except (RuntimeError, NotImplementedError):  # float4 has no Python scalar
                item = None
            if isinstance(item, (bool, int)) or (isinstance(item, float) and math.isfinite(item)):
                scalar["value"] = item  # for people reading the JSON; loading uses the bytes
            return {"scalar": scalar}
        array_path = "/".join(path)
        if array_path in flat.arrays:
            raise ValueError(f"{where}: two keys of the state dict map to the same array name")
        flat.arrays[array_path] = tensor
        flat.nbytes += tensor.numel() * tensor.element_size()
        return {"array": array_path}
    if isinstance(value, dict):
        items = []
        for key, child in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"{where}: dict keys must be str or int, not {type(key).__name__}")
            items.append([key, _encode(child, [*path, _name(key)], flat)])
        return {"dict": items}
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return {kind: [_encode(child, [*path, str(i)], flat) for i, child in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, str)):
        return {"value": value}
    if isinstance(value, float):
        return {"value": value} if math.isfinite(value) else {"float": repr(value)}
    raise TypeError(
        f"{where}: cannot save a {type(value).__name__} in a zarr checkpoint "
        "(tensors, numbers, strings, None, lists, tuples and dicts can be saved)"
    )


def _arrays(node: dict[str, Any]) -> Iterator[str]:
    if "array" in node:
        yield node["array"]
    for child in node.get("list", ()) or node.get("tuple", ()):
        yield from _arrays(child)
    for _, child in node.get("dict", ()):
        yield from _arrays(child)


# -- chunk and shard shapes ----------------------------------------------------------------------
def _block(shape: tuple[int, ...], unit: tuple[int, ...], unit_bytes: int, target: int) -> tuple[int, ...]:
    """A block of whole ``unit``s of about ``target`` bytes: trailing dims taken whole first,
    then as many units along the next dim as fit (so a 2-d tensor is cut into row ranges)."""
    block = list(unit)
    size = unit_bytes
    for i in reversed(range(len(shape))):
        units = max(1, -(-shape[i] // unit[i]))
        if size * units <= target:
            block[i] = unit[i] * units
            size *= units
            continue
        block[i] = unit[i] * max(1, min(units, target // size))
        break
    return tuple(block)


def chunk_and_shard(
    shape: tuple[int, ...], itemsize: int, chunk_bytes: int, shard_bytes: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    chunk = _block(shape, (1,) * len(shape), itemsize, chunk_bytes)
    shard = _block(shape, chunk, itemsize * math.prod(chunk), shard_bytes)
    return chunk, shard


def _compressor(codec: str, level: int) -> Any:
    if codec == "zstd":
        return zarr.codecs.ZstdCodec(level=level)
    if codec == "blosc":
        return zarr.codecs.BloscCodec(cname="zstd", clevel=level)
    raise ValueError(f"codec must be one of {CODECS}, not {codec!r}")


async def _all(coroutines: Iterable[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run ``coroutines`` together; on the first failure cancel the rest, wait for them, and
    raise it (so nothing is left writing to a target that is about to close)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


# -- saving --------------------------------------------------------------------------------------
class _RootLast(WrapperStore[Store]):
    """The store as zarr sees it while arrays are written: the root group's ``zarr.json``
    (which zarr writes as a parent of every array) is held back, and each parent group is
    written once, not checked again for every array below it."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.stored_bytes = 0
        self._groups_written: set[str] = set()

    async def set(self, key: str, value: Buffer) -> None:
        if key != ROOT_META:
            self.stored_bytes += len(value)
            await self._store.set(key, value)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        if key == ROOT_META or key in self._groups_written:
            return
        self._groups_written.add(key)
        await self._store.set_if_not_exists(key, value)


def _old_arrays(target: CheckpointTarget) -> list[str] | None:
    """The arrays of the checkpoint at ``target`` (None if there is none); an error if the
    place holds a zarr group that is not a checkpoint of this module."""
    try:
        meta = json.loads(target.read_bytes(ROOT_META))
    except FileNotFoundError:
        return None
    tree = meta.get("attributes", {}).get(ATTR)
    if tree is None:
        raise FileExistsError(f"{target.location} holds a zarr group that is not an aif checkpoint: not overwriting it")
    return list(_arrays(tree["tree"]))


def _clear(target: CheckpointTarget, arrays: set[str]) -> None:
    """Delete every file of the arrays (and of their parent groups) named in ``arrays``."""
    groups = {"/".join(p.split("/")[:i]) for p in arrays for i in range(1, p.count("/") + 1)}
    doomed = []
    for name in target.list():
        parts = name.split("/")
        if any("/".join(parts[:i]) in arrays for i in range(1, len(parts))) or (
            parts[-1] == ROOT_META and "/".join(parts[:-1]) in groups
        ):
            doomed.append(name)
    list(target.pool.map(target.delete, doomed))


async def _write_array(
    store: Store,
    path: str,
    tensor: torch.Tensor,
    compressor: Any,
    chunk_bytes: int,
    shard_bytes: int,
    gate: asyncio.Semaphore,
) -> None:
    async with gate:
        data = _numpy_view(tensor)
        chunk, shard = chunk_and_shard(data.shape, data.itemsize, chunk_bytes, shard_bytes)
        shards: ShardsConfigParam = {"shape": shard, "index_location": ShardingCodecIndexLocation.start}
        array = await zasync.create_array(
            store=store,
            name=path,
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunk,
            shards=shards,
            compressors=[compressor],
            attributes={"torch_dtype": _dtype_name(tensor.dtype)},
            zarr_format=3,
        )
        if data.size:
            await array.setitem(Ellipsis, data)


def save_zarr(
    state_dict: dict[str, Any],
    dest: str | os.PathLike[str],
    *,
    codec: str = "zstd",
    level: int = 3,
    shard_mib: float = 64,
    chunk_mib: float = 4,
    **target_options: Any,
) -> dict[str, Any]:
    """Write ``state_dict`` to ``dest``; a summary: location, via (the target's kind; ``door``
    is its old name), arrays, tensor bytes, stored bytes, codec, seconds."""
    compressor = _compressor(codec, level)
    if not 0 < chunk_mib <= shard_mib:
        raise ValueError(f"want 0 < chunk_mib <= shard_mib, not chunk_mib={chunk_mib} shard_mib={shard_mib}")
    flat = _Flat()
    tree = _encode(state_dict, [], flat)
    started = time.perf_counter()
    target = open_target(dest, TargetOptions.from_keywords(**target_options))
    try:
        old = _old_arrays(target)
        target.delete(ROOT_META)  # first: from here on, no reader takes this place for a checkpoint
        _clear(target, set(old or ()) | set(flat.arrays))
        store = _RootLast(AifZarrStore(target))
        gate = asyncio.Semaphore(ARRAYS_AT_ONCE)

        async def write_all() -> None:
            await _all(
                _write_array(store, path, tensor, compressor, int(chunk_mib * MiB), int(shard_mib * MiB), gate)
                for path, tensor in flat.arrays.items()
            )
            # last: the root group, which makes the checkpoint visible
            await zasync.create_group(
                store=AifZarrStore(target), zarr_format=3, attributes={ATTR: {"version": FORMAT_VERSION, "tree": tree}}
            )

        sync(write_all())
        return {
            "location": target.location,
            "via": target.kind,
            "door": target.kind,
            "arrays": len(flat.arrays),
            "tensor_bytes": flat.nbytes,
            "stored_bytes": store.stored_bytes,
            "codec": codec,
            "seconds": time.perf_counter() - started,
        }
    finally:
        target.close()


# -- loading -------------------------------------------------------------------------------------
def _read_tree(target: CheckpointTarget) -> dict[str, Any]:
    try:
        meta = json.loads(target.read_bytes(ROOT_META))
    except FileNotFoundError:
        found = next(iter(target.list()), None)
        why = (
            "files are there but not the root group's zarr.json: the save did not finish"
            if found is not None
            else "nothing is there"
        )
        raise CheckpointNotFound(f"no zarr checkpoint at {target.location}: {why}") from None
    tree = meta.get("attributes", {}).get(ATTR)
    if tree is None:
        raise ValueError(f"{target.location} is a zarr group, not an aif checkpoint (no {ATTR!r} attribute)")
    if tree.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{target.location}: checkpoint format {tree.get('version')}, this code reads {FORMAT_VERSION}"
        )
    return tree["tree"]


def _scalar(spec: dict[str, Any]) -> torch.Tensor:
    dtype = _torch_dtype(spec["dtype"])
    raw = bytearray.fromhex(spec["hex"])
    stored = _RAW_BY_WIDTH[len(raw)] if spec["dtype"] in _RAW_DTYPES else dtype
    return torch.frombuffer(raw, dtype=stored).view(dtype).reshape(())


async def _read_array(store: Store, path: str, into: torch.Tensor | None, gate: asyncio.Semaphore) -> torch.Tensor:
    async with gate:
        array = await zasync.open_array(store=store, path=path, zarr_format=3)
        dtype = _torch_dtype(str(array.attrs.get("torch_dtype", "")))
        shape = tuple(array.shape)
        if into is not None and (tuple(into.shape) != shape or into.dtype != dtype):
            raise ValueError(
                f"{path}: the checkpoint has {_dtype_name(dtype)}{list(shape)}, the tensor to "
                f"load into is {_dtype_name(into.dtype)}{list(into.shape)}"
            )
        direct = into is not None and into.device.type == "cpu" and into.is_contiguous()
        tensor = into if direct else torch.empty(shape, dtype=dtype)
        assert tensor is not None
        out = _numpy_view(tensor.detach())
        if out.dtype != np.dtype(array.dtype):
            raise ValueError(f"{path}: stored as {array.dtype}, expected {out.dtype} for {_dtype_name(dtype)}")
        if out.size:
            # straight into the tensor's memory: no second copy of a large tensor
            await array.get_orthogonal_selection(
                Ellipsis, out=default_buffer_prototype().nd_buffer.from_numpy_array(out)
            )
        if into is not None and not direct:
            with torch.no_grad():
                into.copy_(tensor)
            return into
        return tensor


def _children(node: dict[str, Any], into: Any, where: str) -> list[tuple[Any, dict[str, Any], Any]]:
    """(key, child node, what ``into`` has there) for each child a load visits: with a dict to
    load into, only its keys (all of which the checkpoint must have); with a list or tuple of
    the same length, its items."""
    if "dict" in node:
        if isinstance(into, dict):
            missing = [k for k in into if k not in {key for key, _ in node["dict"]}]
            if missing:
                raise KeyError(f"{where or '(root)'}: not in the checkpoint: {missing}")
            return [(key, child, into[key]) for key, child in node["dict"] if key in into]
        return [(key, child, None) for key, child in node["dict"]]
    items = node.get("list", None) or node.get("tuple", None) or []
    subs = into if isinstance(into, (list, tuple)) and len(into) == len(items) else [None] * len(items)
    return [(i, child, sub) for i, (child, sub) in enumerate(zip(items, subs))]


def _wanted(node: dict[str, Any], into: Any, found: dict[str, torch.Tensor | None], where: str = "") -> None:
    """The arrays a load reads, each with the tensor of ``into`` it fills (or None)."""
    if "array" in node:
        found[node["array"]] = into if isinstance(into, torch.Tensor) else None
    elif "dict" in node or "list" in node or "tuple" in node:
        for key, child, sub in _children(node, into, where):
            _wanted(child, sub, found, f"{where}/{key}")


def _decode(node: dict[str, Any], into: Any, loaded: dict[str, torch.Tensor], where: str) -> Any:
    if "array" in node:
        return loaded[node["array"]]
    if "scalar" in node:
        value = _scalar(node["scalar"])
        if isinstance(into, torch.Tensor):
            if into.shape != value.shape or into.dtype != value.dtype:
                raise ValueError(
                    f"{where}: the checkpoint has a 0-d {_dtype_name(value.dtype)}, the tensor to "
                    f"load into is {_dtype_name(into.dtype)}{list(into.shape)}"
                )
            with torch.no_grad():
                into.copy_(value)
            return into
        return value
    if "dict" in node:
        values = {
            key: _decode(child, sub, loaded, f"{where}/{key}") for key, child, sub in _children(node, into, where)
        }
        if isinstance(into, dict):
            into.update(values)
            return into
        return values
    if "list" in node or "tuple" in node:
        items = [_decode(child, sub, loaded, f"{where}/{i}") for i, child, sub in _children(node, into, where)]
        if isinstance(into, list) and len(into) == len(items):
            into[:] = items
            return into
        return items if "list" in node else tuple(items)
    if "float" in node:
        return float(node["float"])
    return node["value"]


def load_zarr(src: str | os.PathLike[str], *, into: Any = None, **target_options: Any) -> Any:
    """The state dict saved at ``src``, its tensors new CPU tensors; or, given ``into`` (a state
    dict of the same structure), its tensors filled in place and its other leaves replaced, and
    ``into`` returned. ``CheckpointNotFound`` when ``src`` holds no finished checkpoint."""
    target = open_target(src, TargetOptions.from_keywords(**target_options))
    try:
        tree = _read_tree(target)
        wanted: dict[str, torch.Tensor | None] = {}
        _wanted(tree, into, wanted)
        store = AifZarrStore(target, read_only=True)
        gate = asyncio.Semaphore(ARRAYS_AT_ONCE)

        async def read_all() -> list[torch.Tensor]:
            return await _all(_read_array(store, path, tensor, gate) for path, tensor in wanted.items())

        loaded = dict(zip(wanted, sync(read_all())))
        return _decode(tree, into, loaded, "")
    finally:
        target.close()
