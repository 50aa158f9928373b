"""The pure-Python version of the C aws-chunked decoder (``native/awschunked.c``).

Both engines decode alike, fail alike and give the same messages; the tests compare them. Data is
released before its chunk's signature is checked (a chunk can be larger than any buffer), so a
caller writes it to a temporary file and publishes only once ``done`` is true and no call
raised: ``done`` means every signature, the framing, the trailers and the length held.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

__all__ = ["ChunkedDecoder", "ChunkedError"]

# Limits shared with native/awschunked.h.
MAX_LINE = 4096
MAX_TRAILERS = 8
MAX_TRAILER_NAME = 64
MAX_DATE_SCOPE = 256

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_TRAILER_SIGNATURE = "x-amz-trailer-signature"
_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_CHUNK_SIGNATURE = re.compile(rb"chunk-signature=([0-9a-f]{64})")
_TRAILER_NAME = re.compile(r"[a-z0-9-]+")
_FRAMING = "Malformed aws-chunked body: "

_HEADER, _DATA, _DATA_END, _TRAILER, _END, _ERROR = range(6)


class ChunkedError(ValueError):
    """A refused aws-chunked body.

    ``kind`` says which S3 error it is: ``framing`` (S3 InvalidRequest), ``incomplete``
    (IncompleteBody), ``signature`` (SignatureDoesNotMatch) or ``trailer`` (InvalidRequest).
    ``message`` is the S3 message, the same as ``aif_gateway/s3/chunked.py`` gives.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ChunkedDecoder:
    """Incremental, in-place decoder of one aws-chunked body (see the module docstring); its
    arguments as in ``ChunkedDecoder`` of ``aif_gateway/_native.pyi``."""

    def __init__(
        self,
        signed: bool,
        with_trailers: bool,
        signing_key: bytes,
        amz_date: str,
        scope: str,
        seed_signature: str,
        decoded_length: int | None,
        trailer_names: Iterable[str],
    ) -> None:
        if decoded_length is not None and decoded_length < 0:
            raise ValueError("decoded_length must be None or >= 0")
        if signed and len(signing_key) != 32:
            raise ValueError("signing_key must be 32 bytes in signed modes")
        names = [name.lower() for name in trailer_names]
        self._signed = bool(signed)
        self._with_trailers = bool(with_trailers)
        self._decoded_length = decoded_length
        self._phase = _HEADER
        self._error: ChunkedError | None = None
        self._line = bytearray()
        self._crlf = b""
        self._chunk_left = 0
        self._chunk_hash = hashlib.sha256()
        self._chunk_signature = ""
        self._received = 0
        self._trailers: dict[str, str] = {}
        self._canonical: list[str] = []
        self._trailer_signature: str | None = None
        if names and not self._with_trailers:
            raise ChunkedError("trailer", "x-amz-trailer is not allowed in a streaming mode without trailers.")
        if len(names) > MAX_TRAILERS:
            raise ChunkedError("trailer", f"x-amz-trailer may name at most {MAX_TRAILERS} trailers.")
        if any(len(name.encode()) > MAX_TRAILER_NAME for name in names):
            raise ChunkedError("trailer", f"x-amz-trailer names a trailer longer than {MAX_TRAILER_NAME} bytes.")
        self._names = names
        self._key = bytes(signing_key)
        self._date_scope = f"{amz_date}\n{scope}\n"
        self._previous_signature = seed_signature
        if signed and (len(seed_signature.encode()) != 64 or len(self._date_scope.encode()) >= MAX_DATE_SCOPE):
            raise ValueError("signed modes need a 64-digit seed signature and a short amz_date and scope")

    # -- public --------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """The whole body arrived and every check passed."""
        return self._phase == _END

    @property
    def received(self) -> int:
        """Data bytes decoded so far."""
        return self._received

    @property
    def trailers(self) -> dict[str, str]:
        """Trailers so far: lower-case name -> value."""
        return dict(self._trailers)

    def decode(self, buffer: bytearray | memoryview) -> int:
        """Move the data bytes of ``buffer`` (writable; a piece of the body, split anywhere) to its
        front and return their count."""
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("decode needs a writable buffer")
        if self._error is not None:
            raise self._error
        try:
            return self._feed(view)
        except ChunkedError as exc:
            self._phase, self._error = _ERROR, exc
            raise

    def finish(self) -> None:
        """The body ended: ``ChunkedError`` unless it is complete."""
        if self._error is not None:
            raise self._error
        try:
            self._finish()
        except ChunkedError as exc:
            self._phase, self._error = _ERROR, exc
            raise

    # -- the state machine -----------------------------------------------------------------------

    def _feed(self, view: memoryview) -> int:
        i = out = 0
        n = len(view)
        while i < n:
            if self._phase in (_HEADER, _TRAILER):
                # Look no further than the line may still grow (plus its LF).
                window = bytes(view[i : i + MAX_LINE + 2 - len(self._line)])
                lf = window.find(b"\n")
                take = lf if lf >= 0 else len(window)
                if len(self._line) + take > MAX_LINE + 1:  # the line so far holds its CR too
                    raise _framing("line too long")
                self._line += window[:take]
                i += take
                if lf >= 0:
                    i += 1
                    self._on_line()
            elif self._phase == _DATA:
                take = min(n - i, self._chunk_left)
                if out != i:
                    view[out : out + take] = view[i : i + take]
                if self._signed:
                    self._chunk_hash.update(view[out : out + take])
                out += take
                i += take
                self._chunk_left -= take
                self._received += take
                if self._chunk_left == 0:
                    self._phase, self._crlf = _DATA_END, b""
            elif self._phase == _DATA_END:
                take = min(2 - len(self._crlf), n - i)
                self._crlf += bytes(view[i : i + take])
                i += take
                if len(self._crlf) < 2:
                    continue
                if self._crlf != b"\r\n":
                    raise _framing("chunk data is not followed by CRLF")
                if self._signed:
                    self._verify_chunk(self._chunk_hash.hexdigest())
                self._phase = _HEADER
            else:  # _END
                raise _framing("data after the end of the body")
        return out

    def _finish(self) -> None:
        if self._phase == _HEADER:
            if self._line:
                raise _incomplete("The aws-chunked body ended in the middle of a line.")
            raise _incomplete("The aws-chunked body ended before its final chunk.")
        if self._phase in (_DATA, _DATA_END):
            raise _incomplete("The aws-chunked body ended in the middle of a chunk.")
        if self._phase == _TRAILER:
            if self._line:
                raise _incomplete("The aws-chunked body ended in the middle of a line.")
            self._end_of_trailers()  # the end of input stands for the closing line some clients omit

    def _on_line(self) -> None:
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(b"\r"):
            raise _framing("line not terminated by CRLF")
        if self._phase == _HEADER:
            self._on_chunk_header(line[:-1])
        else:
            self._on_trailer_line(line[:-1])

    def _on_chunk_header(self, line: bytes) -> None:
        size_text, sep, extension = line.partition(b";")
        if not _SIZE.fullmatch(size_text):
            raise _framing(f"bad chunk size {size_text[:32]!r}")
        size = int(size_text, 16)
        if not self._signed:
            if sep:
                raise _framing("chunk extensions are not expected in unsigned streaming mode")
        else:
            match = _CHUNK_SIGNATURE.fullmatch(extension)
            if match is None:
                raise _framing("each chunk must carry chunk-signature=<64 hex digits>")
            self._chunk_signature = match.group(1).decode("ascii")
        if size == 0:
            if self._signed:
                self._verify_chunk(_EMPTY_SHA256)
            self._phase = _TRAILER
            return
        if self._decoded_length is not None and self._received + size > self._decoded_length:
            raise _incomplete("The aws-chunked body is longer than x-amz-decoded-content-length.")
        self._chunk_hash = hashlib.sha256()
        self._chunk_left = size
        self._phase = _DATA

    def _on_trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_of_trailers()
            return
        if not self._with_trailers:
            raise _framing("trailers are not allowed in this streaming mode")
        name_bytes, sep, value_bytes = line.partition(b":")
        name = name_bytes.decode("latin-1").strip().lower()
        value = value_bytes.decode("latin-1").strip()
        if not sep or not _TRAILER_NAME.fullmatch(name):
            raise _framing(f"bad trailer line {line[:64]!r}")
        if name == _TRAILER_SIGNATURE and self._signed:
            if self._trailer_signature is not None:
                raise _framing("x-amz-trailer-signature sent twice")
            self._trailer_signature = value
            return
        if name not in self._names:
            raise ChunkedError("trailer", f"The trailer {name} was not declared in x-amz-trailer.")
        if name in self._trailers:
            raise _framing(f"trailer {name} sent twice")
        self._trailers[name] = value
        self._canonical.append(f"{name}:{value}\n")

    def _end_of_trailers(self) -> None:
        missing = [name for name in self._names if name not in self._trailers]
        if missing:
            raise ChunkedError(
                "trailer", f"The trailer(s) {', '.join(missing)} declared in x-amz-trailer were not sent."
            )
        if self._signed and self._with_trailers:
            if self._trailer_signature is None:
                raise ChunkedError("trailer", "The signed trailer is missing x-amz-trailer-signature.")
            self._verify_trailer(self._trailer_signature)
        if self._decoded_length is not None and self._received != self._decoded_length:
            raise _incomplete(
                f"The aws-chunked body holds {self._received} bytes; x-amz-decoded-content-length says "
                f"{self._decoded_length}."
            )
        self._phase = _END

    # -- signatures ---------------------------------------------------------------------------

    def _sign(self, kind: str, digest_lines: str) -> str:
        sts = f"{kind}\n{self._date_scope}{self._previous_signature}\n{digest_lines}"
        return hmac.new(self._key, sts.encode("utf-8"), hashlib.sha256).hexdigest()

    def _verify_chunk(self, data_sha256: str) -> None:
        expected = self._sign("AWS4-HMAC-SHA256-PAYLOAD", f"{_EMPTY_SHA256}\n{data_sha256}")
        if not hmac.compare_digest(expected, self._chunk_signature):
            raise ChunkedError("signature", "The chunk signature does not match the chunk's data.")
        self._previous_signature = expected

    def _verify_trailer(self, provided: str) -> None:
        digest = hashlib.sha256("".join(self._canonical).encode("latin-1")).hexdigest()
        expected = self._sign("AWS4-HMAC-SHA256-TRAILER", digest)
        if not hmac.compare_digest(expected.encode(), provided.encode("latin-1")):
            raise ChunkedError("signature", "The trailer signature does not match the trailers.")


def _framing(message: str) -> ChunkedError:
    return ChunkedError("framing", _FRAMING + message)


def _incomplete(message: str) -> ChunkedError:
    return ChunkedError("incomplete", message)
