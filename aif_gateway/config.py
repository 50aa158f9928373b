"""Settings for ``aif-gateway serve``: command-line flags over a TOML config file over defaults.

Config file format (every section optional)::

    [server]
    root = "/lustre/aif"          # same as --root
    listen = "0.0.0.0:9000"       # same as --listen
    workers = 8                   # same as --workers
    domain = "s3.example.org"     # same as --domain (virtual-host style addressing)
    fsync = true                  # fsync object data before publishing (default false)
    tls_cert = "/etc/aif/cert.pem"  # same as --tls-cert: serve HTTPS (PEM chain)
    tls_key = "/etc/aif/key.pem"    # same as --tls-key
    region = "us-east-1"          # same as --region: the region clients sign for (default us-east-1)
    require_posix_ids = true      # refuse users with no POSIX ids (default false: they act as the gateway)
    header_timeout = 20           # seconds for a request line and header section, from its first byte
    keepalive_timeout = 75        # seconds an idle connection is kept open between requests

    [limits]                      # what one request may ask for; AWS's values by default
    max_object_size = "5GiB"      # a single PutObject's body (bytes, or a number with KiB..TiB)
    max_part_size = "5GiB"        # one UploadPart's body
    max_parts = 10000             # parts per multipart upload (and the highest part number), at most 10000
    body_stall_timeout = 120      # seconds a request body may send nothing before the request fails

    [buckets]                     # expose existing directories in place as buckets
    datasets = "/lustre/proj/datasets"
"""

from __future__ import annotations

import os
import re
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .s3.limits import DEFAULT_HEADER_TIMEOUT_S, DEFAULT_KEEPALIVE_TIMEOUT_S, Limits
from .store.base import MAX_PARTS

__all__ = [
    "ConfigError",
    "DEFAULT_LISTEN",
    "DEFAULT_REGION",
    "Settings",
    "load_settings",
    "parse_listen",
    "server_ssl_context",
]

DEFAULT_ROOT = Path("./aif-data")
DEFAULT_LISTEN = "127.0.0.1:9000"
DEFAULT_REGION = "us-east-1"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class Settings:
    root: Path = DEFAULT_ROOT
    host: str = "127.0.0.1"
    port: int = 9000
    workers: int = 1
    domain: str | None = None
    fsync: bool = False
    bucket_map: dict[str, Path] = field(default_factory=dict)
    users_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    region: str = DEFAULT_REGION
    require_posix_ids: bool = False
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT_S
    limits: Limits = Limits()
    # Signature Version 2 (boto3's default presigned URLs against a custom endpoint, s3cmd
    # --signature-v2) besides SigV4; a site that wants SigV4 only sets signature_v2 = false.
    signature_v2: bool = True

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--listen {value!r}: expected HOST:PORT, e.g. 127.0.0.1:9000")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def load_settings(
    *,
    config_file: Path | None = None,
    root: Path | None = None,
    listen: str | None = None,
    workers: int | None = None,
    domain: str | None = None,
    users_file: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    region: str | None = None,
) -> Settings:
    """Merge flags (given, non-None) over the config file over defaults."""
    server: dict[str, Any] = {}
    buckets: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{config_file}: config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from None
        unknown = set(data) - {"server", "buckets", "limits"}
        if unknown:
            raise ConfigError(
                f"{config_file}: unknown section(s) {', '.join(sorted(unknown))}; "
                "expected [server], [limits] and [buckets]"
            )
        server = data.get("server", {})
        buckets = data.get("buckets", {})
        limits = data.get("limits", {})
        unknown = set(server) - {
            "root",
            "listen",
            "workers",
            "domain",
            "fsync",
            "tls_cert",
            "tls_key",
            "region",
            "require_posix_ids",
            "header_timeout",
            "keepalive_timeout",
            "signature_v2",
        }
        if unknown:
            raise ConfigError(f"{config_file}: unknown [server] key(s) {', '.join(sorted(unknown))}")
        unknown = set(limits) - {"max_object_size", "max_part_size", "max_parts", "body_stall_timeout"}
        if unknown:
            raise ConfigError(f"{config_file}: unknown [limits] key(s) {', '.join(sorted(unknown))}")

    host, port = parse_listen(listen or server.get("listen", DEFAULT_LISTEN))
    n_workers = workers if workers is not None else server.get("workers", os.cpu_count() or 1)
    if not isinstance(n_workers, int) or n_workers < 1:
        raise ConfigError(f"workers must be a positive integer, not {n_workers!r}")

    bucket_map: dict[str, Path] = {}
    for name, path in buckets.items():
        target = Path(str(path))
        if not target.is_absolute():
            raise ConfigError(f"[buckets] {name} = {path!r}: the directory must be an absolute path")
        if not target.is_dir():
            raise ConfigError(f"[buckets] {name} = {path!r}: no such directory")
        bucket_map[name] = target

    cert = tls_cert or (Path(server["tls_cert"]) if server.get("tls_cert") else None)
    key = tls_key or (Path(server["tls_key"]) if server.get("tls_key") else None)
    if bool(cert) != bool(key):
        raise ConfigError("TLS needs both a certificate and a key: give --tls-cert and --tls-key together")
    if cert and key:
        check_tls(cert, key)

    region = region or server.get("region", DEFAULT_REGION)
    if not isinstance(region, str) or not region or not region.replace("-", "").isalnum():
        raise ConfigError(f"region must be a region name such as us-east-1, not {region!r}")
    require_posix_ids = server.get("require_posix_ids", False)
    if not isinstance(require_posix_ids, bool):
        raise ConfigError(f"require_posix_ids must be true or false, not {require_posix_ids!r}")
    signature_v2 = server.get("signature_v2", True)
    if not isinstance(signature_v2, bool):
        raise ConfigError(f"signature_v2 must be true or false, not {signature_v2!r}")

    return Settings(
        header_timeout=_seconds(server, "header_timeout", DEFAULT_HEADER_TIMEOUT_S),
        keepalive_timeout=_seconds(server, "keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT_S),
        limits=_limits(limits),
        root=Path(root or server.get("root", DEFAULT_ROOT)),
        host=host,
        port=port,
        workers=n_workers,
        domain=domain or server.get("domain") or None,
        fsync=bool(server.get("fsync", False)),
        bucket_map=bucket_map,
        users_file=users_file,
        tls_cert=cert,
        tls_key=key,
        region=region,
        require_posix_ids=require_posix_ids,
        signature_v2=signature_v2,
    )


_SIZE_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}
_SIZE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")


def _seconds(section: dict[str, Any], name: str, default: float) -> float:
    value = section.get(name, default)
    if type(value) not in (int, float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def _size(section: dict[str, Any], name: str, default: int) -> int:
    value = section.get(name, default)
    match = _SIZE.fullmatch(value) if isinstance(value, str) else None
    if match is not None and match.group(2).upper() in _SIZE_UNITS:
        value = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if type(value) is not int or value < 1:
        raise ConfigError(
            f'{name} must be a positive number of bytes, such as 5368709120 or "5GiB", not {section.get(name)!r}'
        )
    return value


def _limits(section: dict[str, Any]) -> Limits:
    default = Limits()
    max_parts = section.get("max_parts", default.max_parts)
    if type(max_parts) is not int or not 1 <= max_parts <= MAX_PARTS:
        raise ConfigError(f"max_parts must be an integer from 1 to {MAX_PARTS}, not {max_parts!r}")
    return Limits(
        max_object_size=_size(section, "max_object_size", default.max_object_size),
        max_part_size=_size(section, "max_part_size", default.max_part_size),
        max_parts=max_parts,
        body_stall_timeout=_seconds(section, "body_stall_timeout", default.body_stall_timeout),
    )


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


def check_tls(cert: Path, key: Path) -> None:
    """Load the pair once up front so a bad file is one clear message, not N dead workers."""
    try:
        server_ssl_context(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: {exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS: cannot load certificate {cert} with key {key}: {exc}") from None
