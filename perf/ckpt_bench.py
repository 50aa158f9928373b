"""Checkpoint benchmark (issue 5): ``aif_gateway.ckpt`` save/load next to the raw filesystem,
``torch.save``, stock ``torch.distributed.checkpoint`` and s3torchconnector.

    .venv/bin/python perf/ckpt_bench.py [--size-gib 2] [--dir /dev/shm] [--rounds 2] [--report FILE]

Starts aif-gateway (perf/servers.py, ``--workers`` 2) on a fresh root under ``--dir`` (default
/dev/shm, tmpfs, so the programs' own cost shows rather than a disk's) with one bucket,
``bench``, and builds one model-like state dict in memory: four large matrices (two fp32, two
bf16, 90 % of the bytes), 400 small fp32 tensors, a few int64 scalars and a plain int ``step``;
seeded normal values, so nothing compresses. Every variant below saves that same dict, in
interleaved rounds (the order reversed every other round); best and median of each are printed.

SAVE, GB/s = the state dict's tensor bytes (10^9 B) / wall seconds:
- raw-1, raw-N: the tensors' bytes written with ``os.write``, one thread into one file, or N
  threads each into a file of its own (the byte stream cut in N equal ranges); no serialisation,
  no hashing, no fsync: this process's raw write speed into ``--dir``. N (``--threads``): the
  ckpt targets' default thread count, at most nproc, at least 2. Ratios use the faster of the two.
- torch.save: one file.
- dcp-stock-1, dcp-stock-N: ``dcp.save`` with the stock ``FileSystemWriter`` (thread_count 1 / N,
  sync_files off, as every other variant here writes without fsync).
- aif-direct, aif-direct-md5: ``ckpt.save(sd, "s3://bench/...", root=<gateway root>)``: objects
  written straight into the bucket directory (BucketTarget); the second with ``md5=True``.
- aif-s3: ``ckpt.save(..., endpoint=<gateway>, via="s3")``.
- s3tc: s3torchconnector's DCP ``S3StorageWriter`` (thread_count N) to the gateway, path style.
- async-direct, async-s3: ``ckpt.save_async`` either way: blocked (how long the call took to
  return) against host copy (cloning every tensor of the state dict once, measured just before),
  and total (until ``wait()`` returned); GB/s from the total.
LOAD, into a preallocated state dict (``torch.load`` allocates its own): torch.load, dcp-stock
(``FileSystemReader``), aif-direct (``root=``), aif-s3 (``via="s3"``), s3tc (``S3StorageReader``).

Correctness, outside the timed sections: a tiny state dict goes through every variant first
(untimed warm-up: imports, the gateway's workers, the clients' first connections), and in the
first timed round every load's result is compared with the original, tensor by tensor
(variants without a load of their own are loaded once by another reader and compared: raw files
are read back byte for byte). Each variant's output is deleted before the next one runs, so the
peak is about three times the state dict (the dict, one checkpoint, one loaded copy or the async
save's staged copy) plus the readers' buffers; each variant's own extra memory is in the tables.
CPU: user + system seconds of this process (every thread, the CRT client's included) and of the
gateway's processes over the same time.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import s3torchconnector
import torch
import torch.distributed.checkpoint as dcp
from report import machine, publish, run_main, software
from s3torchconnector import S3ClientConfig
from s3torchconnector.dcp import S3StorageReader, S3StorageWriter
from servers import Credentials, Server, gateway
from statedict import StateDict, check_equal, empty_like_state, model_state, state_bytes, tensors

from aif_gateway import ckpt
from aif_gateway.ckpt import TargetOptions, open_target

BUCKET = "bench"
REGION = "us-east-1"
GB = 1e9
MiB = 1 << 20
GiB = 1 << 30
WARMUP_BYTES = 8 * MiB

# Single-process dcp warns that torch.distributed is not initialised: that is the intent here.
warnings.filterwarnings("ignore", message="torch.distributed is disabled")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    # Through uint8: numpy has no bfloat16.
    return memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())


# -- raw writes ----------------------------------------------------------------------------------
def cut(pieces: list[memoryview], parts: int) -> list[list[memoryview]]:
    """The concatenation of ``pieces`` in ``parts`` contiguous ranges of about equal length."""
    per = -(-sum(len(p) for p in pieces) // parts)
    groups: list[list[memoryview]] = [[]]
    room = per
    for piece in pieces:
        while len(piece):
            if room == 0:
                groups.append([])
                room = per
            take = piece[:room]
            groups[-1].append(take)
            room -= len(take)
            piece = piece[len(take) :]
    return groups


def write_views(path: Path, views: list[memoryview]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        for view in views:
            while len(view):
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def check_views(path: Path, views: list[memoryview]) -> None:
    window = bytearray(64 * MiB)
    with open(path, "rb", buffering=0) as f:
        for view in views:
            while len(view):
                got = memoryview(window)[: f.readinto(memoryview(window)[: len(view)])]
                # numpy compares at memory speed; memoryview == goes item by item.
                if not len(got) or not np.array_equal(
                    np.frombuffer(got, np.uint8), np.frombuffer(view[: len(got)], np.uint8)
                ):
                    raise AssertionError(f"{path}: bytes differ from the tensors'")
                view = view[len(got) :]
        if f.read(1):
            raise AssertionError(f"{path}: longer than the tensors' bytes")


# -- measuring -----------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS count of this process (Linux: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss(field_name: str) -> float:
    """Bytes of this process's ``VmRSS`` (resident now) or ``VmHWM`` (peak since the last reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    return float("nan")


@dataclass
class Run:
    seconds: float
    cpu_s: float  # this process
    gateway_cpu_s: float
    # Bytes this process's resident set grew by at its peak during the timed section: the
    # memory the variant needed beyond the state dict (and a load's target) already there.
    extra_rss: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class Step:
    """One save variant and, when it has one, the load that reads its output back."""

    save: str
    measure_save: Callable[[], Run]
    clean: Callable[[], None]
    load: str | None = None
    run_load: Callable[[StateDict | None], StateDict] | None = None
    load_into_target: bool = True
    check: Callable[[], None] | None = None  # verifies a save that has no timed load


class CkptBench:
    def __init__(self, base: Path, size: int, rounds: int, workers: int, threads: int, seed: int) -> None:
        self.base = base
        self.root = base / "root"
        self.bucket_dir = self.root / BUCKET
        self.scratch = base / "scratch"
        self.logs = base / "logs"
        self.size = size
        self.rounds = rounds
        self.workers = workers
        self.threads = threads
        self.seed = seed
        self.creds = Credentials()
        self.server: Server | None = None
        self.state: StateDict = {}
        self.nbytes = 0
        self.saves: dict[str, list[Run]] = {}
        self.loads: dict[str, list[Run]] = {}
        self.checked: set[str] = set()

    # -- set-up ------------------------------------------------------------------------------
    def start(self) -> None:
        for d in (self.bucket_dir, self.scratch, self.logs):
            d.mkdir(parents=True)
        self.server = gateway(self.root, self.logs, self.creds, self.workers)
        log(f"starting {self.server.name}: {shlex.join(self.server.command)}")
        self.server.start()
        # s3torchconnector's DCP classes build their CRT client from the environment only. Config
        # files point at nothing, so no ~/.aws can leak in.
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": self.creds.access_key,
                "AWS_SECRET_ACCESS_KEY": self.creds.secret_key,
                "AWS_ENDPOINT_URL": self.server.url,
                "AWS_REGION": REGION,
                "AWS_CONFIG_FILE": str(self.logs / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.logs / "no-aws-credentials"),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
            os.environ.pop(name, None)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    @property
    def direct(self) -> dict[str, Any]:
        return {"root": str(self.root)}

    @property
    def over_s3(self) -> dict[str, Any]:
        assert self.server is not None
        return {
            "endpoint": self.server.url,
            "access_key": self.creds.access_key,
            "secret_key": self.creds.secret_key,
            "region": REGION,
            "via": "s3",
        }

    def s3tc_config(self) -> S3ClientConfig:
        return S3ClientConfig(force_path_style=True)

    # -- cleaning ----------------------------------------------------------------------------
    def drop_prefix(self, prefix: str) -> None:
        """Delete a checkpoint's objects as the gateway would (their metadata too)."""
        target = open_target(f"s3://{BUCKET}/{prefix}", TargetOptions(root=self.root, via="filesystem"))
        try:
            for name in list(target.list()):
                target.delete(name)
        finally:
            target.close()
        shutil.rmtree(self.bucket_dir / prefix, ignore_errors=True)

    def drop_scratch(self) -> None:
        for entry in self.scratch.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    # -- the variants ------------------------------------------------------------------------
    def raw_save(self, threads: int) -> Callable[[], None]:
        def run() -> None:
            groups = cut([tensor_bytes(t) for t in tensors(self.state)], threads)
            paths = [self.scratch / f"raw-{n}" for n in range(len(groups))]
            if len(groups) == 1:
                write_views(paths[0], groups[0])
                return
            with ThreadPoolExecutor(len(groups)) as pool:
                list(pool.map(write_views, paths, groups))

        return run

    def raw_check(self, threads: int) -> Callable[[], None]:
        def check() -> None:
            groups = cut([tensor_bytes(t) for t in tensors(self.state)], threads)
            for n, views in enumerate(groups):
                check_views(self.scratch / f"raw-{n}", views)

        return check

    def timed(self, call: Callable[[], Any]) -> Callable[[], Run]:
        return lambda: self._measure(call)[0]

    def steps(self) -> list[Step]:
        n = self.threads
        uri = f"s3://{BUCKET}"
        scratch = self.scratch

        def dcp_stock_save(threads: int) -> Callable[[], Run]:
            return self.timed(
                lambda: dcp.save(
                    self.state,
                    storage_writer=dcp.FileSystemWriter(scratch / "dcp", thread_count=threads, sync_files=False),
                )
            )

        def aif_load(prefix: str, options: dict[str, Any]) -> Callable[[StateDict | None], StateDict]:
            return lambda target: self._aif_load(target, f"{uri}/{prefix}", options)

        def read_back(load: Callable[[StateDict | None], StateDict], label: str) -> Callable[[], None]:
            return lambda: self._check_load(load, label)

        def stock_reader(target: StateDict | None) -> StateDict:
            return self._dcp_load(target, dcp.FileSystemReader(scratch / "dcp"))

        return [
            Step(
                save="raw-1",
                measure_save=self.timed(self.raw_save(1)),
                check=self.raw_check(1),
                clean=self.drop_scratch,
            ),
            Step(
                save=f"raw-{n}",
                measure_save=self.timed(self.raw_save(n)),
                check=self.raw_check(n),
                clean=self.drop_scratch,
            ),
            Step(
                save="torch.save",
                measure_save=self.timed(lambda: torch.save(self.state, scratch / "model.pt")),
                load="torch.load",
                load_into_target=False,
                run_load=lambda _: torch.load(scratch / "model.pt", weights_only=True),
                clean=self.drop_scratch,
            ),
            Step(
                save="dcp-stock-1",
                measure_save=dcp_stock_save(1),
                load="dcp-stock",
                run_load=stock_reader,
                clean=self.drop_scratch,
            ),
            Step(
                save=f"dcp-stock-{n}",
                measure_save=dcp_stock_save(n),
                check=read_back(stock_reader, f"dcp-stock-{n} (read back by FileSystemReader)"),
                clean=self.drop_scratch,
            ),
            Step(
                save="aif-direct",
                measure_save=self.timed(lambda: ckpt.save(self.state, f"{uri}/direct", **self.direct)),
                load="aif-direct",
                run_load=aif_load("direct", self.direct),
                clean=lambda: self.drop_prefix("direct"),
            ),
            Step(
                save="aif-direct-1f",
                measure_save=self.timed(lambda: ckpt.save(self.state, f"{uri}/nf", files_per_rank=1, **self.direct)),
                check=read_back(aif_load("nf", self.direct), "aif-direct-1f (read back by ckpt.load)"),
                clean=lambda: self.drop_prefix("nf"),
            ),
            Step(
                save="aif-direct-crc",
                measure_save=self.timed(lambda: ckpt.save(self.state, f"{uri}/crc", checksum=True, **self.direct)),
                check=read_back(aif_load("crc", self.direct), "aif-direct-crc (read back by ckpt.load)"),
                clean=lambda: self.drop_prefix("crc"),
            ),
            Step(
                save="aif-direct-md5",
                measure_save=self.timed(lambda: ckpt.save(self.state, f"{uri}/md5", md5=True, **self.direct)),
                check=read_back(aif_load("md5", self.direct), "aif-direct-md5 (read back by ckpt.load)"),
                clean=lambda: self.drop_prefix("md5"),
            ),
            Step(
                save="aif-s3",
                measure_save=self.timed(lambda: ckpt.save(self.state, f"{uri}/s3", **self.over_s3)),
                load="aif-s3",
                run_load=aif_load("s3", self.over_s3),
                clean=lambda: self.drop_prefix("s3"),
            ),
            Step(
                save="s3tc",
                measure_save=self.timed(
                    lambda: dcp.save(
                        self.state,
                        storage_writer=S3StorageWriter(
                            REGION, f"{uri}/s3tc", s3client_config=self.s3tc_config(), thread_count=n
                        ),
                    )
                ),
                load="s3tc",
                run_load=lambda target: self._dcp_load(
                    target, S3StorageReader(REGION, f"{uri}/s3tc", s3client_config=self.s3tc_config())
                ),
                clean=lambda: self.drop_prefix("s3tc"),
            ),
            Step(
                save="async-direct",
                measure_save=lambda: self._measure_async(f"{uri}/async-direct", self.direct),
                check=read_back(aif_load("async-direct", self.direct), "async-direct (read back by ckpt.load)"),
                clean=lambda: self.drop_prefix("async-direct"),
            ),
            Step(
                save="async-s3",
                measure_save=lambda: self._measure_async(f"{uri}/async-s3", self.over_s3),
                check=read_back(aif_load("async-s3", self.over_s3), "async-s3 (read back by ckpt.load)"),
                clean=lambda: self.drop_prefix("async-s3"),
            ),
        ]

    @staticmethod
    def _dcp_load(target: StateDict | None, reader: Any) -> StateDict:
        assert target is not None
        dcp.load(target, storage_reader=reader)
        return target

    @staticmethod
    def _aif_load(target: StateDict | None, src: str, options: dict[str, Any]) -> StateDict:
        assert target is not None
        ckpt.load(target, src, **options)
        return target

    def _check_load(self, load: Callable[[StateDict | None], StateDict], label: str) -> None:
        target = empty_like_state(self.state)
        check_equal(load(target), self.state, label)

    def _measure(self, call: Callable[[], Any]) -> tuple[Run, Any]:
        assert self.server is not None
        gc.collect()
        counted = reset_peak_rss()
        rss_before = rss("VmRSS")
        gateway_before, cpu_before = self.server.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        result = call()
        elapsed = time.perf_counter() - started
        return Run(
            elapsed,
            time.process_time() - cpu_before,
            self.server.cpu_seconds() - gateway_before,
            rss("VmHWM") - rss_before if counted else float("nan"),
        ), result

    def _measure_async(self, dest: str, options: dict[str, Any]) -> Run:
        assert self.server is not None
        gc.collect()
        started = time.perf_counter()
        copy = {k: v.clone() for k, v in self.state.items() if isinstance(v, torch.Tensor)}
        host_copy_s = time.perf_counter() - started
        del copy
        gc.collect()
        counted = reset_peak_rss()
        rss_before = rss("VmRSS")
        gateway_before, cpu_before = self.server.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        pending = ckpt.save_async(self.state, dest, **options)
        returned = time.perf_counter()
        pending.wait()
        ended = time.perf_counter()
        return Run(
            ended - started,
            time.process_time() - cpu_before,
            self.server.cpu_seconds() - gateway_before,
            rss("VmHWM") - rss_before if counted else float("nan"),
            {"blocked_s": returned - started, "api_blocked_s": pending.blocked_s, "host_copy_s": host_copy_s},
        )

    # -- one pass ----------------------------------------------------------------------------
    def run_step(self, step: Step, record: bool, verify: bool) -> None:
        save_run = step.measure_save()
        if record:
            self.saves.setdefault(step.save, []).append(save_run)
        try:
            if verify and step.check is not None:
                step.check()
                self.checked.add(step.save)
            if step.load is not None and step.run_load is not None:
                run_load = step.run_load
                target = empty_like_state(self.state) if step.load_into_target else None
                load_run, loaded = self._measure(lambda: run_load(target))
                if verify:
                    check_equal(loaded, self.state, step.load)
                    self.checked.add(step.load)
                del loaded, target
                if record:
                    self.loads.setdefault(step.load, []).append(load_run)
        finally:
            step.clean()
            gc.collect()
        leftovers = [p for p in self.bucket_dir.iterdir() if p.name != ".aifgw"] + list(self.scratch.iterdir())
        if leftovers:
            raise RuntimeError(f"{step.save}: its output was not all deleted: {leftovers[:5]}")

    def run(self) -> None:
        self.start()
        log(f"warm-up: every variant on a {WARMUP_BYTES // MiB} MiB state dict, each result checked")
        self.state = model_state(WARMUP_BYTES, self.seed + 1)
        for step in self.steps():
            self.run_step(step, record=False, verify=True)
        self.checked.clear()
        log(f"building the state dict: {self.size / GiB:.2f} GiB")
        self.state = model_state(self.size, self.seed)
        self.nbytes = state_bytes(self.state)
        # Everything alive now (torch's and the clients' modules) stays: the collections that keep
        # each variant's freed memory from piling up need only look at what came after.
        gc.collect()
        gc.freeze()
        steps = self.steps()
        for round_no in range(self.rounds):
            # Reversed every other round: no variant always follows the same one's freed memory.
            for step in steps if round_no % 2 == 0 else steps[::-1]:
                log(f"round {round_no + 1}/{self.rounds}: {step.save}" + (f" + {step.load}" if step.load else ""))
                self.run_step(step, record=True, verify=round_no == 0)
        missing = {s.save for s in steps if s.check} | {s.load for s in steps if s.load}
        if missing - self.checked:
            raise RuntimeError(f"never verified: {sorted(missing - self.checked)}")

    # -- the tables --------------------------------------------------------------------------
    def rate(self, run: Run) -> float:
        return self.nbytes / GB / run.seconds

    def best(self, runs: list[Run]) -> float:
        return max(self.rate(r) for r in runs)

    def median(self, runs: list[Run]) -> float:
        return self.nbytes / GB / statistics.median(r.seconds for r in runs)

    def table(self, title: str, results: dict[str, list[Run]], notes: dict[str, str]) -> str:
        lines = [
            f"| {title} | median GB/s | best GB/s | seconds: median [min–max] | CPU this process "
            "| CPU gateway | extra memory ÷ state dict | what |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, runs in results.items():
            seconds = [r.seconds for r in runs]
            lines.append(
                f"| {name} | **{self.median(runs):.2f}** | {self.best(runs):.2f} | {statistics.median(seconds):.2f} "
                f"[{min(seconds):.2f}–{max(seconds):.2f}] | {statistics.median(r.cpu_s for r in runs):.2f} s "
                f"| {statistics.median(r.gateway_cpu_s for r in runs):.2f} s "
                f"| {max(r.extra_rss for r in runs) / self.nbytes:.2f}× | {notes.get(name, '')} |"
            )
        return "\n".join(lines)

    def ratio(self, results: dict[str, list[Run]], mine: str, other: str) -> str:
        a, b = results[mine], results[other]
        return f"**{self.median(a) / self.median(b):.2f}×** (best {self.best(a) / self.best(b):.2f}×)"

    def report(self) -> str:
        n = self.threads
        raw = max(("raw-1", f"raw-{n}"), key=lambda k: self.median(self.saves[k]))
        stock = max(("dcp-stock-1", f"dcp-stock-{n}"), key=lambda k: self.median(self.saves[k]))
        save_notes = {
            "raw-1": "os.write, 1 thread, 1 file",
            f"raw-{n}": f"os.write, {n} threads, {n} files",
            "torch.save": "1 file",
            "dcp-stock-1": "FileSystemWriter(thread_count=1, sync_files=False)",
            f"dcp-stock-{n}": f"FileSystemWriter(thread_count={n}, sync_files=False)",
            "aif-direct": "ckpt.save(root=): BucketTarget, 2 files a rank",
            "aif-direct-md5": "ckpt.save(root=, md5=True)",
            "aif-direct-1f": "ckpt.save(root=, files_per_rank=1)",
            "aif-direct-crc": "ckpt.save(root=, checksum=True): + CRC64NVME",
            "aif-s3": "ckpt.save(via='s3')",
            "s3tc": f"S3StorageWriter(thread_count={n})",
            "async-direct": "ckpt.save_async(root=), until wait() returns",
            "async-s3": "ckpt.save_async(via='s3'), until wait() returns",
        }
        load_notes = {
            "torch.load": "weights_only=True, allocates",
            "dcp-stock": "FileSystemReader",
            "aif-direct": "ckpt.load(root=)",
            "aif-s3": "ckpt.load(via='s3')",
            "s3tc": "S3StorageReader",
        }
        s, ld = self.saves, self.loads
        ratios = [
            f"- save aif-direct ÷ raw (best of raw-1 and raw-{n}: {raw}): {self.ratio(s, 'aif-direct', raw)}",
            f"- save aif-direct ÷ {stock} (the faster stock dcp writer): {self.ratio(s, 'aif-direct', stock)}; "
            f"load aif-direct ÷ dcp-stock: {self.ratio(ld, 'aif-direct', 'dcp-stock')}",
            f"- save aif-direct-md5 ÷ aif-direct: {self.ratio(s, 'aif-direct-md5', 'aif-direct')}",
            f"- save aif-s3 ÷ aif-direct: {self.ratio(s, 'aif-s3', 'aif-direct')}; "
            f"load: {self.ratio(ld, 'aif-s3', 'aif-direct')}",
            f"- save s3tc ÷ aif-s3: {self.ratio(s, 's3tc', 'aif-s3')}; load: {self.ratio(ld, 's3tc', 'aif-s3')}",
            f"- save aif-direct ÷ torch.save: {self.ratio(s, 'aif-direct', 'torch.save')}; "
            f"load aif-direct ÷ torch.load: {self.ratio(ld, 'aif-direct', 'torch.load')}",
        ]
        async_lines = [
            "| async | blocked: median [min–max] | ckpt's blocked_s | host copy (clone once) "
            "| blocked ÷ host copy | total until wait() | total ÷ the blocking save |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, sync in (("async-direct", "aif-direct"), ("async-s3", "aif-s3")):
            runs = s[name]
            blocked = [r.extra["blocked_s"] for r in runs]
            host = statistics.median(r.extra["host_copy_s"] for r in runs)
            total = statistics.median(r.seconds for r in runs)
            async_lines.append(
                f"| {name} | {statistics.median(blocked):.3f} s [{min(blocked):.3f}–{max(blocked):.3f}] "
                f"| {statistics.median(r.extra['api_blocked_s'] for r in runs):.3f} s | {host:.3f} s "
                f"| **{statistics.median(blocked) / host:.2f}×** | {total:.2f} s "
                f"| {total / statistics.median(r.seconds for r in s[sync]):.2f}× |"
            )
        return "\n".join(
            [
                "Extra memory: how far this process's resident set grew above where it stood when the timed "
                "section began (the state dict, and a load's preallocated target, were already in it), at the "
                "worst round, over the state dict's size. Files on tmpfs and the gateway's memory are not in it.",
                "",
                self.table("save", s, save_notes),
                "",
                self.table("load", ld, load_notes),
                "",
                "Ratios of median rates (> 1: the first is faster; best-of-rounds in brackets):",
                *ratios,
                "",
                "Async saves (blocked = wall time of the `save_async` call in the training loop; ckpt's "
                "`blocked_s` = the time it measures around `dcp.async_save`):",
                "",
                *async_lines,
            ]
        )


# -- the program ---------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="perf/ckpt_bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-gib", type=float, default=2.0, help="state dict size (default 2)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("/dev/shm"),
        help="filesystem for the gateway root and every checkpoint (default /dev/shm)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="aif-gateway worker processes (default 2)")
    parser.add_argument(
        "--threads",
        type=int,
        help="N of raw-N, dcp-stock-N and s3tc's thread_count (default: the ckpt targets' "
        "threads, at most nproc, at least 2)",
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--report", type=Path, help="also write the Markdown report to this file")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    nproc = len(os.sched_getaffinity(0))
    # At least 2: the N variants are compared with the 1-thread ones of the same name.
    threads = args.threads or max(2, min(TargetOptions().threads, nproc))
    if threads < 2:
        raise SystemExit("perf/ckpt_bench.py: --threads must be at least 2 (raw-1 and dcp-stock-1 always run)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = os.getloadavg()
    started = datetime.now(UTC)
    measured = software()
    args.dir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="aif-ckpt-bench-", dir=args.dir))
    bench = CkptBench(base, int(args.size_gib * GiB), args.rounds, args.workers, threads, args.seed)
    completed = False
    try:
        bench.run()
        completed = True
    finally:
        bench.stop()
        if completed:
            shutil.rmtree(base, ignore_errors=True)
        else:
            shutil.rmtree(base / "root", ignore_errors=True)
            shutil.rmtree(base / "scratch", ignore_errors=True)
            log(f"stopped early: logs kept in {base / 'logs'}")
    load_after = os.getloadavg()
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(args.dir)], capture_output=True, text=True).stdout.strip()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report = "\n".join(
        [
            f"- command: `.venv/bin/python perf/ckpt_bench.py {shlex.join(argv)}`",
            f"- date: {started:%Y-%m-%d %H:%M} UTC; data on {args.dir} ({fs}); aif-gateway --workers {args.workers}; "
            f"state dict {bench.nbytes / GB:.3f} GB of tensors ({len(bench.state)} entries); N = {threads}; "
            f"{args.rounds} round(s) after a warm-up; GB = 10^9 bytes.",
            f"- load average (1/5/15 min) before: {' '.join(f'{x:.2f}' for x in load_before)}; after: "
            f"{' '.join(f'{x:.2f}' for x in load_after)}; peak RSS of this process {max_rss / GiB:.2f} GiB",
            machine(),
            measured,
            f"- torch {torch.__version__}, s3torchconnector {s3torchconnector.__version__} "
            f"(part size {S3ClientConfig().part_size // MiB} MiB), numpy {np.__version__}; "
            f"ckpt target defaults: threads {TargetOptions().threads}, "
            f"part size {TargetOptions().part_size // MiB} MiB",
            "",
            bench.report(),
        ]
    )
    return publish(report, args.report)


if __name__ == "__main__":
    run_main(main)
