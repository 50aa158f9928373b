"""The gateway's first aws-chunked decoder (pure Python, asyncio, chunk by chunk), kept as an
independent oracle for the data path's in-place decoders (native/awschunked.c and
aif_gateway/fsio/pychunked.py), which replaced it in the gateway. Not used by the gateway.

Decoding ``Content-Encoding: aws-chunked`` request bodies.

The three streaming modes of ``x-amz-content-sha256`` share one framing::

    hex-size[;chunk-signature=sig]\\r\\n <data> \\r\\n ... 0[;chunk-signature=sig]\\r\\n
    [name:value\\r\\n ...] [x-amz-trailer-signature:sig\\r\\n] \\r\\n

Signed modes chain each chunk's signature to the previous one, starting from the request's own
signature, so chunks cannot be dropped, reordered or altered. Only data is ever yielded: never
sizes, signatures or trailers.

Every check on the body (signatures, framing, length, trailers) completes before the last byte of
the body is yielded, so a consumer that stops once it has the bytes it expected still never gets
a complete body that was not verified. Chunk data is yielded in pieces of at most
``PIECE_SIZE`` bytes; the last piece of each chunk is held back until that chunk's signature is
checked and the next chunk header has been read.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp.http_exceptions import LineTooLong

from aif_gateway.errors import S3Error
from aif_gateway.s3.sigv4 import (
    EMPTY_SHA256,
    STREAMING_MODES,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    STREAMING_UNSIGNED_TRAILER,
    AuthContext,
    signatures_equal,
)

PIECE_SIZE = 1024 * 1024
TRAILER_SIGNATURE = "x-amz-trailer-signature"
_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_CHUNK_SIGNATURE = re.compile(rb"chunk-signature=([0-9a-f]{64})")
_TRAILER_NAME = re.compile(r"[a-z0-9-]+")


class Reader(Protocol):
    """What aiohttp's StreamReader and asyncio's StreamReader both offer."""

    async def readline(self) -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    async def read(self, n: int = -1) -> bytes: ...


def _framing_error(message: str) -> S3Error:
    return S3Error("InvalidRequest", f"Malformed aws-chunked body: {message}")


def _incomplete(message: str) -> S3Error:
    return S3Error("IncompleteBody", message)


class ReferenceDecoder:
    """Yields the decoded bytes of an aws-chunked body; ``trailers`` is set once it ends.

    ``trailer_names`` are the lower-case names promised in ``x-amz-trailer``; exactly those
    trailers must arrive. ``decoded_length`` is ``x-amz-decoded-content-length`` (None when the
    client sent none); the data must add up to it.
    """

    def __init__(self, reader: Reader, auth: AuthContext, decoded_length: int | None, trailer_names: list[str]) -> None:
        if auth.payload not in STREAMING_MODES:
            raise ValueError(f"{auth.payload} is not an aws-chunked payload mode")
        self._reader = reader
        self._auth = auth
        self._signed = auth.payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
        self._with_trailers = auth.payload in (STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED_TRAILER)
        self._decoded_length = decoded_length
        self._trailer_names = [name.lower() for name in trailer_names]
        self._previous_signature = auth.seed_signature
        self.trailers: dict[str, str] = {}
        if self._trailer_names and not self._with_trailers:
            raise S3Error("InvalidRequest", f"x-amz-trailer is not allowed with x-amz-content-sha256: {auth.payload}")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._decode()

    async def _decode(self) -> AsyncIterator[bytes]:
        received = 0
        held = b""  # the last piece of the previous chunk, released once the next header is read
        while True:
            size, signature = await self._read_chunk_header()
            if size == 0:
                self._verify_chunk(signature, EMPTY_SHA256)
                break
            if self._decoded_length is not None and received + size > self._decoded_length:
                raise _incomplete("The aws-chunked body is longer than x-amz-decoded-content-length.")
            if held:
                yield held
                held = b""
            received += size
            hasher = hashlib.sha256()
            remaining = size
            while remaining > PIECE_SIZE:
                piece = await self._read_exactly(PIECE_SIZE)
                hasher.update(piece)
                remaining -= PIECE_SIZE
                yield piece
            held = await self._read_exactly(remaining)
            hasher.update(held)
            if await self._read_exactly(2) != b"\r\n":
                raise _framing_error("chunk data is not followed by CRLF")
            self._verify_chunk(signature, hasher.hexdigest())
        await self._read_trailers()
        if await self._reader.read(1):
            raise _framing_error("data after the end of the body")
        if self._decoded_length is not None and received != self._decoded_length:
            raise _incomplete(
                f"The aws-chunked body holds {received} bytes; x-amz-decoded-content-length says "
                f"{self._decoded_length}."
            )
        if held:
            yield held

    # -- framing ------------------------------------------------------------------------------

    async def _read_exactly(self, n: int) -> bytes:
        try:
            return await self._reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise _incomplete("The aws-chunked body ended in the middle of a chunk.") from None

    async def _read_line(self) -> bytes | None:
        """One CRLF-terminated line without its CRLF; None at a clean end of the stream."""
        try:
            line = await self._reader.readline()
        except (ValueError, LineTooLong):  # over the line limit of asyncio's or aiohttp's reader
            raise _framing_error("line too long") from None
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise _incomplete("The aws-chunked body ended in the middle of a line.")
        if not line.endswith(b"\r\n"):
            raise _framing_error("line not terminated by CRLF")
        return line[:-2]

    async def _read_chunk_header(self) -> tuple[int, str | None]:
        line = await self._read_line()
        if line is None:
            raise _incomplete("The aws-chunked body ended before its final chunk.")
        size_text, sep, extension = line.partition(b";")
        if not _SIZE.fullmatch(size_text):
            raise _framing_error(f"bad chunk size {size_text[:32]!r}")
        if not self._signed:
            if sep:
                raise _framing_error("chunk extensions are not expected in unsigned streaming mode")
            return int(size_text, 16), None
        match = _CHUNK_SIGNATURE.fullmatch(extension)
        if match is None:
            raise _framing_error("each chunk must carry chunk-signature=<64 hex digits>")
        return int(size_text, 16), match.group(1).decode("ascii")

    async def _read_trailers(self) -> None:
        trailer_signature = None
        canonical: list[str] = []
        while True:
            line = await self._read_line()
            if not line:  # the closing empty line, or EOF where it belongs (some clients omit it)
                break
            if not self._with_trailers:
                raise _framing_error("trailers are not allowed in this streaming mode")
            name_bytes, sep, value_bytes = line.partition(b":")
            name = name_bytes.decode("latin-1").strip().lower()
            value = value_bytes.decode("latin-1").strip()
            if not sep or not _TRAILER_NAME.fullmatch(name):
                raise _framing_error(f"bad trailer line {line[:64]!r}")
            if name == TRAILER_SIGNATURE and self._signed:
                if trailer_signature is not None:
                    raise _framing_error("x-amz-trailer-signature sent twice")
                trailer_signature = value
                continue
            if name not in self._trailer_names:
                raise S3Error("InvalidRequest", f"The trailer {name} was not declared in x-amz-trailer.")
            if name in self.trailers:
                raise _framing_error(f"trailer {name} sent twice")
            self.trailers[name] = value
            canonical.append(f"{name}:{value}\n")
        missing = [name for name in self._trailer_names if name not in self.trailers]
        if missing:
            raise S3Error(
                "InvalidRequest", f"The trailer(s) {', '.join(missing)} declared in x-amz-trailer were not sent."
            )
        if self._signed and self._with_trailers:
            if trailer_signature is None:
                raise S3Error("InvalidRequest", "The signed trailer is missing x-amz-trailer-signature.")
            self._verify_trailer(trailer_signature, "".join(canonical))

    # -- signatures ---------------------------------------------------------------------------

    def _sign(self, kind: str, digest_lines: str) -> str:
        auth = self._auth
        sts = f"{kind}\n{auth.amz_date}\n{auth.scope}\n{self._previous_signature}\n{digest_lines}"
        return hmac.new(auth.signing_key, sts.encode("ascii"), hashlib.sha256).hexdigest()

    def _verify_chunk(self, provided: str | None, data_sha256: str) -> None:
        if provided is None:
            return
        expected = self._sign("AWS4-HMAC-SHA256-PAYLOAD", f"{EMPTY_SHA256}\n{data_sha256}")
        if not signatures_equal(expected, provided):
            raise S3Error("SignatureDoesNotMatch", "The chunk signature does not match the chunk's data.")
        self._previous_signature = expected

    def _verify_trailer(self, provided: str, canonical_trailers: str) -> None:
        digest = hashlib.sha256(canonical_trailers.encode("latin-1")).hexdigest()
        expected = self._sign("AWS4-HMAC-SHA256-TRAILER", digest)
        if not signatures_equal(expected, provided):
            raise S3Error("SignatureDoesNotMatch", "The trailer signature does not match the trailers.")
