"""Lustre, through its own command-line tool ``lfs``: read a directory's default layout, and
give a new file its layout before its first byte.

Why ``lfs`` and not liblustreapi: the command is on every Lustre client, its options are the
documented interface, and a fake ``lfs`` on PATH lets the tests check exactly what we ask of it.
A layout is chosen only for large or unknown-size objects (see ``layout.py``), so one fork per
such object costs nothing next to its transfer. Lustre fixes a file's layout when the file gets
its first object, so ``lfs setstripe`` must create the file: the caller opens it afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from .creds import GATEWAY, current_ids

__all__ = [
    "Component",
    "Defaults",
    "Layout",
    "LayoutError",
    "create_with_layout",
    "default_layout",
    "parse_getstripe",
    "parse_osts",
    "setstripe_args",
]

LFS = "lfs"
# lfs talks to the MDS; a sick server can stall it. Long enough for a loaded MDS, short enough
# that a PUT falls back to the default layout instead of hanging.
_LFS_TIMEOUT_S = 30.0


class LayoutError(Exception):
    """``lfs`` could not give the file its layout; the caller writes with the default one."""


@dataclass(frozen=True)
class Component:
    """One component of a layout: the stripes of the file up to ``end``."""

    end: int | None  # exclusive end offset in bytes; None = EOF
    stripe_count: int  # -1 = every OST
    stripe_size: int | None = None  # None = the filesystem's default


@dataclass(frozen=True)
class Layout:
    """One component is a plain layout; several make a PFL composite layout."""

    components: tuple[Component, ...]

    @property
    def composite(self) -> bool:
        return len(self.components) > 1


@dataclass(frozen=True)
class Defaults:
    """What ``default_layout`` found."""

    stripe_size: int | None
    stripe_count: int | None
    ost_count: int | None


def _size_arg(n: int) -> str:
    """Bytes as ``lfs`` reads them: its k/M/G suffixes are powers of 1024."""
    for suffix, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift}{suffix}"
    return str(n)


def setstripe_args(layout: Layout) -> list[str]:
    """The ``lfs setstripe`` options for ``layout``."""
    args: list[str] = []
    for comp in layout.components:
        if layout.composite:
            args += ["-E", "-1" if comp.end is None else _size_arg(comp.end)]
        args += ["-c", str(comp.stripe_count)]
        if comp.stripe_size is not None:
            args += ["-S", _size_arg(comp.stripe_size)]
    return args


def _run_lfs(args: list[str]) -> subprocess.CompletedProcess[str]:
    # A child process gets the process's credentials, not the calling thread's: lfs makes the
    # file, so it must run as the user the thread acts for (the file is theirs, their rights
    # decide where it may be made).
    ids = current_ids()
    acting = ids != GATEWAY
    return subprocess.run(
        [LFS, *args],
        capture_output=True,
        text=True,
        timeout=_LFS_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
        user=ids.uid if acting else None,
        group=ids.gid if acting else None,
        extra_groups=list(ids.groups) if acting else None,
    )


def create_with_layout(path: str | os.PathLike[str], layout: Layout) -> None:
    """Create the empty file ``path`` with ``layout`` (blocking); ``LayoutError`` when ``lfs`` is
    missing, fails or hangs."""
    args = ["setstripe", *setstripe_args(layout), os.fspath(path)]
    try:
        done = _run_lfs(args)
    except FileNotFoundError:
        raise LayoutError(f"{LFS} not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise LayoutError(f"{LFS} setstripe took over {_LFS_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise LayoutError(f"{LFS} {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[:500]}")
    if not os.path.isfile(path):
        raise LayoutError(f"{LFS} setstripe reported success but did not create {os.fspath(path)}")


_UNIT = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_STRIPE_SIZE = re.compile(r"stripe_size:\s+(\d+)([kKmMgG]?)\b")
_STRIPE_COUNT = re.compile(r"stripe_count:\s+(-?\d+)\b")
_OST_LINE = re.compile(r"^\s*\d+:\s+\S+\s+ACTIVE\b", re.MULTILINE)


def parse_getstripe(text: str) -> tuple[int | None, int | None]:
    """``(stripe_size, stripe_count)`` of the first component ``lfs getstripe -d`` printed
    (for a PFL default that is the component a new file's first bytes land in)."""
    size = _STRIPE_SIZE.search(text)
    count = _STRIPE_COUNT.search(text)
    return (int(size.group(1)) * _UNIT[size.group(2).lower()] if size else None, int(count.group(1)) if count else None)


def parse_osts(text: str) -> int | None:
    """How many ACTIVE OSTs ``lfs osts`` listed (None when it listed none)."""
    return len(_OST_LINE.findall(text)) or None


def default_layout(directory: str | os.PathLike[str]) -> Defaults | None:
    """``directory``'s default layout and the OST count, from ``lfs getstripe -d`` and ``lfs osts``
    (blocking); None when ``lfs`` is missing or says nothing we can read."""
    if shutil.which(LFS) is None:
        return None
    try:
        stripe = _run_lfs(["getstripe", "-d", os.fspath(directory)])
        osts = _run_lfs(["osts", os.fspath(directory)])
    except (OSError, subprocess.TimeoutExpired):
        return None
    size, count = parse_getstripe(stripe.stdout) if stripe.returncode == 0 else (None, None)
    ost_count = parse_osts(osts.stdout) if osts.returncode == 0 else None
    if size is None and count is None and ost_count is None:
        return None
    return Defaults(size, count, ost_count)
