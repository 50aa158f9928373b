"""The site cache on the command line: the flags of ``stage in --cache`` and the verbs
``stage release --cache DIR --holder ID`` and ``stage status --cache DIR``.

commands.py builds the parser and dispatches; it calls the hooks here wherever a cache is
concerned.

The default lease holder is the *parent* process (``pid-<ppid>@<host>``): the shell or job script
that ran ``stage in`` and is about to use the data, so its entry stays pinned while that process
lives, not just while this command runs. Slurm passes ``--holder <job id>`` and releases it in
teardown. cache.py is imported only when a cache is used: it pulls in the S3 client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import StageError
from ..options import StageOptions, format_size, parse_size

__all__ = [
    "DEFAULT_LEASE_MAX_AGE_S",
    "add_cache_flags",
    "add_cache_verbs",
    "parse_duration",
    "refuse_orphan_flags",
    "run_cache_status",
    "run_release",
    "stage_in_cached_from_args",
]

# cache.DEFAULT_LEASE_MAX_AGE_S, not imported from there: cache.py loads the S3 client, and the
# parser is built for every `aif-gateway` command.
DEFAULT_LEASE_MAX_AGE_S = 7 * 86400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """``7d`` -> 604800.0; units s, m, h, d, w; a plain number is seconds. ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 90s, 12h, 7d)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _lease_max_age_flag(parser: Any) -> None:  # a parser or an argument group
    parser.add_argument(
        "--lease-max-age",
        type=_duration,
        default=DEFAULT_LEASE_MAX_AGE_S,
        metavar="AGE",
        help="a lease of a holder other than pid-PID@HOST lapses this long after it was "
        "taken, so a lost Slurm teardown cannot pin data forever (default: 7d; "
        "units s, m, h, d, w)",
    )


def add_cache_flags(stage_in: argparse.ArgumentParser) -> None:
    """Add ``--cache``, ``--cache-size``, ``--holder``, ``--link-to`` and ``--lease-max-age`` to ``stage in``."""
    group = stage_in.add_argument_group("site cache")
    group.add_argument(
        "--cache",
        type=Path,
        metavar="DIR",
        help="stage through the site cache in DIR (reused while the sources are unchanged); "
        "without --to the entry's data path is printed",
    )
    group.add_argument(
        "--cache-size",
        type=_size,
        metavar="SIZE",
        help="cap of the cache (e.g. 500G): least recently used entries no job holds "
        "are evicted to make room (default: no cap)",
    )
    group.add_argument(
        "--holder",
        metavar="ID",
        help="who uses the entry: a Slurm job id (released by `stage release`), or "
        "pid-PID@HOST (lapses when that process exits; default: the parent process)",
    )
    group.add_argument(
        "--link-to",
        type=Path,
        metavar="PATH",
        help="make PATH a symlink to the entry's data (atomically; --to DIR does the same)",
    )
    _lease_max_age_flag(group)


def add_cache_verbs(verbs: Any, status: argparse.ArgumentParser) -> None:
    """Add ``--cache`` to ``stage status`` and the ``stage release`` verb."""
    status.add_argument(
        "--cache",
        type=Path,
        metavar="CACHE",
        help="list the entries of the site cache CACHE instead (one JSON object per line, least recently used first)",
    )
    _lease_max_age_flag(status)
    release = verbs.add_parser(
        "release",
        help="drop a holder's leases on site cache entries (Slurm teardown)",
        description="Drop every lease HOLDER has in the site cache DIR; the entries "
        "become evictable (least recently used first) once no live lease is left. "
        "Prints the number of leases released; 0 is not an error.",
    )
    release.add_argument("--cache", type=Path, required=True, metavar="DIR", help="the site cache")
    release.add_argument(
        "--holder", required=True, metavar="ID", help="the holder given to `stage in --holder` (a Slurm job id)"
    )


def refuse_orphan_flags(args: argparse.Namespace) -> None:
    """A usage StageError when a cache flag was given without ``--cache``."""
    given = [
        flag
        for flag, value in (("--cache-size", args.cache_size), ("--holder", args.holder), ("--link-to", args.link_to))
        if value is not None
    ]
    if given:
        raise StageError("usage", f"{', '.join(given)}: needs --cache DIR")


async def stage_in_cached_from_args(args: argparse.Namespace, options: StageOptions) -> Any:
    """``stage in --cache``: ``cache.stage_in_cached`` with the flags' values; returns its Report."""
    from ..cache import default_holder, stage_in_cached

    if args.link_to is not None and args.to is not None:
        raise StageError("usage", "give --to DIR or --link-to PATH, not both (with --cache both make a symlink)")
    return await stage_in_cached(
        args.sources,
        args.cache,
        options,
        holder=args.holder or default_holder(os.getppid()),
        cache_size=args.cache_size,
        link_to=args.link_to or args.to,
        lease_max_age=args.lease_max_age,
    )


def run_release(args: argparse.Namespace) -> int:
    """``stage release``: prints the number of leases released; returns the exit status."""
    from ..cache import release

    try:
        count = release(args.cache, args.holder)
    except StageError as exc:
        print(f"aif-gateway stage release: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"aif-gateway stage release: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"aif-gateway stage release: {count} lease(s) of {args.holder} released in {args.cache}", file=sys.stderr)
    print(count)
    return 0


def run_cache_status(args: argparse.Namespace) -> int:
    """``stage status --cache``: one JSON object per entry, a summary on stderr; returns the exit
    status."""
    from ..cache import cache_entries

    if not args.cache.is_dir():
        print(f"aif-gateway stage status: no cache at {args.cache}", file=sys.stderr)
        return 1
    entries = cache_entries(args.cache, lease_max_age=args.lease_max_age)
    for entry in entries:
        print(json.dumps(entry))
    total = sum(e["size"] for e in entries)
    held = sum(e["size"] for e in entries if any(lease["live"] for lease in e["leases"]))
    oldest = min((e["last_used"] for e in entries), default=None)
    print(
        f"aif-gateway stage status: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, "
        f"{format_size(total)} in {args.cache}, "
        f"{format_size(held)} held by live leases"
        + (
            f", least recently used {time.strftime('%Y-%m-%d %H:%M', time.localtime(oldest))}"
            if oldest is not None
            else ""
        ),
        file=sys.stderr,
    )
    return 0
