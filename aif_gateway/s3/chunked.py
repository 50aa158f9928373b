"""Decoding ``Content-Encoding: aws-chunked`` request bodies.

The three streaming modes of ``x-amz-content-sha256`` share one framing::

    hex-size[;chunk-signature=sig]\\r\\n <data> \\r\\n ... 0[;chunk-signature=sig]\\r\\n
    [name:value\\r\\n ...] [x-amz-trailer-signature:sig\\r\\n] \\r\\n

Signed modes chain each chunk's signature to the previous one, starting from the request's own
signature, so chunks cannot be dropped, reordered or altered. Only data is ever yielded: never
sizes, signatures or trailers.

The work is the data path's decoder (``fsio.engine.ChunkedDecoder``: C, or its Python version),
fed whole buffers of raw body and decoding them in place, so no Python runs per chunk. The
same decoder object serves both ways a body arrives: through aiohttp (``__aiter__`` here), or
read by native code straight from the socket (``s3/transport.py`` hands ``engine`` to it).

Verification completes only at the end: a chunk's data is yielded before its signature (which
follows it) is checked. Consumers therefore write to a temporary file and publish only after
the stream ended without error; the stream raises on the last iteration (``finish``) when the
body was incomplete, and every consumer reads it to its end (the store does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from ..errors import S3Error, chunked_body_error
from ..fsio.engine import ChunkedDecoder, ChunkedError
from .limits import DEFAULT_BODY_STALL_TIMEOUT_S
from .sigv4 import STREAMING_MODES, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER, AuthContext
from .transport import Readable, content_chunks

__all__ = ["AwsChunkedDecoder"]


class AwsChunkedDecoder:
    """``async for data in it`` reads the body from ``reader`` (``RequestTimeout`` when it stalls
    for ``stall_timeout`` seconds); ``decode`` and ``finish`` serve bodies read elsewhere, and
    ``engine`` is the data path's decoder. Errors are S3Error.

    ``trailer_names`` are the lower-case names promised in ``x-amz-trailer``; exactly those
    trailers must arrive. ``decoded_length`` is ``x-amz-decoded-content-length`` (None when the
    client sent none); the data must add up to it."""

    def __init__(
        self,
        reader: Readable,
        auth: AuthContext,
        decoded_length: int | None,
        trailer_names: list[str],
        stall_timeout: float = DEFAULT_BODY_STALL_TIMEOUT_S,
    ) -> None:
        if auth.payload not in STREAMING_MODES:
            raise ValueError(f"{auth.payload} is not an aws-chunked payload mode")
        with_trailers = auth.payload in (STREAMING_UNSIGNED_TRAILER, STREAMING_SIGNED_TRAILER)
        if trailer_names and not with_trailers:
            raise S3Error("InvalidRequest", f"x-amz-trailer is not allowed with x-amz-content-sha256: {auth.payload}")
        self._reader = reader
        self._stall_timeout = stall_timeout
        try:
            self.engine = ChunkedDecoder(
                auth.payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER),
                with_trailers,
                auth.signing_key,
                auth.amz_date,
                auth.scope,
                auth.seed_signature,
                decoded_length,
                [name.lower() for name in trailer_names],
            )
        except ChunkedError as exc:
            raise chunked_body_error(exc.kind, exc.message) from None

    @property
    def trailers(self) -> dict[str, str]:
        """The trailers, set as the body ends."""
        return self.engine.trailers

    def decode(self, raw: bytes | bytearray) -> memoryview:
        """The data in the next piece of the raw body (split anywhere)."""
        buffer = raw if isinstance(raw, bytearray) else bytearray(raw)
        try:
            return memoryview(buffer)[: self.engine.decode(buffer)]
        except ChunkedError as exc:
            raise chunked_body_error(exc.kind, exc.message) from None

    def finish(self) -> None:
        """The raw body ended: S3Error unless it was complete and every check passed."""
        try:
            self.engine.finish()
        except ChunkedError as exc:
            raise chunked_body_error(exc.kind, exc.message) from None

    def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        return self._decode()

    async def _decode(self) -> AsyncIterator[bytes | memoryview]:
        async for raw in content_chunks(self._reader, self._stall_timeout):
            data = self.decode(raw)
            if data:
                yield data
        self.finish()
