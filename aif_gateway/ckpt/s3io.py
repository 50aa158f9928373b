"""Blocking S3 calls for checkpoint files, made from the writer's and reader's threads.

The same small signed client as the stage's fast reads (``aif_gateway.client.SignedS3``):
botocore costs milliseconds of CPU per call and copies bodies, here a part's body is sent
straight from the tensors' memory. Bodies are not signed (``UNSIGNED-PAYLOAD``,
hashing them with SHA-256 would cost more than writing them); each carries an
``x-amz-checksum-crc64nvme`` instead, which the gateway verifies before it keeps a byte and stores
as the object's FULL_OBJECT checksum.

``S3Settings.resolve`` takes its arguments, else what botocore finds (AWS_* variables,
AWS_PROFILE and ~/.aws files, roles). ``S3Bucket``'s calls raise
``botocore.exceptions.ClientError`` (S3's code and message) or ``OSError``; transient failures
(5xx, dropped connections) are retried with backoff first.
"""

from __future__ import annotations

import base64
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import botocore.session
from botocore import exceptions as bexc

from ..client import (
    UNSIGNED_PAYLOAD,
    Response,
    SignedS3,
    client_error,
    complete_upload_body,
    object_path,
    parse_list_page,
    parse_upload_id,
    with_retries_sync,
)

__all__ = ["RETRIES", "S3Bucket", "S3Settings"]

T = TypeVar("T")
RETRIES = 4
_SMALL_BODY_LIMIT = 1 << 30


@dataclass(frozen=True)
class S3Settings:
    endpoint: str
    access_key: str
    secret_key: str
    token: str | None = None
    region: str = "us-east-1"

    @classmethod
    def resolve(
        cls,
        endpoint: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str | None = None,
    ) -> S3Settings:
        env = os.environ
        endpoint = endpoint or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if not endpoint:
            raise ValueError("no S3 endpoint: pass endpoint='http://host:port' or set AWS_ENDPOINT_URL")
        token = None
        if not access_key or not secret_key:
            # As every AWS tool finds them: environment, AWS_PROFILE / ~/.aws files, roles.
            session = botocore.session.Session()
            found = session.get_credentials()
            if found is None:
                raise ValueError(
                    "no S3 credentials: pass access_key/secret_key, or set AWS_ACCESS_KEY_ID and "
                    "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)"
                )
            frozen = found.get_frozen_credentials()
            access_key, secret_key, token = frozen.access_key, frozen.secret_key, frozen.token
            region = region or session.get_config_variable("region")
        return cls(
            endpoint.rstrip("/"),
            access_key,
            secret_key,
            token,
            region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        )


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class S3Bucket:
    def __init__(self, settings: S3Settings, bucket: str, connections: int) -> None:
        self.settings = settings
        self.bucket = bucket
        self._s3 = SignedS3.with_keys(
            settings.endpoint, settings.region, settings.access_key, settings.secret_key, settings.token, connections
        )
        self._stop = threading.Event()  # set by close(): no more backoff waits

    def _send(
        self,
        method: str,
        key: str | None,
        query: dict[str, str],
        headers: dict[str, str],
        operation: str,
        body: Sequence[memoryview | bytes | bytearray] = (),
    ) -> Response:
        if body or method in ("PUT", "POST"):
            headers = {**headers, "content-length": str(sum(len(p) for p in body))}
        path = object_path(self.bucket, key or "")
        return self._s3.send(method, path, query, headers, operation, body, UNSIGNED_PAYLOAD)

    def _call(
        self,
        method: str,
        key: str | None,
        query: dict[str, str],
        headers: dict[str, str],
        operation: str,
        body: Sequence[memoryview | bytes | bytearray] = (),
        *,
        read: bool = True,
    ) -> tuple[dict[str, str], bytes]:
        def once() -> tuple[dict[str, str], bytes]:
            with self._send(method, key, query, headers, operation, body) as response:
                data = response.read_all(_SMALL_BODY_LIMIT) if read and method != "HEAD" else b""
                return response.headers, data

        return self._retried(once)

    def _retried(self, call: Callable[[], T]) -> T:
        try:
            return with_retries_sync(call, RETRIES, lambda: None, self._stop)
        except (ConnectionError, TimeoutError, socket.gaierror) as exc:
            # Say where, and what to check: the bare errno names neither.
            raise ConnectionError(
                f"cannot reach the S3 endpoint {self.settings.endpoint} ({exc}): is the gateway "
                "running there? (endpoint= or AWS_ENDPOINT_URL)"
            ) from exc

    # -- writes -----------------------------------------------------------------------------
    def put(self, key: str, body: Sequence[memoryview | bytes | bytearray], crc64: bytes) -> str:
        headers, _ = self._call("PUT", key, {}, {"x-amz-checksum-crc64nvme": _b64(crc64)}, "PutObject", body)
        return headers.get("etag", "").strip('"')

    def create_upload(self, key: str) -> str:
        _, data = self._call(
            "POST",
            key,
            {"uploads": ""},
            {"x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "FULL_OBJECT"},
            "CreateMultipartUpload",
        )
        upload_id = parse_upload_id(data)
        if not upload_id:
            raise OSError(f"CreateMultipartUpload for {key} returned no UploadId")
        return upload_id

    def upload_part(
        self, key: str, upload_id: str, number: int, body: Sequence[memoryview | bytes | bytearray], crc64: bytes
    ) -> str:
        headers, _ = self._call(
            "PUT",
            key,
            {"partNumber": str(number), "uploadId": upload_id},
            {"x-amz-checksum-crc64nvme": _b64(crc64)},
            "UploadPart",
            body,
        )
        return headers.get("etag", "").strip('"')

    def complete_upload(self, key: str, upload_id: str, parts: list[tuple[int, str, bytes]], full_crc64: str) -> str:
        xml = complete_upload_body((n, etag, {"ChecksumCRC64NVME": _b64(crc)}) for n, etag, crc in parts)
        _, data = self._call(
            "POST",
            key,
            {"uploadId": upload_id},
            {"x-amz-checksum-crc64nvme": full_crc64, "x-amz-checksum-type": "FULL_OBJECT"},
            "CompleteMultipartUpload",
            [xml],
        )
        if b"<Error>" in data:  # S3 may report a failed Complete inside a 200 response
            raise client_error(500, data, "CompleteMultipartUpload failed", "CompleteMultipartUpload")
        return key

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self._call("DELETE", key, {"uploadId": upload_id}, {}, "AbortMultipartUpload")
        except bexc.ClientError:
            pass  # already gone: nothing left to clean

    def delete(self, key: str) -> None:
        self._call("DELETE", key, {}, {}, "DeleteObject")

    # -- reads ------------------------------------------------------------------------------
    def read_into(self, key: str, offset: int, view: memoryview) -> None:
        def once() -> None:
            rng = f"bytes={offset}-{offset + len(view) - 1}"
            try:
                response = self._send("GET", key, {}, {"range": rng}, "GetObject")
            except bexc.ClientError as exc:
                if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 416:
                    raise EOFError(f"{key}: nothing at offset {offset}") from None
                raise
            with response:
                if response.length is not None and response.length < len(view):
                    raise EOFError(f"{key}: {len(view)} bytes asked at {offset}, {response.length} there")
                response.read_into(view)

        if len(view):
            self._retried(once)

    def read_all(self, key: str) -> bytes:
        return self._call("GET", key, {}, {}, "GetObject")[1]

    def exists(self, key: str) -> bool:
        try:
            self._call("HEAD", key, {}, {}, "HeadObject")
            return True
        except bexc.ClientError as exc:
            if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return False
            raise

    def size(self, key: str) -> int:
        headers, _ = self._call("HEAD", key, {}, {}, "HeadObject")
        return int(headers["content-length"])

    def list(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
            if token:
                query["continuation-token"] = token
            _, body = self._call("GET", None, query, {}, "ListObjectsV2")
            objects, token = parse_list_page(body)
            yield from (o["Key"] for o in objects)
            if not token:
                return

    def close(self) -> None:
        self._stop.set()
        self._s3.close()
