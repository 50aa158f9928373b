"""Staging benchmark (issue 4): ``aif-gateway stage in`` next to ``cp -r`` and ``rclone copy``.

    .venv/bin/python perf/stage_bench.py [--quick] [--dir /dev/shm] [--report FILE]

Lays two trees in a bucket directory of a fresh aif-gateway root on ``--dir`` (default /dev/shm,
tmpfs, so that the programs' own cost shows rather than a disk's): many small files (20,000 x
16 KiB in 100 directories; --quick 2,000) and a few large ones (4 x 512 MiB; --quick 4 x 64 MiB).
It starts the gateway on that root (perf/servers.py, 2 workers), then, in interleaved rounds
(median of 3; --quick 1), copies each tree
- (a) from the filesystem: ``aif-gateway stage in TREE --to DEST`` against ``cp -r TREE DEST``;
- (b) over S3 from the gateway: ``aif-gateway stage in s3://stage/TREE --to DEST`` against
  ``rclone copy aif:stage/TREE DEST`` (rclone's defaults; its remote is set by
  ``RCLONE_CONFIG_AIF_*`` variables and its config file is a path in the run's log directory).
Each copy goes to a fresh destination, checked (file count and bytes) and deleted after it.

Printed: a Markdown table with GiB/s and files/s of both programs, their ratio, the CPU seconds
of the copying process (user + system, from wait4) and of the gateway during the copy (/proc).
The stager's fixed cost (interpreter start-up and imports: a stage of one tiny file) is measured
apart. ``--cprofile DIR`` additionally runs each stage once more under cProfile and leaves the
``.prof`` files there (read them with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dataset
from dataset import GiB, MiB
from report import machine, publish, run_main, software
from servers import Credentials, Server, gateway, venv_tool

BUCKET = "stage"
KiB = 1 << 10


@dataclass(frozen=True)
class Sizes:
    small_files: int
    small_size: int
    small_dirs: int
    large_files: int
    large_size: int
    rounds: int


FULL = Sizes(small_files=20_000, small_size=16 * KiB, small_dirs=100, large_files=4, large_size=512 * MiB, rounds=3)
QUICK = Sizes(small_files=2_000, small_size=16 * KiB, small_dirs=100, large_files=4, large_size=64 * MiB, rounds=1)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    seconds: float
    cpu_s: float  # the copying process (and its children)
    gateway_cpu_s: float


@dataclass
class Case:
    tree: str  # "small" | "large"
    path: str  # "filesystem" | "S3"
    files: int
    nbytes: int
    runs: dict[str, list[Run]] = field(default_factory=dict)  # "stage" | "peer" -> runs


def lay_out(tree_root: Path, sizes: Sizes) -> None:
    """Small files get distinct contents (offsets into the random block), so nothing can dedupe."""
    block = memoryview(dataset.pattern(16 * MiB + sizes.small_size))
    for index in range(sizes.small_files):
        path = tree_root / "small" / f"d{index % sizes.small_dirs:03d}" / f"f{index:06d}"
        if index < sizes.small_dirs:
            path.parent.mkdir(parents=True)
        offset = (index * 4099) % (16 * MiB)
        path.write_bytes(block[offset : offset + sizes.small_size])
    for index in range(sizes.large_files):
        dataset.write_file(tree_root / "large" / f"part-{index}", sizes.large_size)
    (tree_root / "one").mkdir()
    (tree_root / "one" / "tiny").write_bytes(b"x")


def children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def run_measured(command: list[str], env: dict[str, str], server: Server) -> Run:
    """Run ``command`` to completion: wall seconds, its CPU (it and its children, counted once
    reaped: nothing else of ours runs meanwhile) and the gateway's CPU over the same time."""
    gateway_before, cpu_before = server.cpu_seconds(), children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} exited {done.returncode}:\n"
            f"{done.stderr.decode(errors='replace')[-3000:]}\n{done.stdout.decode(errors='replace')[-2000:]}"
        )
    return Run(elapsed, children_cpu() - cpu_before, server.cpu_seconds() - gateway_before)


def check_copy(dest: Path, files: int, nbytes: int) -> None:
    """The copy holds the right number of files and bytes (the stage's own state left out)."""
    found_files = found_bytes = 0
    for dirpath, dirnames, filenames in os.walk(dest):
        dirnames[:] = [d for d in dirnames if d != ".aifstage"]
        for name in filenames:
            found_files += 1
            found_bytes += os.lstat(os.path.join(dirpath, name)).st_size
    if (found_files, found_bytes) != (files, nbytes):
        raise RuntimeError(f"{dest}: {found_files} files, {found_bytes} bytes; expected {files}, {nbytes}")


class StageBench:
    def __init__(
        self, base: Path, sizes: Sizes, workers: int, jobs: int | None, cprofile: Path | None, rclone_args: list[str]
    ) -> None:
        self.root = base / "root"
        self.logs = base / "logs"
        self.scratch = base / "dest"
        self.tree_root = self.root / BUCKET
        self.sizes = sizes
        self.workers = workers
        self.jobs = jobs
        self.cprofile = cprofile
        self.rclone_args = rclone_args
        self.creds = Credentials()
        self.server: Server | None = None
        self.cases: list[Case] = []
        self.fixed: dict[str, list[Run]] = {}
        self._n = 0

    # -- commands ----------------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        assert self.server is not None
        return {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.creds.access_key,
            "AWS_SECRET_ACCESS_KEY": self.creds.secret_key,
            "AWS_REGION": "us-east-1",
            "RCLONE_CONFIG": str(self.logs / "rclone.conf"),  # a file of its own, never /dev/null
            "RCLONE_CONFIG_AIF_TYPE": "s3",
            "RCLONE_CONFIG_AIF_PROVIDER": "Other",
            "RCLONE_CONFIG_AIF_ACCESS_KEY_ID": self.creds.access_key,
            "RCLONE_CONFIG_AIF_SECRET_ACCESS_KEY": self.creds.secret_key,
            "RCLONE_CONFIG_AIF_ENDPOINT": self.server.url,
            "RCLONE_CONFIG_AIF_REGION": "us-east-1",
        }

    def source(self, tree: str, path: str) -> str:
        return f"s3://{BUCKET}/{tree}/" if path == "S3" else str(self.tree_root / tree)

    def stage_command(self, tree: str, path: str, dest: Path, profile_to: Path | None = None) -> list[str]:
        assert self.server is not None
        head = (
            [venv_tool("aif-gateway")]
            if profile_to is None
            else [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m", "aif_gateway"]
        )
        command = [*head, "stage", "in", self.source(tree, path), "--to", str(dest), "--no-progress", "--json"]
        if path == "S3":
            command += ["--endpoint-url", self.server.url]
        if self.jobs:
            command += ["--jobs", str(self.jobs)]
        return command

    def peer_command(self, tree: str, path: str, dest: Path) -> list[str]:
        if path == "S3":
            return [venv_tool("rclone"), "copy", f"aif:{BUCKET}/{tree}", str(dest), *self.rclone_args]
        return ["cp", "-r", self.source(tree, path), str(dest)]

    def fresh_dest(self) -> Path:
        self._n += 1
        return self.scratch / f"d{self._n}"

    # -- measuring ---------------------------------------------------------------------------------

    def once(self, case: Case, who: str) -> Run:
        assert self.server is not None
        dest = self.fresh_dest()
        command = (self.stage_command if who == "stage" else self.peer_command)(case.tree, case.path, dest)
        result = run_measured(command, self.env, self.server)
        check_copy(dest, case.files, case.nbytes)
        shutil.rmtree(dest)
        return result

    def measure_fixed(self) -> None:
        """A stage of one 1-byte file: interpreter start-up, imports, the state directory."""
        for path in ("filesystem", "S3"):
            case = Case("one", path, 1, 1)
            self.fixed[path] = [self.once(case, "stage") for _ in range(3)]

    def run(self) -> None:
        s = self.sizes
        log(
            f"laying out {s.small_files} x {s.small_size // KiB} KiB and {s.large_files} x "
            f"{s.large_size // MiB} MiB in {self.tree_root}"
        )
        lay_out(self.tree_root, s)
        self.scratch.mkdir()
        self.server = gateway(self.root, self.logs, self.creds, self.workers)
        log(f"starting {self.server.name}: {shlex.join(self.server.command)}")
        self.server.start()
        self.cases = [
            Case(tree, path, files, nbytes)
            for tree, files, nbytes in (
                ("small", s.small_files, s.small_files * s.small_size),
                ("large", s.large_files, s.large_files * s.large_size),
            )
            for path in ("filesystem", "S3")
        ]
        log("fixed cost (a stage of one tiny file)")
        self.measure_fixed()
        # Warm-up, untimed: the gateway's workers, rclone's and the stager's first imports.
        for case in self.cases:
            for who in ("stage", "peer"):
                self.once(case, who)
        for round_no in range(s.rounds):
            for case in self.cases:
                # Alternate who goes first, so that neither always follows the other's dirty pages.
                order = ("stage", "peer") if round_no % 2 == 0 else ("peer", "stage")
                for who in order:
                    log(f"round {round_no + 1}/{s.rounds}: {case.tree} files, {case.path}, {who}")
                    case.runs.setdefault(who, []).append(self.once(case, who))
        if self.cprofile is not None:
            self.cprofile.mkdir(parents=True, exist_ok=True)
            for case in self.cases:
                dest = self.fresh_dest()
                target = self.cprofile / f"stage-{case.tree}-{case.path.lower()}.prof"
                log(f"cProfile: {case.tree} files, {case.path} -> {target}")
                run_measured(self.stage_command(case.tree, case.path, dest, target), self.env, self.server)
                shutil.rmtree(dest)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    # -- the table ---------------------------------------------------------------------------------

    def table(self) -> str:
        lines = [
            "| tree | path | aif-gateway stage in | peer | stage ÷ peer | without the fixed cost | CPU stager "
            "| CPU peer | CPU gateway (stage / rclone) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for case in self.cases:
            stage, peer = case.runs["stage"], case.runs["peer"]
            ts, tp = statistics.median(r.seconds for r in stage), statistics.median(r.seconds for r in peer)
            peer_name = "rclone copy" if case.path == "S3" else "cp -r"
            gw = (
                (
                    f"{statistics.median(r.gateway_cpu_s for r in stage):.2f} s / "
                    f"{statistics.median(r.gateway_cpu_s for r in peer):.2f} s"
                )
                if case.path == "S3"
                else "—"
            )
            label = f"{case.files:,} × {_size(case.nbytes // case.files)}"
            fixed_s = statistics.median(r.seconds for r in self.fixed[case.path])
            lines.append(
                f"| {label} | {case.path} | {_rate(case, stage)} | {peer_name}: {_rate(case, peer)} "
                f"| **{tp / ts:.2f}×** | {tp / max(ts - fixed_s, 1e-3):.2f}× | {_cpu(stage)} | {_cpu(peer)} | {gw} |"
            )
        fixed = "; ".join(
            f"{path}: {_spread([r.seconds for r in runs])} s wall, {statistics.median(r.cpu_s for r in runs):.2f} CPU-s"
            for path, runs in self.fixed.items()
        )
        return "\n".join(lines) + (
            f"\n\nFixed cost of one `stage in` (a tree of one 1-byte file: Python "
            f"start-up, imports, state directory), median [range] of 3: {fixed}. "
            'It is included in the stage in figures; "without the fixed cost" '
            "takes it out of the stager's time."
        )


def _size(nbytes: int) -> str:
    return f"{nbytes // MiB} MiB" if nbytes >= MiB else f"{nbytes // KiB} KiB"


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def _rate(case: Case, runs: list[Run]) -> str:
    seconds = [r.seconds for r in runs]
    median = statistics.median(seconds)
    return f"{case.nbytes / GiB / median:.2f} GiB/s, {case.files / median:,.0f} files/s<br>{_spread(seconds)} s"


def _cpu(runs: list[Run]) -> str:
    return f"{statistics.median(r.cpu_s for r in runs):.2f} s"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="perf/stage_bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2,000 small files, 4 x 64 MiB, one round")
    parser.add_argument(
        "--dir", type=Path, default=Path("/dev/shm"), help="filesystem for the trees and the copies (default /dev/shm)"
    )
    parser.add_argument("--workers", type=int, default=2, help="aif-gateway worker processes (default 2)")
    parser.add_argument("--jobs", type=int, help="stage in --jobs (default: the stager's own)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 3; --quick 1)")
    parser.add_argument("--rclone-args", default="", help="extra rclone copy flags, e.g. '--transfers 16'")
    parser.add_argument("--cprofile", type=Path, metavar="DIR", help="also profile one stage of each case")
    parser.add_argument("--report", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and logs")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args.dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="aif-stage-bench-", dir=args.dir))
    (base / "root").mkdir()
    (base / "logs").mkdir()
    bench = StageBench(base, sizes, args.workers, args.jobs, args.cprofile, shlex.split(args.rclone_args))
    started = datetime.now(UTC)
    measured = software()
    completed = False
    try:
        bench.run()
        completed = True
    finally:
        bench.stop()
        if args.keep:
            log(f"kept {base}")
        elif completed:
            shutil.rmtree(base, ignore_errors=True)
        else:
            shutil.rmtree(base / "root", ignore_errors=True)
            shutil.rmtree(base / "dest", ignore_errors=True)
            log(f"stopped early: logs kept in {base / 'logs'}")
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(args.dir)], capture_output=True, text=True).stdout.strip()
    rclone_version = subprocess.run([venv_tool("rclone"), "version"], capture_output=True, text=True).stdout.split(
        "\n", 1
    )[0]
    report = "\n".join(
        [
            f"- command: `.venv/bin/python perf/stage_bench.py {shlex.join(argv)}`",
            f"- date: {started:%Y-%m-%d %H:%M} UTC; data on {args.dir} ({fs}); aif-gateway --workers {args.workers}; "
            f"stage in --jobs {args.jobs or 'default'}; {rclone_version} copy "
            f"{args.rclone_args or 'with its defaults'}; median of {sizes.rounds} round(s) after a warm-up, "
            "[min–max] under each figure.",
            machine(),
            measured,
            "",
            "stage ÷ peer > 1 favours `aif-gateway stage in`. CPU: user + system seconds of the copying "
            "process and its children, and of the gateway's processes while that copy ran.",
            "",
            bench.table(),
        ]
    )
    return publish(report, args.report)


if __name__ == "__main__":
    run_main(main)
