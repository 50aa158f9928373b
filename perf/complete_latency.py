"""CompleteMultipartUpload latency: parts in the upload's data file (renamed) vs assembled.

    .venv/bin/python perf/complete_latency.py [--dir /dev/shm] [--size-gib 4] [--part-mib 64]
                                              [--mode both|after|before] [--rounds 1]

Uploads an object of ``--size-gib`` in parts of ``--part-mib`` (the last one shorter by 1 MiB,
as real objects are) through the store's multipart API on a fresh root in ``--dir``, then times
Complete alone. ``after`` is today's path: every part's length is known before its body (as the
protocol layer reports it), so the parts land in one data file and Complete renames it.
``before`` forces the old path without any switch in the gateway: the parts are sent with an
unknown length, so each gets a file of its own and Complete concatenates them (copy_file_range,
which is a real copy on tmpfs and ext4 and a reflink on XFS/Btrfs). Prints one line per round
and mode; ``measure()`` returns the seconds, for the benchmark suite.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aif_gateway.store.base import CompletedPart, ObjectAttrs, WriteOptions
from aif_gateway.store.fs import FsStore

MiB = 1 << 20
_CHUNK = b"\x5a" * MiB  # the body as the protocol layer hands it over: 1 MiB chunks


async def _body(size: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        piece = _CHUNK[: min(MiB, size - sent)]
        sent += len(piece)
        yield piece


def part_sizes(size: int, part_size: int) -> list[int]:
    sizes = [part_size] * (size // part_size)
    if size % part_size:
        sizes.append(size % part_size)
    return sizes


async def _measure(directory: Path, size: int, part_size: int, in_place: bool) -> tuple[float, float]:
    """(seconds to upload the parts, seconds Complete took)."""
    root = Path(tempfile.mkdtemp(prefix="complete-latency.", dir=directory))
    try:
        store = FsStore(root)
        await store.create_bucket("bench", "bench")
        upload_id = await store.create_multipart("bench", "object", ObjectAttrs())
        started = time.perf_counter()
        parts = []
        for number, length in enumerate(part_sizes(size, part_size), start=1):
            options = WriteOptions(expected_size=length if in_place else None)
            info = await store.upload_part("bench", "object", upload_id, number, _body(length), options)
            parts.append(CompletedPart(number, info.etag))
        uploaded = time.perf_counter() - started
        started = time.perf_counter()
        info = await store.complete_multipart("bench", "object", upload_id, parts, WriteOptions())
        completed = time.perf_counter() - started
        if info.size != size:
            raise AssertionError(f"completed {info.size} bytes, expected {size}")
        return uploaded, completed
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(directory: Path, size: int, part_size: int, in_place: bool) -> float:
    """Complete's latency in seconds for one upload."""
    return asyncio.run(_measure(directory, size, part_size, in_place))[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--part-mib", type=int, default=64)
    parser.add_argument("--mode", choices=("both", "after", "before"), default="both")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    size = int(args.size_gib * 1024 * MiB) - MiB
    part_size = args.part_mib * MiB
    modes = {"both": ("before", "after"), "after": ("after",), "before": ("before",)}[args.mode]
    print(f"# {args.dir}: object {size} bytes, {len(part_sizes(size, part_size))} parts of {args.part_mib} MiB")
    print(f"{'mode':<8}{'round':>6}{'upload s':>11}{'Complete ms':>14}")
    for round_number in range(1, args.rounds + 1):
        for mode in modes:
            uploaded, completed = asyncio.run(_measure(args.dir, size, part_size, in_place=mode == "after"))
            print(f"{mode:<8}{round_number:>6}{uploaded:>11.2f}{completed * 1000:>14.2f}", flush=True)


if __name__ == "__main__":
    main()
