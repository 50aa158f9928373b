"""Command line: ``aif-gateway serve``, ``aif-gateway users ...`` (aif_gateway/users_cli.py),
``aif-gateway stage ...`` (aif_gateway/stage/cli/) and ``aif-gateway ckpt ...`` (aif_gateway/ckpt/cli.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from . import __version__
from .ckpt.cli import add_ckpt_parser
from .config import DEFAULT_LISTEN, DEFAULT_REGION, ConfigError, load_settings
from .identity import IdentityError
from .stage.cli import add_stage_parser
from .users_cli import add_users_parser

__all__ = ["build_parser", "main"]

log = logging.getLogger("aif_gateway")

SERVE_EPILOG = """\
examples:
  aif-gateway serve                                   # ./aif-data on 127.0.0.1:9000, keys printed
  AIF_ACCESS_KEY=k AIF_SECRET_KEY=s aif-gateway serve --root /lustre/aif --listen 0.0.0.0:9000
  aif-gateway serve --config /etc/aif-gateway.toml --users /etc/aif-users.toml
  kill -HUP MASTER_PID        # re-read --users FILE (the pid of the "aif-gateway starting" log line)

Every directory under ROOT is a bucket; every file inside it is an object (key = relative path).
Map existing directories as buckets with a config file:  [buckets] datasets = "/lustre/proj/datasets"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aif-gateway", description="S3-compatible gateway over a POSIX/parallel filesystem tree."
    )
    parser.add_argument("--version", action="version", version=f"aif-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser(
        "serve",
        help="serve a directory tree over S3",
        description="Serve a directory tree as S3 buckets and objects.",
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--root", type=Path, help="directory whose subdirectories are buckets (default: ./aif-data, created if missing)"
    )
    serve.add_argument("--listen", metavar="HOST:PORT", help=f"address to listen on (default: {DEFAULT_LISTEN})")
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"worker processes sharing the port (default: CPU cores, here {os.cpu_count()})",
    )
    serve.add_argument(
        "--users",
        type=Path,
        metavar="FILE",
        help="TOML file of [[users]] (name, access_key, secret_key, uid, gid, groups, "
        "posix_user, admin, allow_root), mode 0600; edit it with 'aif-gateway users', "
        "reload it with SIGHUP",
    )
    serve.add_argument(
        "--config", type=Path, metavar="FILE", help="TOML config file with [server], [limits] and [buckets] sections"
    )
    serve.add_argument("--domain", metavar="NAME", help="enable virtual-host style addressing: BUCKET.NAME/key")
    serve.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="serve HTTPS with this certificate chain (needs --tls-key)"
    )
    serve.add_argument("--tls-key", type=Path, metavar="PEM", help="private key for --tls-cert")
    serve.add_argument(
        "--region",
        metavar="NAME",
        help=f"the region clients sign requests for; others are refused (default: {DEFAULT_REGION})",
    )
    add_users_parser(sub)
    add_stage_parser(sub)
    add_ckpt_parser(sub)
    return parser


def serve(args: argparse.Namespace) -> int:
    from .credentials import banner, key_reminder, resolve_identities
    from .posix_ids import PosixIdMap, personal_gateway
    from .server import check_port_free, run_supervisor
    from .store.internal import prepare_root

    try:
        settings = load_settings(
            config_file=args.config,
            root=args.root,
            listen=args.listen,
            workers=args.workers,
            domain=args.domain,
            users_file=args.users,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            region=args.region,
        )
        prepare_root(settings.root)
        if not os.access(settings.root, os.W_OK | os.X_OK):
            raise ConfigError(f"root {settings.root} is not writable by uid {os.getuid()}")
        # Resolved once here so that a bad users file or a fresh key pair is reported before
        # any worker starts; the workers get this table (and re-read the file on SIGHUP).
        identities, generated, created = resolve_identities(settings.root, settings.users_file)
        PosixIdMap.build(identities, require_posix_ids=settings.require_posix_ids)  # a bad user stops us here
    except (ConfigError, IdentityError) as exc:
        print(f"aif-gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aif-gateway: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        check_port_free(settings.host, settings.port)
    except OSError as exc:
        print(
            f"aif-gateway: cannot listen on {settings.host}:{settings.port}: {exc.strerror}; "
            "pick another address with --listen HOST:PORT",
            file=sys.stderr,
        )
        return 2

    host = settings.host if settings.host not in ("0.0.0.0", "::") else "127.0.0.1"
    endpoint = f"{settings.scheme}://{host}:{settings.port}"
    if generated is not None:
        text = (
            banner(generated, endpoint, settings.root, settings.region)
            if created
            else key_reminder(generated, endpoint, settings.root)
        )
        print(text, file=sys.stderr, flush=True)
    if personal_gateway():
        log.warning(
            "not running as root: every key acts as this process's user on the filesystem", extra={"uid": os.geteuid()}
        )
    log.info(
        "aif-gateway starting",
        extra={
            "version": __version__,
            "root": str(settings.root.resolve()),
            "endpoint": endpoint,
            "workers": settings.workers,
            "buckets_mapped": sorted(settings.bucket_map),
            "domain": settings.domain,
            "region": settings.region,
        },
    )
    return run_supervisor(settings, identities)


def main(argv: list[str] | None = None) -> int:
    from .logs import setup_logging

    setup_logging()
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "users":
        from .users_cli import run as run_users

        return run_users(args)
    if args.command == "stage":
        from .stage.cli import run as run_stage

        return run_stage(args)
    if args.command == "ckpt":
        from .ckpt.cli import run as run_ckpt

        return run_ckpt(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
