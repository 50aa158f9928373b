"""``aif-gateway stage in | out | status``: the staging engine on the command line.

Exit codes: 0 ok; 1 transfer or verification failure; 2 usage or configuration error; 3 source
missing; 4 no space left; 5 permission denied; 130/143 stopped by SIGINT/SIGTERM (the journal
keeps what landed: re-run the same command to resume). Errors are one line on stderr. With
``--json`` the report is the last line on stdout; without it, the staged path is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_SIGINT, EXIT_SIGTERM, StageError
from ..options import MIN_PART_SIZE, StageOptions, format_size, parse_size
from . import cache_commands

__all__ = ["add_stage_parser", "run"]

IN_EPILOG = """\
examples:
  aif-gateway stage in s3://datasets/imagenet --to /scratch/$USER/imagenet
  aif-gateway stage in /lustre/proj/data --to /local/data --jobs 32
  aif-gateway stage in @files.txt --to /scratch/run1 --json --report /tmp/stage.json

SRC: s3://BUCKET/PREFIX, a file or directory, or @MANIFEST (lines: SRC [DEST_REL] [xxh3=HEX|sha256=HEX|md5=HEX]).
Directories and prefixes are merged into DIR; a single file lands as DIR/NAME. Re-running resumes:
only missing files and ranges are copied. DIR/.aifstage/complete.json appears when every file is
verified. S3 endpoint and keys: the flags, else AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_PROFILE...
exit codes: 0 ok, 1 transfer/verify, 2 usage, 3 source missing, 4 no space, 5 permission, 130/143 signal.
"""


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < MIN_PART_SIZE:
        raise argparse.ArgumentTypeError(f"at least {format_size(MIN_PART_SIZE)}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _common(parser: argparse.ArgumentParser) -> None:
    s3 = parser.add_argument_group("S3")
    s3.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL[_S3], else AWS)")
    s3.add_argument("--profile", help="AWS profile (default: AWS_PROFILE)")
    s3.add_argument("--region", help="region for signing (default: AWS_REGION, the profile's, else us-east-1)")
    tuning = parser.add_argument_group("transfer")
    tuning.add_argument(
        "--jobs",
        type=_positive,
        default=16,
        metavar="N",
        help="files or ranges in flight (default: 16; memory ~ N x 8 MiB)",
    )
    tuning.add_argument(
        "--part-size",
        type=_size,
        default=parse_size("64M"),
        metavar="SIZE",
        help="range size for large files and multipart part size (default: 64M)",
    )
    tuning.add_argument(
        "--retries", type=int, default=5, metavar="N", help="retries per request after transient S3 errors (default: 5)"
    )
    out = parser.add_argument_group("output")
    out.add_argument("--report", type=Path, metavar="FILE", help="write the JSON report here")
    out.add_argument("--json", action="store_true", help="print the JSON report as the last stdout line")
    out.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    out.add_argument(
        "--progress-interval",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds between progress log lines when there is no bar (default: 10; 0: none)",
    )


def _add_cache_flags(stage_in: argparse.ArgumentParser) -> None:
    # --- cache hook: --cache, --cache-size, --holder, --link-to, --lease-max-age (cache_commands.py) --
    cache_commands.add_cache_flags(stage_in)


def add_stage_parser(sub: Any) -> None:
    """Add ``stage`` and its verbs to ``sub``, the subparsers of aif_gateway/cli.py."""
    stage = sub.add_parser(
        "stage",
        help="stage data in (S3/filesystem -> directory) or out",
        description="Parallel, resumable, verified data staging.",
    )
    verbs = stage.add_subparsers(dest="stage_command", metavar="VERB")
    verbs.required = True

    stage_in = verbs.add_parser(
        "in",
        help="copy sources into a directory",
        epilog=IN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stage_in.add_argument(
        "sources",
        nargs="+",
        metavar="SRC",
        help="s3://BUCKET/PREFIX, a file or directory, or @MANIFEST (one source per line: "
        "SRC [DEST_REL] [xxh3=HEX|sha256=HEX|md5=HEX|etag=ETAG])",
    )
    stage_in.add_argument("--to", type=Path, metavar="DIR", help="destination directory (created if missing)")
    _add_cache_flags(stage_in)
    _common(stage_in)

    stage_out = verbs.add_parser("out", help="copy new or changed files to S3 or a directory")
    stage_out.add_argument(
        "source", type=Path, metavar="SRC", help="directory (or file) whose new or changed files are copied"
    )
    stage_out.add_argument("--to", required=True, metavar="s3://BUCKET/PREFIX|DIR")
    _common(stage_out)

    status = verbs.add_parser("status", help="whether DIR holds a complete, verified stage (exit 0) or not (1)")
    status.add_argument("directory", type=Path, nargs="?", metavar="DIR")
    # --- cache hook: `status --cache DIR` and the `release` verb (cache_commands.py) ------------------
    cache_commands.add_cache_verbs(verbs, status)


def _options(args: argparse.Namespace) -> StageOptions:
    return StageOptions(
        jobs=args.jobs,
        part_size=args.part_size,
        retries=args.retries,
        progress=False if args.no_progress else None,
        progress_interval_s=args.progress_interval,
        endpoint_url=args.endpoint_url,
        profile=args.profile,
        region=args.region,
    )


async def _stage_in_cached(args: argparse.Namespace, options: StageOptions) -> Any:
    # --- cache hook: the site cache (aif_gateway/stage/cache.py, flags in cache_commands.py) ----------
    return await cache_commands.stage_in_cached_from_args(args, options)


async def _run_verb(args: argparse.Namespace, options: StageOptions, report_box: list[Any]) -> Any:
    from ..engine.transfer import run_stage
    from ..progress import Report

    if args.stage_command == "in":
        if args.cache is not None:
            return await _stage_in_cached(args, options)
        cache_commands.refuse_orphan_flags(args)
        if args.to is None:
            raise StageError("usage", "stage in needs --to DIR (or --cache DIR)")
        report = Report("in", list(args.sources), str(args.to))
        report_box.append(report)
        return await run_stage(list(args.sources), args.to, options, report)
    from ..out.upload import stage_out  # here: it imports aiobotocore, which a stage in from files never needs

    return await stage_out(args.source, args.to, options)


async def _with_signals(
    args: argparse.Namespace, options: StageOptions, report_box: list[Any], stopped: list[int]
) -> Any:
    """Run the verb; SIGINT/SIGTERM cancel it (cleanly: journal flushed, no completion marker)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop(signum: int) -> None:
        if not stopped:
            stopped.append(signum)
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    return await _run_verb(args, options, report_box)


def _emit(args: argparse.Namespace, report: Any) -> None:
    data = report.to_dict()
    if args.report is not None:
        try:
            args.report.write_text(json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            print(f"aif-gateway stage: cannot write the report to {args.report}: {exc.strerror}", file=sys.stderr)
    if args.json:
        print(json.dumps(data), flush=True)
    elif report.ok:
        print(data["path"], flush=True)


def _summary(report: Any) -> str:
    skipped = (
        f"; {report.skipped_files} files ({format_size(report.skipped_bytes)}) already there"
        if report.skipped_files or report.skipped_bytes
        else ""
    )
    return (
        f"aif-gateway stage {report.direction}: {report.files} files, {format_size(report.bytes)} in "
        f"{report.seconds:.1f} s ({report.gib_per_s:.2f} GiB/s) -> {report.path or report.destination}"
        f"{skipped}; {report.retries} retries"
    )


def _status(args: argparse.Namespace) -> int:
    from ..state.completion import check_complete

    if args.directory is None:
        print("aif-gateway stage status: give DIR", file=sys.stderr)
        return 2
    marker, why = check_complete(args.directory)
    if marker is None:
        print(f"{args.directory}: not a complete stage: {why}", file=sys.stderr)
        return 1
    print(json.dumps(marker))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``stage`` command; returns its exit code."""
    if args.stage_command == "status":
        return cache_commands.run_cache_status(args) if args.cache is not None else _status(args)
    if args.stage_command == "release":
        return cache_commands.run_release(args)
    try:
        options = _options(args)
    except ValueError as exc:
        print(f"aif-gateway stage {args.stage_command}: {exc}", file=sys.stderr)
        return 2
    import uvloop

    # botocore says "Found credentials in environment variables" at INFO on every run.
    for name in ("botocore.credentials", "aiobotocore.credentials"):
        logging.getLogger(name).setLevel(logging.WARNING)
    report_box: list[Any] = []
    stopped: list[int] = []
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            report = runner.run(_with_signals(args, options, report_box, stopped))
    except StageError as exc:
        print(f"aif-gateway stage {args.stage_command}: error: {exc}", file=sys.stderr)
        if exc.report is not None:
            _emit(args, exc.report)
        return exc.exit_code
    except (asyncio.CancelledError, KeyboardInterrupt):
        signum = stopped[0] if stopped else signal.SIGINT
        name = signal.Signals(signum).name
        print(
            f"aif-gateway stage {args.stage_command}: stopped by {name}; what landed is kept: re-run the "
            "same command to resume",
            file=sys.stderr,
        )
        if report_box:
            report_box[0].errors.append(f"stopped by {name}")
            _emit(args, report_box[0])
        return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT
    print(_summary(report), file=sys.stderr)
    _emit(args, report)
    return 0
