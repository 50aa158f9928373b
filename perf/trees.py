"""Before and after: the same benchmark rows for two or more source trees of aif-gateway, in one run.

    /work/main/.venv/bin/python perf/trees.py --tree before=/work/wt/before --tree after=/work/main \\
        [--quick] [--dir /dev/shm] [--rounds N] [--only get,put,small,list,stage,ckpt] [--report FILE]

For a change that must leave speed alone (a refactor): every row is measured for every tree, on
the same data and the same machine, minutes apart at most, and printed side by side with the
ratio of each tree to the first one (``--tree`` order). Run one tree twice (``--tree a=DIR --tree
b=DIR``) to see how far the ratios stray from 1.00 with no change at all: that is the noise.

A tree is a directory holding the package ``aif_gateway/`` with its compiled ``_native*.so``.
Everything of a tree runs in processes of its own: the interpreter of ``--python`` (default: the
one running this program) with ``PYTHONPATH=DIR``, in a working directory outside every tree. An
editable install in that interpreter's environment cannot shadow the tree: its finder sits after
the path finder that reads PYTHONPATH. This is checked, not assumed: at start each tree's
interpreter says where it imported ``aif_gateway`` and ``aif_gateway._native`` from, and the run
stops unless both are inside DIR; the checkpoint program says so again every round. Bytecode goes
to one cache under the run's directory (PYTHONPYCACHEPREFIX), so no tree is written to, and no
tree starts faster than another because it happened to have ``__pycache__`` directories.

Rows (``--only`` picks groups; sizes of the full run, ``--quick`` in brackets):
- get: GET of one 1 GiB object (256 MiB) by curl, one stream, body discarded, 3 (4) times in a row.
- put: PUT of the same bytes by ``curl -T``, one request (the object deleted after each).
- small: GET, PUT and HEAD of 4 KiB objects, 5,000 of each (1,000), 64 in flight (perf/drivers.py's
  aiohttp driver).
- list: ListObjectsV2 of 100,000 keys (10,000) in 100 (20) directories by ``s5cmd ls``, full
  pagination, no delimiter.
- stage: ``aif-gateway stage in`` of 10,000 x 16 KiB files (2,000) and of 4 x 256 MiB (4 x 64 MiB),
  from the filesystem (the tree's gateway root) and over S3 from the tree's own gateway; each copy
  checked (files, bytes) and deleted.
- ckpt: ``ckpt.save`` and ``ckpt.load`` of a model-like state dict of 512 MiB (256; ``--ckpt-mib``),
  straight into the gateway root's bucket and over S3 (perf/tree_ckpt.py, in the tree's
  interpreter; every load compared with the original).
Each tree runs its own gateway (``--workers``, default 2) on its own root; the roots are hard links
of one data set laid once, so every tree reads the very same bytes (and page cache).

Why interleaved: the machine is shared and its speed drifts by tens of percent within minutes.
Rather than all of one tree and then all of the other, every round measures each row for each
tree back to back, the trees' order rotated from round to round (so that with the default number
of rounds each tree goes first equally often); one untimed warm-up round comes first. A figure is
the median over rounds, with [min-max]; "paired" is the median [min-max] of each round's ratio of
two measurements taken next to each other, which cancels drift slower than one row. No
thresholds: figures and ratios only; rates throughout, so a ratio > 1 means the tree is faster
than the first tree. CPU (user + system seconds per unit of work) is the gateway's for the server
rows and the stager's or checkpointing process's plus the gateway's for stage and ckpt; it is
less disturbed by other programs than wall time, so a CPU ratio far from 1 is the surer sign.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dataset
import stage_bench
from bench import machine_busy_seconds, own_cpu_seconds
from dataset import GiB, MiB
from drivers import Curl, HttpDriver, S5cmd, run_timed
from report import machine, publish, run_main
from servers import Credentials, Server, gateway

KiB = 1 << 10
GROUPS = ("get", "put", "small", "list", "stage", "ckpt")
CONCURRENCY = 64
SMALL_SIZE = 4 * KiB
TREE_CKPT = Path(__file__).resolve().parent / "tree_ckpt.py"
# Buckets of every tree's root.
DATA, LIST, STAGE, PUT, CKPT = "data", "list", "stage", "put", "bench"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Sizes:
    large: int
    get_repeats: int  # GETs of the large object in one measurement (one takes well under a second)
    small_count: int
    list_dirs: int
    list_files_per_dir: int
    stage: stage_bench.Sizes
    ckpt_mib: float
    rounds: int


FULL = Sizes(
    large=GiB,
    get_repeats=3,
    small_count=5_000,
    list_dirs=100,
    list_files_per_dir=1000,
    stage=stage_bench.Sizes(
        small_files=10_000, small_size=16 * KiB, small_dirs=100, large_files=4, large_size=256 * MiB, rounds=1
    ),
    ckpt_mib=512,
    rounds=5,
)
QUICK = Sizes(
    large=256 * MiB,
    get_repeats=4,
    small_count=1_000,
    list_dirs=20,
    list_files_per_dir=500,
    stage=stage_bench.Sizes(
        small_files=2_000, small_size=16 * KiB, small_dirs=100, large_files=4, large_size=64 * MiB, rounds=1
    ),
    ckpt_mib=256,
    rounds=3,
)


# -- the trees ---------------------------------------------------------------------------------------
PROBE = """\
import json, aif_gateway, aif_gateway._native as native
try:
    from aif_gateway.fsio.engine import engine_info
    engine = engine_info()
except ImportError:
    engine = "unknown (no aif_gateway.fsio.engine.engine_info)"
print(json.dumps({"package": aif_gateway.__file__, "native": native.__file__, "engine": engine}, default=str))
"""


@dataclass
class Tree:
    name: str
    path: Path
    env: dict[str, str] = field(default_factory=dict)  # the whole environment of its processes
    root: Path = Path()
    server: Server | None = None
    info: dict[str, str] = field(default_factory=dict)

    @property
    def gateway(self) -> Server:
        assert self.server is not None
        return self.server

    def check_imported(self, file: str, what: str) -> None:
        if not Path(file).resolve().is_relative_to(self.path):
            raise RuntimeError(
                f"tree {self.name}: {what} came from {file}, not from {self.path}: something shadows PYTHONPATH"
            )


def parse_tree(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--tree NAME=DIR, not {text!r}")
    tree = Path(path).resolve()
    if not (tree / "aif_gateway" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"{tree} holds no aif_gateway/__main__.py")
    if not list((tree / "aif_gateway").glob("_native*.so")):
        raise argparse.ArgumentTypeError(f"{tree}/aif_gateway has no compiled _native*.so: build it there first")
    return name, tree


def tree_env(path: Path, pycache: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "PYTHONPATH",
            "PYTHONHOME",
            "PYTHONSAFEPATH",
            "PYTHONSTARTUP",
            "PYTHONDONTWRITEBYTECODE",
            "AIF_GATEWAY_ROOT",
        )
    }
    return {**env, "PYTHONPATH": str(path), "PYTHONPYCACHEPREFIX": str(pycache), "PYTHONNOUSERSITE": "1"}


def git(path: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def describe(tree: Tree, python: str) -> None:
    """Where the tree's interpreter imports aif_gateway from (checked), its revision and engine."""
    done = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, env=tree.env)
    if done.returncode != 0:
        raise RuntimeError(f"tree {tree.name}: importing aif_gateway failed:\n{done.stderr[-3000:]}")
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    tree.check_imported(probe["package"], "aif_gateway")
    tree.check_imported(probe["native"], "aif_gateway._native")
    native = Path(probe["native"]).read_bytes()
    commit = git(tree.path, "rev-parse", "HEAD")
    tree.info = {
        "git": (
            f"{git(tree.path, 'describe', '--always', '--dirty')} ({commit[:12]}, "
            f"{git(tree.path, 'log', '-1', '--format=%cd', '--date=short')})"
        )
        if commit
        else "not a git checkout",
        "imported": probe["package"],
        "native": f"{Path(probe['native']).name}, sha256 {hashlib.sha256(native).hexdigest()[:12]}",
        "engine": str(probe["engine"]),
    }
    log(f"tree {tree.name}: {tree.path}, git {tree.info['git']}; aif_gateway imported from {probe['package']}")


# -- measurements ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    seconds: float
    work: float  # GiB, requests, keys or files done in ``seconds``
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.work / self.seconds


@dataclass
class Row:
    label: str
    unit: str  # of the rate, e.g. "GiB/s"
    cpu_unit: str  # e.g. "s/GiB", "µs/op"
    cpu_scale: float  # CPU seconds per unit of work -> cpu_unit
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # tree -> one per round


@dataclass
class Task:
    """One measurement for one tree: the rows it fills (several for the checkpoint program)."""

    name: str
    run: Callable[[Tree], dict[str, Sample]]
    warm_up: bool = True


class TreesBench:
    def __init__(
        self, base: Path, trees: list[Tree], sizes: Sizes, groups: list[str], workers: int, python: str
    ) -> None:
        self.base = base
        self.seed = base / "seed"
        self.dest = base / "dest"
        self.logs = base / "logs"
        self.trees = trees
        self.sizes = sizes
        self.groups = groups
        self.workers = workers
        self.python = python
        self.creds = Credentials()
        self.rows: dict[str, Row] = {}
        self._n = 0

    # -- data and servers --------------------------------------------------------------------------
    def small_path(self, index: int) -> str:
        return f"/{DATA}/{dataset.small_key('4 KiB', index)}"

    def lay_out(self) -> None:
        s = self.sizes
        log(f"laying out the data in {self.seed}")
        if {"get", "put"} & set(self.groups):
            dataset.write_file(self.seed / DATA / "big" / "whole", s.large)
        if "small" in self.groups:
            body = dataset.pattern(SMALL_SIZE)
            for index in range(s.small_count):
                path = self.seed / self.small_path(index).lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(body)
        if "list" in self.groups:
            for d in range(s.list_dirs):
                directory = self.seed / LIST / f"d{d:03d}"
                directory.mkdir(parents=True)
                for f in range(s.list_files_per_dir):
                    (directory / f"f{f:04d}").touch()
        if "stage" in self.groups:
            stage_bench.lay_out(self.seed / STAGE, s.stage)
        for bucket in (DATA, LIST, STAGE, PUT, CKPT):
            (self.seed / bucket).mkdir(exist_ok=True)
        self.dest.mkdir()
        for tree in self.trees:
            tree.root = self.base / "roots" / tree.name
            tree.root.parent.mkdir(exist_ok=True)
            # Hard links: one copy of the bytes (tmpfs is RAM) in roots of their own.
            subprocess.run(["cp", "-al", str(self.seed), str(tree.root)], check=True)

    def start(self) -> None:
        for tree in self.trees:
            tree.server = gateway(
                tree.root,
                self.logs,
                self.creds,
                self.workers,
                name=f"aif-gateway-{tree.name}",
                program=[self.python, "-m", "aif_gateway"],
                env=tree.env,
            )
            log(f"starting {tree.server.name}: PYTHONPATH={tree.path} {shlex.join(tree.server.command)}")
            tree.server.start()

    def stop(self) -> None:
        for tree in self.trees:
            if tree.server is not None:
                tree.server.stop()

    def client_env(self, tree: Tree) -> dict[str, str]:
        """A tree's client programs: its code, the gateway's keys, no ~/.aws."""
        return {
            **tree.env,
            "AWS_ACCESS_KEY_ID": self.creds.access_key,
            "AWS_SECRET_ACCESS_KEY": self.creds.secret_key,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": tree.gateway.url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(self.logs / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.logs / "no-aws-credentials"),
        }

    # -- the tasks ---------------------------------------------------------------------------------
    def row(self, label: str, unit: str, cpu_unit: str, cpu_scale: float) -> str:
        self.rows[label] = Row(label, unit, cpu_unit, cpu_scale)
        return label

    def server_timed(self, tree: Tree, action: Callable[[], float], work: float) -> Sample:
        before = tree.gateway.cpu_seconds()
        seconds = action()
        return Sample(seconds, work, tree.gateway.cpu_seconds() - before)

    def tasks(self) -> list[Task]:
        s = self.sizes
        tasks: list[Task] = []
        size = _size(s.large)
        gib = s.large / GiB
        curl = Curl(self.creds)
        if "get" in self.groups:
            repeats = s.get_repeats
            get = self.row(f"GET 1 × {size} (curl, one stream), {repeats} in a row", "GiB/s", "s/GiB", 1)

            def large_get(t: Tree) -> dict[str, Sample]:
                command = curl.get_command(f"{t.gateway.url}/{DATA}/big/whole")
                return {
                    get: self.server_timed(t, lambda: sum(run_timed(command) for _ in range(repeats)), gib * repeats)
                }

            tasks.append(Task(get, large_get))
        if "put" in self.groups:
            put = self.row(f"PUT 1 × {size} (curl -T, one request)", "GiB/s", "s/GiB", 1)

            def large_put(t: Tree) -> dict[str, Sample]:
                source = self.seed / DATA / "big" / "whole"
                sample = self.server_timed(
                    t, lambda: run_timed(curl.put_command(source, f"{t.gateway.url}/{PUT}/whole")), gib
                )
                dataset.empty_bucket(t.root, PUT)
                return {put: sample}

            tasks.append(Task(put, large_put))
        if "small" in self.groups:
            n = s.small_count
            gets = [self.small_path(i) for i in range(n)]
            puts = [f"/{PUT}/small/d{i % 100:02d}/k{i:06d}" for i in range(n)]
            body = dataset.pattern(SMALL_SIZE)
            for method, paths in (("GET", gets), ("PUT", puts), ("HEAD", gets)):
                label = self.row(f"{method} 4 KiB × {n:,}, {CONCURRENCY} in flight (aiohttp)", "ops/s", "µs/op", 1e6)
                task = self.small_task(label, method, paths, body if method == "PUT" else None)
                tasks.append(Task(label, task))
        if "list" in self.groups:
            keys = s.list_dirs * s.list_files_per_dir
            listed = self.row(
                f"ListObjectsV2 of {keys:,} keys, {s.list_dirs} dirs (s5cmd ls, full pagination)",
                "keys/s",
                "µs/key",
                1e6,
            )
            tasks.append(Task(listed, lambda t: {listed: self.listing(t, keys)}))
        if "stage" in self.groups:
            st = s.stage
            for tree_dir, files, nbytes in (
                ("small", st.small_files, st.small_files * st.small_size),
                ("large", st.large_files, st.large_files * st.large_size),
            ):
                for path in ("filesystem", "S3"):
                    small = tree_dir == "small"
                    label = self.row(
                        f"stage in {files:,} × {_size(nbytes // files)} "
                        f"{'from the filesystem' if path == 'filesystem' else 'over S3'}",
                        "files/s" if small else "GiB/s",
                        "ms/file" if small else "s/GiB",
                        1e3 if small else 1,
                    )
                    tasks.append(Task(label, self.stage_task(label, tree_dir, path, files, nbytes)))
        if "ckpt" in self.groups:
            labels = {
                f"{op}-{how}": self.row(
                    f"ckpt.{op} {s.ckpt_mib:g} MiB {'direct (root=)' if how == 'direct' else 'over S3'}",
                    "GiB/s",
                    "s/GiB",
                    1,
                )
                for how in ("direct", "s3")
                for op in ("save", "load")
            }
            # No warm-up round: the program warms up itself (its imports, its first connections).
            tasks.append(
                Task("ckpt save/load, direct and over S3", lambda t: self.checkpoint(t, labels), warm_up=False)
            )
        return tasks

    def small_task(
        self, label: str, method: str, paths: list[str], body: bytes | None
    ) -> Callable[[Tree], dict[str, Sample]]:
        def run(tree: Tree) -> dict[str, Sample]:
            driver = HttpDriver(tree.gateway.url, self.creds, CONCURRENCY)
            before = tree.gateway.cpu_seconds()
            stats = driver.ops(method, paths, body)
            sample = Sample(stats.seconds, stats.ops, tree.gateway.cpu_seconds() - before)
            if method == "PUT":
                dataset.empty_bucket(tree.root, PUT)
            return {label: sample}

        return run

    def listing(self, tree: Tree, expected: int) -> Sample:
        s5 = S5cmd(tree.gateway.url, self.creds, CONCURRENCY)
        before = tree.gateway.cpu_seconds()
        count, seconds = s5.count_keys(LIST)
        if count != expected:
            raise RuntimeError(f"tree {tree.name}: ListObjectsV2 gave {count} keys, expected {expected}")
        return Sample(seconds, count, tree.gateway.cpu_seconds() - before)

    def stage_task(
        self, label: str, tree_dir: str, path: str, files: int, nbytes: int
    ) -> Callable[[Tree], dict[str, Sample]]:
        def run(tree: Tree) -> dict[str, Sample]:
            self._n += 1
            dest = self.dest / f"d{self._n}"
            source = f"s3://{STAGE}/{tree_dir}/" if path == "S3" else str(tree.root / STAGE / tree_dir)
            command = [
                self.python,
                "-m",
                "aif_gateway",
                "stage",
                "in",
                source,
                "--to",
                str(dest),
                "--no-progress",
                "--json",
            ]
            if path == "S3":
                command += ["--endpoint-url", tree.gateway.url]
            done = stage_bench.run_measured(command, self.client_env(tree), tree.gateway)
            stage_bench.check_copy(dest, files, nbytes)
            shutil.rmtree(dest)
            return {
                label: Sample(
                    done.seconds, files if tree_dir == "small" else nbytes / GiB, done.cpu_s + done.gateway_cpu_s
                )
            }

        return run

    def checkpoint(self, tree: Tree, labels: dict[str, str]) -> dict[str, Sample]:
        self._n += 1
        prefix = f"r{self._n}"
        command = [
            self.python,
            str(TREE_CKPT),
            "--root",
            str(tree.root),
            "--bucket",
            CKPT,
            "--prefix",
            prefix,
            "--mib",
            str(self.sizes.ckpt_mib),
            "--gateway-pid",
            str(tree.gateway.pid),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=self.client_env(tree))
        try:
            if done.returncode != 0:
                raise RuntimeError(
                    f"tree {tree.name}: {shlex.join(command)} exited {done.returncode}:\n{done.stderr[-3000:]}"
                )
            result = json.loads(done.stdout.strip().splitlines()[-1])
        finally:
            self.drop_checkpoints(tree, prefix)
        tree.check_imported(result["aif_gateway"], "aif_gateway (in perf/tree_ckpt.py)")
        gib = result["bytes"] / GiB
        return {
            label: Sample(result[key]["seconds"], gib, result[key]["cpu_s"] + result[key]["gateway_cpu_s"])
            for key, label in labels.items()
        }

    def drop_checkpoints(self, tree: Tree, prefix: str) -> None:
        """Delete a round's checkpoints through the gateway (its metadata with them), then check."""
        s5 = S5cmd(tree.gateway.url, self.creds, CONCURRENCY)
        if (tree.root / CKPT / prefix).exists():
            run_timed([*s5.base, "rm", f"s3://{CKPT}/{prefix}/*"], s5.env)
        leftovers = (
            [p for p in (tree.root / CKPT / prefix).rglob("*") if p.is_file()]
            if (tree.root / CKPT / prefix).exists()
            else []
        )
        if leftovers:
            raise RuntimeError(f"tree {tree.name}: the checkpoints were not all deleted: {leftovers[:5]}")
        shutil.rmtree(tree.root / CKPT / prefix, ignore_errors=True)

    # -- the run -----------------------------------------------------------------------------------
    def run(self, rounds: int) -> None:
        self.lay_out()
        self.start()
        tasks = self.tasks()
        for tree in self.trees:
            for task in tasks:
                if task.warm_up:
                    log(f"warm-up, untimed, {tree.name}: {task.name}")
                    task.run(tree)
        for round_no in range(rounds):
            # Rotated: no tree always goes first (after the other's dirty pages, freed memory, ...).
            shift = round_no % len(self.trees)
            order = self.trees[shift:] + self.trees[:shift]
            for task in tasks:
                for tree in order:
                    for label, sample in task.run(tree).items():
                        row = self.rows[label]
                        row.samples.setdefault(tree.name, []).append(sample)
                        log(
                            f"round {round_no + 1}/{rounds} {tree.name}: {label}: "
                            f"{_fmt(sample.rate)} {row.unit}, CPU {_fmt(sample.cpu_s / sample.work * row.cpu_scale)} "
                            f"{row.cpu_unit}"
                        )

    # -- the table ---------------------------------------------------------------------------------
    def table(self) -> str:
        first, others = self.trees[0].name, [t.name for t in self.trees[1:]]
        head = ["row", *(f"{t.name}: median [min–max]" for t in self.trees)]
        for other in others:
            head += [f"{other} ÷ {first}", f"{other} ÷ {first}, paired: median [min–max]"]
        head += [f"CPU {t.name}" for t in self.trees]
        head += [f"CPU {other} ÷ {first}" for other in others]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows.values():
            rates = {name: [s.rate for s in samples] for name, samples in row.samples.items()}
            cpu = {
                name: statistics.median(s.cpu_s / s.work for s in samples) * row.cpu_scale
                for name, samples in row.samples.items()
            }
            cells = [row.label] + [
                f"{_fmt(statistics.median(rates[t.name]))} {row.unit} "
                f"[{_fmt(min(rates[t.name]))}–{_fmt(max(rates[t.name]))}]"
                for t in self.trees
            ]
            for other in others:
                paired = [b / a for a, b in zip(rates[first], rates[other])]
                cells += [
                    f"**{statistics.median(rates[other]) / statistics.median(rates[first]):.2f}×**",
                    f"{statistics.median(paired):.2f}× [{min(paired):.2f}–{max(paired):.2f}]",
                ]
            cells += [f"{_fmt(cpu[t.name])} {row.cpu_unit}" for t in self.trees]
            cells += [f"{cpu[other] / cpu[first]:.2f}×" if cpu[first] else "—" for other in others]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def spread(self) -> str:
        """How far the ratios of medians strayed from 1 over all rows: the noise, for one tree twice."""
        first = self.trees[0].name
        parts = []
        for tree in self.trees[1:]:
            ratios = {
                label: statistics.median(s.rate for s in row.samples[tree.name])
                / statistics.median(s.rate for s in row.samples[first])
                for label, row in self.rows.items()
            }
            low, high = min(ratios, key=ratios.__getitem__), max(ratios, key=ratios.__getitem__)
            parts.append(
                f"{tree.name} ÷ {first}: {ratios[low]:.2f}× ({low}) to {ratios[high]:.2f}× ({high}); "
                f"median |ratio − 1| {statistics.median(abs(r - 1) for r in ratios.values()):.1%}"
            )
        return "; ".join(parts)


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 1 else f"{value:.2g}"


def _size(nbytes: int) -> str:
    if nbytes >= GiB and nbytes % GiB == 0:
        return f"{nbytes // GiB} GiB"
    return f"{nbytes // MiB} MiB" if nbytes >= MiB else f"{nbytes // KiB} KiB"


def _groups(text: str) -> list[str]:
    groups = [g.strip() for g in text.split(",") if g.strip()]
    unknown = set(groups) - set(GROUPS)
    if unknown or not groups:
        raise argparse.ArgumentTypeError(f"--only takes some of {','.join(GROUPS)}, not {text!r}")
    return [g for g in GROUPS if g in groups]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="perf/trees.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tree",
        action="append",
        type=parse_tree,
        required=True,
        metavar="NAME=DIR",
        help="a source tree (a directory with aif_gateway/ and its compiled _native*.so); give "
        "two or more, the first is the one the others are compared with",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and fewer rounds (about 6 minutes for two trees on 2 busy cores; the full run about 18)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/dev/shm"),
        help="filesystem for the data, the copies and the checkpoints: a fresh directory is "
        "made in it and removed at the end (default /dev/shm)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        help="timed rounds after the warm-up (default: 5, --quick 3, rounded up to a multiple of "
        "the number of trees, so that each tree goes first equally often: 6 and 4 for two)",
    )
    parser.add_argument(
        "--only",
        type=_groups,
        default=list(GROUPS),
        metavar="GROUPS",
        help=f"comma-separated row groups to run, of {','.join(GROUPS)} (default: all)",
    )
    parser.add_argument(
        "--ckpt-mib", type=float, help="state dict size of the ckpt rows in MiB (default 512; --quick 256)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each gateway (default 2)")
    parser.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that runs each tree's gateway, stager and checkpoints; its environment "
        "needs the project's dependencies, with the ckpt and test extras (default: this one, "
        f"{sys.executable})",
    )
    parser.add_argument("--report", type=Path, help="also write the Markdown report to this file")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (data, logs)")
    args = parser.parse_args(argv)
    names = [name for name, _ in args.tree]
    if len(set(names)) != len(names):
        parser.error(f"--tree names must differ: {names}")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    sizes = QUICK if args.quick else FULL
    # By default a multiple of the number of trees, so that each goes first equally often.
    rounds = args.rounds or -(-sizes.rounds // len(args.tree)) * len(args.tree)
    if args.ckpt_mib:
        sizes = Sizes(**{**sizes.__dict__, "ckpt_mib": args.ckpt_mib})
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through the finally below
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args.dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="aif-trees-", dir=args.dir))
    base.chmod(0o755)
    (base / "logs").mkdir()
    started_in = os.getcwd()
    # Every tree's processes start here, outside every tree: `python -m` puts the working
    # directory first on sys.path, ahead of PYTHONPATH.
    os.chdir(base)
    trees = [Tree(name, path, tree_env(path, base / "pycache")) for name, path in args.tree]
    bench = TreesBench(base, trees, sizes, args.only, args.workers, args.python)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    wall_start, machine_start, ours_start = time.monotonic(), machine_busy_seconds(), own_cpu_seconds()
    completed = False
    try:
        for tree in trees:
            describe(tree, args.python)
        bench.run(rounds)
        completed = True
    finally:
        bench.stop()
        os.chdir(started_in)
        if args.keep:
            log(f"kept {base}")
        elif completed:
            shutil.rmtree(base, ignore_errors=True)
        else:  # the data goes (tmpfs is RAM); the gateways' logs stay for the post-mortem
            for name in ("seed", "roots", "dest", "pycache"):
                shutil.rmtree(base / name, ignore_errors=True)
            log(f"stopped early: logs kept in {base / 'logs'}")
    wall = time.monotonic() - wall_start
    others = max(0.0, (machine_busy_seconds() - machine_start) - (own_cpu_seconds() - ours_start))
    nproc = len(os.sched_getaffinity(0))
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(args.dir)], capture_output=True, text=True).stdout.strip()
    st = sizes.stage
    tree_lines = [
        "| tree | directory | git | aif_gateway imported from | native extension | data-path engine |",
        "|---|---|---|---|---|---|",
    ]
    tree_lines += [
        f"| {t.name} | {t.path} | {t.info['git']} | {t.info['imported']} | {t.info['native']} | {t.info['engine']} |"
        for t in trees
    ]
    report = "\n".join(
        [
            f"- command: `{args.python} perf/trees.py {shlex.join(argv)}`",
            f"- date: {started:%Y-%m-%d %H:%M} UTC; {wall / 60:.1f} min; data on {args.dir} ({fs}); each tree's "
            f"aif-gateway --workers {args.workers}; median of {rounds} interleaved round(s) after a warm-up "
            f"(groups: {','.join(args.only)})",
            f"- sizes: large object {_size(sizes.large)} (GET {sizes.get_repeats} times a round); "
            f"{sizes.small_count:,} small objects; "
            f"{sizes.list_dirs * sizes.list_files_per_dir:,} keys listed; stage {st.small_files:,} × "
            f"{_size(st.small_size)} and {st.large_files} × {_size(st.large_size)}; checkpoint {sizes.ckpt_mib:g} MiB",
            f"- interpreter: {args.python} (Python {sys.version.split()[0]}), PYTHONPATH=<tree>",
            machine(),
            f"- load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; after: "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; CPU time not spent by this run's own processes "
            f"(other programs): {others:.0f} CPU-s, {100 * others / (wall * nproc):.0f}% of the machine",
            "",
            *tree_lines,
            "",
            f"Rates (higher is faster); ratios are each tree's over {trees[0].name}'s, > 1 faster. \"paired\" takes "
            "each round's two measurements, taken back to back, and shows the median and range of their ratios: "
            "its range is the noise of this run. CPU is user + system seconds per unit of work, median of rounds: "
            "the gateway's for GET, PUT, small objects and listing (the clients are the same programs for every "
            "tree), the stager's or the checkpointing process's plus the gateway's for stage and ckpt; a CPU ratio "
            "> 1 means more CPU than the first tree.",
            "",
            bench.table(),
            "",
            f"Spread of the ratios of medians over all rows: {bench.spread()}.",
        ]
    )
    return publish(report, args.report)


if __name__ == "__main__":
    run_main(main)
