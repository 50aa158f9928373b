"""What acting as a user costs per request: switching a thread's credentials and back, and
opening beneath a directory instead of by path.

    .venv/bin/python perf/identity_switch.py [--dir /tmp] [--calls 50000] [--repeat 5]

Prints one Markdown table of microseconds per operation (the best of --repeat rounds of --calls
calls each; the median would carry more of the other programs sharing the machine), for the C
engine and its pure-Python version:
- set_thread_creds + restore_thread_creds: a switch to a uid, gid and supplementary groups (1 and
  16 groups) and back, which every request that touches the filesystem as its user pays once;
  as root (the gateway's case). Run as another user it switches to that user's own ids;
- open_beneath of a file three directories down, then close, with openat2 and with the
  O_NOFOLLOW walk (AIF_OPENAT2=0), next to os.open of the same file by its relative path under
  dir_fd and by its absolute path (the kernel's plain lookup).
A program, not a test: numbers depend on the machine; nothing here asserts them.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aif_gateway import _native
from aif_gateway.fsio import pyengine

ENGINES = {"C": _native, "Python version": pyengine}
RELATIVE = "a/b/c/object"


def best_us(calls: int, repeat: int, run: Callable[[int], None]) -> float:
    """Microseconds per call of run(calls), the best of repeat rounds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        run(calls)
        best = min(best, time.perf_counter_ns() - start)
    return best / calls / 1000


def switch_and_back(engine, uid: int, gid: int, groups: list[int]) -> Callable[[int], None]:
    set_creds, restore = engine.set_thread_creds, engine.restore_thread_creds

    def run(calls: int) -> None:
        for _ in range(calls):
            set_creds(uid, gid, groups)
            restore()

    return run


def open_close(opener: Callable[[], int]) -> Callable[[int], None]:
    close = os.close

    def run(calls: int) -> None:
        for _ in range(calls):
            close(opener())

    return run


def with_openat2(enabled: bool) -> None:
    if enabled:
        os.environ.pop("AIF_OPENAT2", None)
    else:
        os.environ["AIF_OPENAT2"] = "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where the file to open is made")
    parser.add_argument("--calls", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    root = os.geteuid() == 0
    uid, gid = (4101, 4101) if root else (os.geteuid(), os.getegid())
    groups_1 = [4201] if root else os.getgroups()[:1]
    groups_16 = list(range(4201, 4217)) if root else os.getgroups()
    rows: list[tuple[str, str, float]] = []
    for name, engine in ENGINES.items():
        for groups in (groups_1, groups_16):
            label = f"set_thread_creds({len(groups)} group{'s' * (len(groups) != 1)}) + restore_thread_creds"
            rows.append((label, name, best_us(args.calls, args.repeat, switch_and_back(engine, uid, gid, groups))))

    work = Path(tempfile.mkdtemp(prefix="identity-switch-", dir=args.dir))
    try:
        (work / RELATIVE).parent.mkdir(parents=True)
        (work / RELATIVE).write_bytes(b"x")
        dir_fd = os.open(work, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        flags = os.O_RDONLY | os.O_CLOEXEC
        absolute = str(work / RELATIVE)
        for name, engine in ENGINES.items():
            for enabled, how in ((True, "openat2"), (False, "walk")):
                with_openat2(enabled)
                opener = lambda e=engine: e.open_beneath(dir_fd, RELATIVE, os.O_RDONLY)  # noqa: E731
                rows.append(
                    (f"open_beneath + close ({how})", name, best_us(args.calls, args.repeat, open_close(opener)))
                )
        with_openat2(True)
        rows.append(
            (
                "os.open relative to dir_fd + close",
                "stdlib",
                best_us(args.calls, args.repeat, open_close(lambda: os.open(RELATIVE, flags, dir_fd=dir_fd))),
            )
        )
        rows.append(
            (
                "os.open absolute path + close",
                "stdlib",
                best_us(args.calls, args.repeat, open_close(lambda: os.open(absolute, flags))),
            )
        )
        os.close(dir_fd)
    finally:
        shutil.rmtree(work)

    print(
        f"- machine: {platform.processor() or platform.machine()}, `nproc` = {os.cpu_count()}, "
        f"kernel {platform.release()}; run as {'root' if root else 'uid ' + str(os.geteuid())}"
    )
    print(f"- files on {args.dir}; {args.calls} calls, best of {args.repeat} rounds; path `{RELATIVE}` (4 components)")
    print()
    print("| operation | engine | µs per operation |")
    print("|---|---|---|")
    for label, name, us in rows:
        print(f"| {label} | {name} | {us:.2f} |")


if __name__ == "__main__":
    main()
