"""What makes a DCP checkpoint complete and whole, without PyTorch: names, errors, the manifest.

A checkpoint directory holds PyTorch's ``.metadata`` (written last: its presence means
complete), the ``__<rank>_<n>.distcp`` data files, and ``aif-manifest.json``:
``{"format": "aif-gateway/dcp-manifest/1", "hash": "xxh3_64", "files": {name: {"size": n,
"items": [[offset, length, xxh3_64 hex] (+ [raw offset, dtype, shape] for a tensor whose record
holds its storage whole)]}}}``. The items of a file tile it exactly, so their digests cover every
byte. This module needs no torch, so a checkpoint can be checked from any node
(``aif-gateway ckpt verify``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import xxhash

from .targets import CheckpointTarget

__all__ = [
    "MANIFEST",
    "METADATA",
    "CheckpointNotFound",
    "IntegrityError",
    "describe",
    "load_manifest_items",
    "read_manifest",
    "verify_target",
]

METADATA = ".metadata"
MANIFEST = "aif-manifest.json"
_WINDOW = 64 << 20


class CheckpointNotFound(FileNotFoundError):
    """No complete checkpoint at the location: its ``.metadata`` (or zarr root) is missing."""


class IntegrityError(ValueError):
    """The bytes differ from the manifest, or there is no manifest to check them against."""


def read_manifest(target: CheckpointTarget, name: str = MANIFEST) -> dict[str, Any] | None:
    try:
        return json.loads(target.read_bytes(name))
    except FileNotFoundError:
        return None


def load_manifest_items(
    target: CheckpointTarget, required: bool, name: str = MANIFEST
) -> dict[tuple[str, int], list[Any]]:
    """The manifest's items by (file, offset); {} for a checkpoint without one (a stock writer's),
    an IntegrityError instead when ``required`` (verification asked for)."""
    manifest = read_manifest(target, name)
    if manifest is None:
        if not required:
            return {}
        raise IntegrityError(
            f"{target.location} has no {name} (written by another writer?): it cannot be "
            "verified; load it with verify=False"
        )
    return {(file, item[0]): item for file, entry in manifest["files"].items() for item in entry["items"]}


def verify_target(target: CheckpointTarget, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Reread every data file and check it against the manifest: items that tile each file
    exactly, every item's xxh3, nothing past the last item. IntegrityError names the first file
    and byte range that differ; returns {"files", "bytes", "items"} when all match.
    ``progress(bytes_checked, bytes_in_all)`` is called after every read."""
    if not target.exists(METADATA):
        raise CheckpointNotFound(f"no complete checkpoint at {target.location}: {METADATA} is missing")
    manifest = read_manifest(target)
    if manifest is None:
        raise IntegrityError(f"{target.location} has no {MANIFEST}: nothing to verify against")
    total = items = 0
    everything = sum(entry["size"] for entry in manifest["files"].values())
    buffer = bytearray(_WINDOW)
    for name, entry in sorted(manifest["files"].items()):
        expected_at = 0
        for offset, length, digest, *_ in entry["items"]:
            if offset != expected_at:
                raise IntegrityError(f"{name}: the manifest leaves bytes {expected_at}-{offset - 1} uncovered")
            hasher = xxhash.xxh3_64()
            done = 0
            while done < length:
                view = memoryview(buffer)[: min(_WINDOW, length - done)]
                try:
                    target.read_into(name, offset + done, view)
                except EOFError:
                    raise IntegrityError(f"{target.location}/{name} is shorter than its manifest says") from None
                hasher.update(view)
                done += len(view)
                if progress is not None:
                    progress(total + offset + done, everything)
            if hasher.hexdigest() != digest:
                raise IntegrityError(
                    f"{target.location}/{name}: bytes {offset}-{offset + length - 1} do not match the manifest's xxh3"
                )
            expected_at = offset + length
            items += 1
        if target.size(name) != expected_at:
            raise IntegrityError(
                f"{target.location}/{name} is {target.size(name)} bytes, its manifest says {expected_at}"
            )
        total += expected_at
    return {"files": len(manifest["files"]), "bytes": total, "items": items}


def describe(target: CheckpointTarget) -> dict[str, Any]:
    """What is at the location: complete or not, the files with their sizes, manifest or not."""
    names = sorted(target.list())
    files = {name: target.size(name) for name in names if name.endswith(".distcp")}
    return {
        "location": target.location,
        "via": target.kind,
        "door": target.kind,  # the old name of "via", kept for scripts that read it
        "complete": METADATA in names,
        "manifest": MANIFEST in names,
        "files": files,
        "bytes": sum(files.values()),
        "other": [n for n in names if n not in files and n not in (METADATA, MANIFEST)],
    }
