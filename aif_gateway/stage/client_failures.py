"""S3 client failures as stage errors: the stage's edge with ``aif_gateway.client``.

``s3_error`` turns a failure that retrying will not fix into a ``StageError`` naming the
``s3://`` URL and saying what to check; ``client_setup`` does the same for a client that
cannot be set up (no credentials, an unknown profile); ``parse_s3_url`` is ``S3Url.parse``
with a usage error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore import exceptions as bexc

from ..client import NoCredentials, S3Url, SetupError, classify, error_code, error_message, http_status
from .errors import StageError

__all__ = ["client_setup", "parse_s3_url", "s3_error"]


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key or prefix) of ``s3://BUCKET/PREFIX``; a usage error for anything else."""
    try:
        parsed = S3Url.parse(url)
    except ValueError as exc:
        raise StageError("usage", str(exc)) from None
    return parsed.bucket, parsed.key


def _no_credentials(where: str) -> str:
    return f"no S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / --profile"


@contextmanager
def client_setup() -> Iterator[None]:
    """Setting up an S3 client: its SetupErrors become usage errors."""
    try:
        yield
    except NoCredentials as exc:
        raise StageError("usage", _no_credentials(exc.endpoint)) from None
    except SetupError as exc:
        raise StageError("usage", f"{exc}: check --profile / AWS_PROFILE and ~/.aws/config") from None


def s3_error(exc: BaseException, url: str, doing: str) -> StageError:
    """A stage error naming ``url`` for an S3 failure that retrying will not fix."""
    if isinstance(exc, StageError):
        return exc
    if isinstance(exc, (bexc.NoCredentialsError, bexc.PartialCredentialsError)):
        return StageError("usage", _no_credentials(url), url)
    if isinstance(exc, bexc.ClientError):
        code, kind = error_code(exc), classify(exc)
        if kind == "missing":
            what = "bucket does not exist" if code == "NoSuchBucket" else "object not found"
            return StageError("source_missing", f"{what}: {url} ({code}, while {doing})", url)
        if kind == "denied":
            return StageError(
                "permission",
                f"access denied to {url} (while {doing}): check the credentials' permissions on this bucket",
                url,
            )
        if kind == "bad_keys":
            return StageError(
                "permission",
                f"the S3 endpoint refused the credentials for {url} ({code}): "
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / --profile",
                url,
            )
        if kind == "changed":
            return StageError(
                "verify",
                f"{url} changed during the stage (its ETag no longer matches the "
                "listing): re-run to stage the new version",
                url,
            )
        return StageError("transfer", f"{url}: {code or http_status(exc)} {error_message(exc)} (while {doing})", url)
    if isinstance(exc, bexc.EndpointConnectionError):
        return StageError(
            "transfer", f"cannot reach the S3 endpoint for {url}: {exc} (check --endpoint-url / AWS_ENDPOINT_URL)", url
        )
    return StageError("transfer", f"{url}: {type(exc).__name__}: {exc} (while {doing})", url)
