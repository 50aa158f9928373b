"""Where the client connects and as whom, as its callers' options give it.

Endpoint, keys, profile and region come from the options when set, else from what botocore
reads itself (AWS_ENDPOINT_URL[_S3], AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws/config...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

__all__ = ["ClientOptions", "S3Options", "configured_endpoint"]


class S3Options(Protocol):
    """What the client reads of its caller's options (``StageOptions`` is one)."""

    endpoint_url: str | None
    profile: str | None
    region: str | None
    access_key: str | None
    secret_key: str | None


@dataclass(frozen=True)
class ClientOptions:
    """Plain ``S3Options``, for a caller without options of its own."""

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None


def configured_endpoint(options: S3Options) -> str | None:
    """The endpoint the options or the environment name; None: botocore's own choice."""
    return options.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
