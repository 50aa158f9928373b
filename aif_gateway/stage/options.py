"""Knobs of a stage, and the size notation the CLI accepts."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["GiB", "MIN_PART_SIZE", "MiB", "S3_GET_ENV", "StageOptions", "fast_s3_reads", "format_size", "parse_size"]

# AIF_STAGE_S3_GET=botocore: every S3 read and listing through botocore instead of the client's
# signed requests (client.SignedS3). The tests compare the two ways; a site can fall back to the
# slower one if its endpoint and the fast one disagree.
S3_GET_ENV = "AIF_STAGE_S3_GET"


def fast_s3_reads() -> bool:
    """Whether stage reads S3 with its own signed requests (unless ``AIF_STAGE_S3_GET=botocore``)."""
    return os.environ.get(S3_GET_ENV, "").lower() != "botocore"


KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

_UNITS = {"": 1, "K": KiB, "M": MiB, "G": GiB, "T": 1 << 40, "P": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)

# S3 refuses multipart parts under 5 MiB (the last excepted), and a range much smaller than
# a read buffer only adds requests.
MIN_PART_SIZE = 5 * MiB


@dataclass
class StageOptions:
    """``jobs``: files/ranges in flight; ``part_size``: range size for large files and the multipart
    part size of stage out; ``retries``: per request, transient errors only; ``progress``: True a
    bar, False log lines, None a bar when stderr is a terminal; ``progress_interval_s``: between
    log lines (<= 0: none); the S3 endpoint, profile, region and keys: None lets the AWS
    environment variables and profiles decide."""

    jobs: int = 16
    part_size: int = 64 * MiB
    retries: int = 5
    progress: bool | None = None
    progress_interval_s: float = 10.0
    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ValueError("jobs must be at least 1")
        if self.part_size < MIN_PART_SIZE:
            raise ValueError(f"part size must be at least {format_size(MIN_PART_SIZE)}")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("give both access_key and secret_key, or neither")


def parse_size(text: str) -> int:
    """``64M`` -> 67108864; binary units K, M, G, T, P, optionally followed by "B" or "iB"; a plain
    number is bytes. ValueError otherwise."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"not a size: {text!r} (examples: 64M, 1G, 500G)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.upper()])


def format_size(size: float) -> str:
    """``size`` bytes for people: "512 B", "1.5 GiB" (up to TiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
