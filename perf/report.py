"""The one table: every figure beside its ratio to the raw limit and to the peer."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Measure:
    value: float
    detail: str = ""  # e.g. latency percentiles
    cpu: str = ""  # the server's CPU for this figure, e.g. "1.9 s/GiB"


@dataclass
class Row:
    figure: str
    unit: str
    higher_is_better: bool = True
    results: dict[str, Measure] = field(default_factory=dict)  # keys: gateway, peer, raw
    raw_label: str = ""


def _fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value >= 1 else f"{value:.2g}"


def _cell(row: Row, who: str) -> str:
    measure = row.results.get(who)
    if measure is None:
        return "—"
    text = f"{_fmt(measure.value)} {row.unit}"
    if who == "raw" and row.raw_label:
        text += f" ({row.raw_label})"
    if measure.detail:
        text += f"<br>{measure.detail}"
    if who == "raw" and measure.cpu:  # the reference server's CPU; the others have columns
        text += f"<br>CPU {measure.cpu}"
    return text


def ratio(row: Row, other: str) -> str:
    """Gateway speed relative to ``other``: > 1 favours the gateway, for rates and latencies alike."""
    mine, theirs = row.results.get("gateway"), row.results.get(other)
    if mine is None or theirs is None or mine.value == 0 or theirs.value == 0:
        return "—"
    value = mine.value / theirs.value if row.higher_is_better else theirs.value / mine.value
    return f"{value:.2f}×"


def table(rows: list[Row]) -> str:
    lines = [
        "| figure | aif-gateway | rclone serve s3 (peer) | raw limit | gateway ÷ raw | gateway ÷ peer "
        "| CPU aif-gateway | CPU peer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cpu = [row.results[w].cpu if w in row.results and row.results[w].cpu else "—" for w in ("gateway", "peer")]
        lines.append(
            f"| {row.figure} | {_cell(row, 'gateway')} | {_cell(row, 'peer')} | {_cell(row, 'raw')} "
            f"| {ratio(row, 'raw')} | {ratio(row, 'peer')} | {cpu[0]} | {cpu[1]} |"
        )
    return "\n".join(lines)


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "unknown"
    )
    memory = subprocess.run(["free", "-h"], capture_output=True, text=True).stdout.strip("\n")
    return (
        f"- CPU: {model}, `nproc` = {len(os.sched_getaffinity(0))}\n"
        f"- kernel: {platform.release()}, {platform.platform()}\n"
        f"- memory (`free -h`):\n\n```\n{memory}\n```"
    )


def software() -> str:
    """What was measured: the tree's revision and the gateway's data-path engine."""
    revision = (
        subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
        or "unknown"
    )
    # Asked of the installed package in a child, as the gateway's workers would import it.
    engine = (
        subprocess.run(
            [sys.executable, "-c", "from aif_gateway.fsio.engine import engine_info; print(engine_info())"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        or "unknown (no aif_gateway.fsio.engine)"
    )
    return f"- tree: git {revision}; aif-gateway data-path engine: {engine}"


def publish(report: str, path: os.PathLike[str] | None) -> int:
    """Print the report, and write it to ``path`` (``--report``) when given; the exit status."""
    print(report)
    if path is not None:
        with open(path, "w") as f:
            f.write(report + "\n")
    return 0


def run_main(main: Callable[[list[str]], int]) -> None:
    """A benchmark's entry point: Ctrl-C stops it with the shell's status for SIGINT."""
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
