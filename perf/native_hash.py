"""Throughput of the data-path engines: the C extension against its pure-Python version.

    .venv/bin/python perf/native_hash.py [--dir /dev/shm] [--mib 512] [--repeat 3]

Prints one Markdown table, GiB/s (best of --repeat runs), for:
- hashing only, in 1 MiB updates as a PUT feeds them: each algorithm alone, and MD5+CRC32C (the
  PUT default: ETag plus the checksum SDKs send);
- write_hashed: a --mib file written in 1 MiB batches at their offsets while hashing MD5+CRC32C,
  on --dir (default /dev/shm, so the filesystem costs little and the engine's cost shows), next
  to a plain pwrite of the same bytes (the raw limit on that filesystem);
- pwrite_striped / pread_striped of the whole buffer, 1 MiB stripes on 4 threads, against one
  os.pwrite / os.preadv call.
A program, not a test: numbers depend on the machine; nothing here asserts them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aif_gateway import _native
from aif_gateway.fsio import pyengine

MiB = 1 << 20
GiB = 1 << 30
BATCH = MiB  # what store/publish.py hands one worker-thread call


def best_rate(nbytes: int, run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return nbytes / best / GiB


def hash_all(engine, algorithms: list[str], data: memoryview) -> Callable[[], None]:
    def run() -> None:
        hasher = engine.Hasher(algorithms)
        for at in range(0, len(data), BATCH):
            hasher.update(data[at : at + BATCH])
        hasher.digests()

    return run


def write_all(engine, path: Path, data: memoryview) -> Callable[[], None]:
    def run() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            hasher = engine.Hasher(["CRC32C"])
            for at in range(0, len(data), BATCH):
                engine.write_hashed(fd, data[at : at + BATCH], at, hasher)
        finally:
            os.close(fd)

    return run


def plain_write(path: Path, data: memoryview) -> Callable[[], None]:
    def run() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for at in range(0, len(data), BATCH):
                os.pwrite(fd, data[at : at + BATCH], at)
        finally:
            os.close(fd)

    return run


def striped(engine, path: Path, data: memoryview, into: bytearray, writing: bool) -> Callable[[], None]:
    def run() -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if writing:
                engine.pwrite_striped(fd, data, 0, MiB, 4)
            else:
                engine.pread_striped(fd, into, 0, MiB, 4)
        finally:
            os.close(fd)

    return run


def one_call(path: Path, data: memoryview, into: bytearray, writing: bool) -> Callable[[], None]:
    def run() -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if writing:
                os.pwrite(fd, data, 0)
            else:
                os.preadv(fd, [into], 0)
        finally:
            os.close(fd)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"))
    parser.add_argument("--mib", type=int, default=512, help="bytes per measurement, in MiB")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    data = memoryview(os.urandom(args.mib * MiB))
    into = bytearray(len(data))
    path = args.dir / f"aif-native-hash.{os.getpid()}"
    engines = {"native": _native, "python": pyengine}
    rows: list[tuple[str, float, float]] = []
    try:
        for algorithms in (["CRC32"], ["CRC32C"], ["CRC64NVME"], ["SHA1"], ["SHA256"], ["XXH3_64"], []):
            label = "hash MD5" if not algorithms else f"hash {algorithms[0]} + MD5"
            native, python = (
                best_rate(len(data), hash_all(e, algorithms, data), args.repeat) for e in engines.values()
            )
            rows.append((label, native, python))
        native, python = (best_rate(len(data), write_all(e, path, data), args.repeat) for e in engines.values())
        rows.append(("write_hashed MD5+CRC32C, 1 MiB batches", native, python))
        raw = best_rate(len(data), plain_write(path, data), args.repeat)
        rows.append(("(raw) os.pwrite, 1 MiB batches, no hashing", raw, raw))
        for writing, name in ((True, "pwrite_striped"), (False, "pread_striped")):
            native, python = (
                best_rate(len(data), striped(e, path, data, into, writing), args.repeat) for e in engines.values()
            )
            rows.append((f"{name}, 1 MiB stripes, 4 threads", native, python))
            raw = best_rate(len(data), one_call(path, data, into, writing), args.repeat)
            rows.append((f"(raw) one os.{'pwrite' if writing else 'preadv'} call", raw, raw))
    finally:
        path.unlink(missing_ok=True)

    print(f"engine: {_native.engine_info()}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}")
    print(f"data: {args.mib} MiB on {args.dir}, best of {args.repeat}\n")
    print("| measurement | native GiB/s | python GiB/s | native / python |")
    print("|---|---:|---:|---:|")
    for label, native, python in rows:
        print(f"| {label} | {native:.2f} | {python:.2f} | {native / python:.2f}x |")


if __name__ == "__main__":
    main()
