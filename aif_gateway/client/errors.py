"""What the S3 client raises of its own, and how it reads S3's errors.

An S3 error answer is a ``botocore.exceptions.ClientError`` whichever path made the request
(botocore's, or ``SignedS3`` building the same object from the error document), so callers
handle one type. ``classify`` sorts its code into the few cases callers tell apart.
"""

from __future__ import annotations

from botocore import exceptions as bexc

from .xml import parse_error

__all__ = [
    "NoCredentials",
    "SetupError",
    "TruncatedBody",
    "UnknownProfile",
    "classify",
    "client_error",
    "error_code",
    "error_message",
    "http_status",
]

_CLASSES = {
    "transient": {
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "BadGateway",
        "GatewayTimeout",
    },
    "missing": {"NoSuchBucket", "NoSuchKey", "404", "NotFound"},
    "denied": {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "AccountProblem"},
    "bad_keys": {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"},
    "changed": {"PreconditionFailed", "412"},  # an If-Match that no longer matches
}
_CLASS_OF = {code: name for name, codes in _CLASSES.items() for code in codes}


class TruncatedBody(Exception):
    """A response body that ended before its Content-Length (retried like a dropped connection)."""


class SetupError(Exception):
    """The client cannot be set up as configured; nothing was sent."""


class NoCredentials(SetupError):
    def __init__(self, endpoint: str) -> None:
        super().__init__(f"no S3 credentials for {endpoint}")
        self.endpoint = endpoint


class UnknownProfile(SetupError):
    """botocore's ProfileNotFound (its message names the profile)."""


def client_error(status: int, body: bytes, reason: str, operation: str) -> bexc.ClientError:
    """The ClientError botocore would raise for this error answer."""
    code, message = parse_error(body)
    return bexc.ClientError(
        {
            "Error": {"Code": code or str(status), "Message": message or reason},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


def error_code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def error_message(exc: bexc.ClientError) -> str:
    message: str = exc.response.get("Error", {}).get("Message", "")
    return message


def http_status(exc: bexc.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def classify(exc: bexc.ClientError) -> str | None:
    """ "transient", "missing", "denied", "bad_keys" (credentials refused) or "changed" (a
    precondition failed) by the error's code; None for other codes."""
    return _CLASS_OF.get(error_code(exc))
