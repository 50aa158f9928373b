"""What a stage tells the person or program watching it: a live progress display and a report."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from .options import GiB, StageOptions, format_size

__all__ = ["Progress", "Report"]

log = logging.getLogger("aif_gateway.stage")

_REDRAW_S = 0.2
_BAR_WIDTH = 24


@dataclass
class Report:
    """The JSON report (``to_dict()``: its fields are the keys). ``bytes``/``files`` count what this
    run moved; ``skipped_*`` what was already there (whole files, and the ranges a resumed run did
    not fetch again)."""

    direction: str
    sources: list[str]
    destination: str
    ok: bool = False
    path: str | None = None
    files: int = 0
    bytes: int = 0
    skipped_files: int = 0
    skipped_bytes: int = 0
    seconds: float = 0.0
    gib_per_s: float = 0.0
    retries: int = 0
    verified: dict[str, int] = field(default_factory=dict)
    cache: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    def finish(self, started: float) -> None:
        self.seconds = round(time.monotonic() - started, 3)
        self.gib_per_s = round(self.bytes / GiB / self.seconds, 3) if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = self.path or self.destination
        return out


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Counts what has landed (``add``) and shows it while ``run()`` runs as a task: a bar redrawn
    at most 5 times a second on a terminal, else one JSON log line every ``progress_interval_s``;
    ``close()`` ends the bar's line."""

    def __init__(
        self, total_files: int, total_bytes: int, options: StageOptions, direction: str, stream: TextIO | None = None
    ) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.files = 0
        self.bytes = 0
        self.direction = direction
        self._stream = stream or sys.stderr
        self._bar = options.progress if options.progress is not None else self._stream.isatty()
        self._interval = options.progress_interval_s
        self._started = time.monotonic()
        self._drawn = False

    def add(self, nbytes: int = 0, files: int = 0) -> None:
        self.bytes += nbytes
        self.files += files

    def _rate_eta(self) -> tuple[float, float | None]:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = self.bytes / elapsed
        eta = (self.total_bytes - self.bytes) / rate if rate > 0 else None
        return rate, eta

    def line(self) -> str:
        rate, eta = self._rate_eta()
        frac = self.bytes / self.total_bytes if self.total_bytes else 1.0
        filled = int(frac * _BAR_WIDTH)
        return (
            f"{self.direction} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {frac * 100:5.1f}%  "
            f"{format_size(self.bytes)} / {format_size(self.total_bytes)}  "
            f"{self.files}/{self.total_files} files  {format_size(rate)}/s  "
            f"ETA {_duration(eta) if eta is not None else '?'}"
        )

    def log_line(self) -> None:
        rate, eta = self._rate_eta()
        log.info(
            "stage progress",
            extra={
                "direction": self.direction,
                "bytes": self.bytes,
                "total_bytes": self.total_bytes,
                "files": self.files,
                "total_files": self.total_files,
                "gib_per_s": round(rate / GiB, 3),
                "eta_s": round(eta, 1) if eta is not None else None,
            },
        )

    async def run(self) -> None:
        if self._bar:
            while True:
                self._stream.write("\r" + self.line() + "\x1b[K")
                self._stream.flush()
                self._drawn = True
                await asyncio.sleep(_REDRAW_S)
        if self._interval <= 0:
            return
        while True:
            await asyncio.sleep(self._interval)
            self.log_line()

    def close(self) -> None:
        if self._bar and self._drawn:
            self._stream.write("\r" + self.line() + "\x1b[K\n")
            self._stream.flush()
