"""The S3 error catalogue: one code, one HTTP status, one default message.

Both layers raise :class:`S3Error`; the storage layer only ever names a code, and exactly one
place in the protocol layer (``s3/responses.py``) renders it as XML with the request id. The
HTTP status lives in this table because S3 defines it per code, not per call site.
"""

from __future__ import annotations

__all__ = ["NotModified", "S3Error", "chunked_body_error"]

# code -> (HTTP status, default message). Messages follow AWS's wording where AWS has one.
CATALOGUE: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "The authentication query parameters are malformed."),
    "BadDigest": (400, "The Content-MD5 or checksum value you specified did not match what we received."),
    "BucketAlreadyExists": (
        409,
        "The requested bucket name is not available. The bucket namespace is shared by all users of the system. "
        "Please select a different name and try again.",
    ),
    "BucketAlreadyOwnedByYou": (
        409,
        "Your previous request to create the named bucket succeeded and you already own it.",
    ),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty"),
    "ConditionalRequestConflict": (
        409,
        "A conflicting operation occurred. If using PutObject you can retry the request. If using multipart upload "
        "you should initiate another CreateMultipartUpload request and re-upload each part.",
    ),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed size"),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object size."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the Content-Length HTTP header."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS Access Key Id you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "InvalidPart": (
        400,
        "One or more of the specified parts could not be found. The part may not have been uploaded, or the "
        "specified entity tag may not match the part's entity tag.",
    ),
    "InvalidPartOrder": (400, "The list of parts was not in ascending order. Parts must be ordered by part number."),
    "InvalidPartNumber": (416, "The requested partnumber is not satisfiable"),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidURI": (400, "Couldn't parse the specified URI."),
    "InvalidStorageClass": (400, "The storage class you specified is not valid"),
    "InvalidTag": (400, "The TagKey you have provided is invalid"),
    "KeyTooLongError": (400, "Your key is too long"),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate against our published schema."),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MissingSecurityHeader": (400, "Your request is missing a required header."),
    "NoSuchBucket": (404, "The specified bucket does not exist"),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchUpload": (
        404,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or "
        "completed.",
    ),
    "NoSuchTagSet": (404, "The TagSet does not exist"),
    "NotImplemented": (501, "A header you provided implies functionality that is not implemented."),
    "PreconditionFailed": (412, "At least one of the pre-conditions you specified did not hold"),
    "RequestHeaderSectionTooLarge": (400, "Your request header section exceeds the maximum allowed size."),
    "RequestTimeout": (
        400,
        "Your socket connection to the server was not read from or written to within the timeout period.",
    ),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the current time is too large."),
    "SignatureDoesNotMatch": (
        403,
        "The request signature we calculated does not match the signature you provided. Check your key and signing "
        "method.",
    ),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
}

# Not S3 errors but HTTP answers without a body of S3's making.
NOT_MODIFIED = 304


class S3Error(Exception):
    """An S3 error code, optionally with a better message and extra XML fields.

    ``extra`` carries the fields some codes add to the XML body (``ActualObjectSize`` for
    InvalidRange, ``Key``/``BucketName`` for NoSuchKey/NoSuchBucket, ``ArgumentName``...).
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        resource: str | None = None,
        extra: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if code not in CATALOGUE:
            raise ValueError(f"unknown S3 error code {code!r}")
        self.code = code
        self.status, default = CATALOGUE[code]
        self.message = message or default
        self.resource = resource
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})
        super().__init__(f"{code}: {self.message}")


class NotModified(Exception):
    """A conditional GET/HEAD whose answer is 304 with no body (not an S3 error document)."""

    def __init__(self, etag: str, last_modified_ns: int) -> None:
        self.etag = etag
        self.last_modified_ns = last_modified_ns
        super().__init__("not modified")


# How S3 answers each kind of refusal of the aws-chunked decoder (fsio.engine.ChunkedError.kind).
_CHUNKED_CODES = {
    "framing": "InvalidRequest",
    "trailer": "InvalidRequest",
    "incomplete": "IncompleteBody",
    "signature": "SignatureDoesNotMatch",
}


def chunked_body_error(kind: str, message: str) -> S3Error:
    """The S3Error for an aws-chunked body the decoder refused (both layers meet these: the
    protocol layer decodes what aiohttp read, the storage layer what it read from the socket)."""
    return S3Error(_CHUNKED_CODES.get(kind, "InvalidRequest"), message)
