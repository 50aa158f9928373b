"""``aif-gateway ckpt verify | info``: check a checkpoint from any node, PyTorch not needed.

``add_ckpt_parser`` adds the commands to aif_gateway/cli.py's parser; ``run`` carries one out.
Exit codes: 0 ok; 1 the bytes differ from the manifest (or there is none to check against);
2 usage or configuration error; 3 no complete checkpoint there.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["add_ckpt_parser", "run"]

EPILOG = """\
examples:
  aif-gateway ckpt info s3://ckpt/run1/step-2000
  aif-gateway ckpt verify s3://ckpt/run1/step-2000 --root /lustre/aif     # straight from the tree
  aif-gateway ckpt verify /scratch/$USER/run1/step-2000 --json

SRC: s3://BUCKET/PREFIX (straight from the filesystem with --root or AIF_GATEWAY_ROOT when the bucket's
directory is there, else S3 to --endpoint-url or AWS_ENDPOINT_URL, keys from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY), or a path. exit codes: 0 ok, 1 damaged or no manifest, 2 usage, 3 incomplete.
"""


def add_ckpt_parser(sub: Any) -> None:
    ckpt = sub.add_parser(
        "ckpt",
        help="inspect and verify checkpoints saved by aif_gateway.ckpt",
        description="Inspect and verify DCP checkpoints (aif_gateway.ckpt, or stock PyTorch ones).",
    )
    commands = ckpt.add_subparsers(dest="ckpt_command", metavar="ACTION")
    commands.required = True
    for name, text in (
        ("verify", "reread every byte and check it against the checkpoint's manifest"),
        ("info", "say whether the checkpoint is complete, and list its files"),
    ):
        p = commands.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("src", metavar="SRC", help="s3://BUCKET/PREFIX or a path")
        p.add_argument("--endpoint-url", metavar="URL", help="S3 endpoint (default: AWS_ENDPOINT_URL)")
        p.add_argument(
            "--root", metavar="DIR", help="the gateway's root directory, when mounted here (default: AIF_GATEWAY_ROOT)"
        )
        p.add_argument(
            "--via",
            choices=("auto", "filesystem", "s3"),
            default="auto",
            help="force one way to the checkpoint (default: the filesystem when the bucket is mounted here)",
        )
        p.add_argument(
            "--door",
            dest="via",
            choices=("auto", "filesystem", "s3"),
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
        )  # the old name of --via
        p.add_argument("--json", action="store_true", help="print the result as one JSON line")


def _progress_line() -> Any:
    """A progress line on stderr when it is a terminal (none in logs and pipes)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\rverifying: {done / 1e9:.2f} of {total / 1e9:.2f} GB", end=end, file=sys.stderr, flush=True)

    return show


def run(args: argparse.Namespace) -> int:
    from .destination import TargetOptions, open_target
    from .manifest import CheckpointNotFound, IntegrityError, describe, verify_target

    try:
        target = open_target(args.src, TargetOptions(endpoint=args.endpoint_url, root=args.root, via=args.via))
    except (ValueError, FileNotFoundError) as exc:
        print(f"aif-gateway ckpt: {exc}", file=sys.stderr)
        return 2
    try:
        if args.ckpt_command == "info":
            result = describe(target)
            if not result["files"] and not result["complete"]:
                raise CheckpointNotFound(f"nothing saved at {target.location}")
        else:
            result = {"location": target.location, "ok": True, **verify_target(target, _progress_line())}
    except CheckpointNotFound as exc:
        print(f"aif-gateway ckpt: {exc}", file=sys.stderr)
        return 3
    except IntegrityError as exc:
        print(f"aif-gateway ckpt: {exc}", file=sys.stderr)
        return 1
    finally:
        target.close()
    if args.json:
        print(json.dumps(result))
    elif args.ckpt_command == "info":
        state = "complete" if result["complete"] else "INCOMPLETE (no .metadata: interrupted, or still being saved)"
        print(
            f"{result['location']}: {state}; {len(result['files'])} data files, {result['bytes']:,} bytes; "
            f"manifest: {'yes' if result['manifest'] else 'no (not written by aif_gateway.ckpt)'}"
        )
        for name, size in result["files"].items():
            print(f"  {size:>15,}  {name}")
    else:
        print(
            f"ok: {result['files']} files, {result['items']} items, {result['bytes']:,} bytes match "
            f"the manifest at {result['location']}"
        )
    return 0
