"""Does reserving a file's blocks before writing it speed up the write? One directory, both ways.

    .venv/bin/python perf/prealloc_write.py DIR [--size-mib 256] [--files 8] [--rounds 3] [--fsync]

Writes ``--files`` new files of ``--size-mib`` each in DIR, in requests of the gateway's I/O size
for that filesystem (``layout.io_size``): plainly, after fallocate(2) of the whole size, after
fallocate with FALLOC_FL_KEEP_SIZE of the whole size, and with KEEP_SIZE reservations in windows
ahead of the bytes written (``fsio.reserve.Reservation``: what the gateway does on ext4, since a
declared length alone must reserve nothing), in turn, ``--rounds`` times, and prints the best
and median MiB/s of each and the median CPU time per GiB (steadier than MiB/s when other work
shares the machine). The answer decided ``layout.preallocation`` and ``reserve.RESERVE_WINDOW``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aif_gateway.fsio.fsinfo import detect
from aif_gateway.fsio.gpfs import fallocate, reserve_keeping_size
from aif_gateway.fsio.layout import MiB, io_size
from aif_gateway.fsio.reserve import Reservation

MODES = ("plain write", "fallocate", "fallocate keep-size", "keep-size windows")


def write_files(directory: Path, files: int, size: int, chunk: bytes, mode: str, fsync: bool) -> tuple[float, float]:
    """Wall and CPU seconds to create and write ``files`` files of ``size`` bytes (removed
    afterwards). CPU time is this process's user+system time: on a shared, busy machine it
    moves far less than wall time, and buffered writes are CPU-bound."""
    paths = [directory / f"prealloc-bench.{os.getpid()}.{i}" for i in range(files)]
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        for path in paths:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                reservation = None
                if mode == "keep-size windows":
                    reservation = Reservation(fd, 0, size, reserve_keeping_size, "benchmark")
                elif mode != "plain write":
                    fallocate(fd, 0, size, keep_size=mode == "fallocate keep-size")
                view, written = memoryview(chunk), 0
                while written < size:
                    if reservation is not None:
                        reservation.cover(min(size, written + len(view)))
                    written += os.write(fd, view[: size - written])
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        return time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        for path in paths:
            if path.exists():
                os.unlink(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fsync", action="store_true", help="fsync each file, as the gateway's --fsync does")
    args = parser.parse_args()

    fs = detect(args.directory)
    size = args.size_mib * MiB
    chunk = os.urandom(io_size(fs, size))
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu_per_gib: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            wall, cpu = write_files(args.directory, args.files, size, chunk, mode, args.fsync)
            rates[mode].append(args.files * args.size_mib / wall)
            cpu_per_gib[mode].append(cpu * 1000 / (args.files * args.size_mib / 1024))
    print(
        f"{args.directory}: {fs.kind}, block {fs.block_size}, io size {len(chunk) // 1024} KiB, "
        f"{args.files} x {args.size_mib} MiB, fsync={args.fsync}, {args.rounds} rounds"
    )
    for mode in MODES:
        print(
            f"  {mode:20} best {max(rates[mode]):6.0f} MiB/s   median {statistics.median(rates[mode]):6.0f}"
            f" MiB/s   CPU median {statistics.median(cpu_per_gib[mode]):5.0f} ms/GiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
