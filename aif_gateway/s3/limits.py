"""What one request may ask for: AWS's size and count limits, configurable per site.

A declared length is checked before a byte of the body is read: a PUT that declares 5 TiB is
answered at once with ``EntityTooLarge`` instead of being accepted and waited on. Sites may
lower the limits (or raise the sizes: a filesystem is not S3) in the ``[limits]`` section of
the config file (``config.py``); the part count cannot exceed S3's 10,000, which the multipart
layer's locks are sized for.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import S3Error
from ..store.base import MAX_PARTS
from .numbers import decimal

__all__ = [
    "DEFAULT_BODY_STALL_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_KEEPALIVE_TIMEOUT_S",
    "Limits",
    "check_upload_size",
    "part_number",
]

GiB = 1 << 30
# How long a connection may take over a request's line and header section, and stay idle
# between requests (``connection``): [server] header_timeout and keepalive_timeout.
DEFAULT_HEADER_TIMEOUT_S = 20.0
DEFAULT_KEEPALIVE_TIMEOUT_S = 75.0  # as nginx's keepalive_timeout
# How long a body may send nothing before the request fails: [limits] body_stall_timeout.
DEFAULT_BODY_STALL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Limits:
    """A site's limits, AWS's values by default (5 GiB for a single PUT and for a part, 10,000
    parts, numbered 1..max_parts); a body may pause for ``body_stall_timeout`` seconds (120) at
    most."""

    max_object_size: int = 5 * GiB  # one PutObject's body
    max_part_size: int = 5 * GiB  # one UploadPart's body
    max_parts: int = MAX_PARTS  # parts per upload, and the highest part number
    # A body that sends nothing for this long fails the request (the client is gone or stalling).
    body_stall_timeout: float = DEFAULT_BODY_STALL_TIMEOUT_S


def check_upload_size(declared: int | None, allowed: int) -> None:
    """``EntityTooLarge`` with ``ProposedSize`` and ``MaxSizeAllowed``, as AWS answers, when
    ``declared`` (None: unknown) exceeds ``allowed``."""
    if declared is not None and declared > allowed:
        raise S3Error("EntityTooLarge", extra={"ProposedSize": str(declared), "MaxSizeAllowed": str(allowed)})


def part_number(value: str | None, max_parts: int) -> int:
    """A ``partNumber`` query value, or ``InvalidArgument`` naming it when it is no integer in
    1..max_parts."""
    raw = value if value is not None else ""
    number = decimal(raw)
    if number is None or not 1 <= number <= max_parts:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {max_parts}, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": raw},
        )
    return number
