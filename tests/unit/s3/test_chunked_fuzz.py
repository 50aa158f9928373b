"""Properties of the aws-chunked decoders, with hypothesis: the C decoder (native/awschunked.c)
and its Python version (aif_gateway/fsio/pychunked.py), driven as tests/unit/native/test_awschunked.py
drives them (each piece inside a larger buffer, so in place means in place).

- Any valid encoding of any payload (chunk boundaries anywhere, sizes in any hex spelling,
  trailers or none, the optional last CRLF left out) decodes to the payload, in both engines,
  however the body is cut into pieces.
- Mutated, truncated or arbitrary bodies give ChunkedError and nothing else, never more output
  bytes than input, and the same outcome (data, verdict, message) in both engines wherever the
  input is cut; the independent streaming decoder (tests/unit/chunked_reference.py) accepts
  and refuses the same bodies.
- In the signed modes, a body that decodes without error decodes to the signed payload.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from hypothesis import event, given
from hypothesis import strategies as st

from aif_gateway import _native
from aif_gateway.fsio import pychunked
from aif_gateway.s3.sigv4 import EMPTY_SHA256, AuthContext

from ..native.test_awschunked import as_s3, reference, run
from .test_chunked import SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER

CONTEXTS = {"unsigned-trailer": UNSIGNED_TRAILER, "signed": SIGNED, "signed-trailer": SIGNED_TRAILER}
TRAILER_NAMES = ["x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-sha256", "x-amz-meta-note"]
TRAILER_VALUES = st.text(st.sampled_from("ABCXYZabcxyz0189+/= "), max_size=48)
# How a test cuts the body: as one piece, every n bytes, or at random places (see run()).
SPLITS = st.one_of(st.just("whole"), st.integers(1, 80), st.tuples(st.just("random"), st.integers(0, 2**30)))


@dataclass(frozen=True)
class Body:
    encoded: bytes
    ctx: AuthContext
    decoded_length: int | None
    names: list[str]  # as declared in x-amz-trailer (any case)
    data: bytes
    trailers: dict[str, str]

    @property
    def signed(self) -> bool:
        return self.ctx is not UNSIGNED_TRAILER


def _sign(ctx: AuthContext, kind: str, previous: str, digest: str) -> str:
    sts = f"{kind}\n{ctx.amz_date}\n{ctx.scope}\n{previous}\n{digest}"
    return hmac.new(ctx.signing_key, sts.encode(), hashlib.sha256).hexdigest()


def encode(
    ctx: AuthContext, chunks: list[bytes], trailers: dict[str, str], size_format: str, closing_line: bool
) -> bytes:
    """An aws-chunked body by the formula in AWS's documentation, chunk boundaries as given."""
    signed = ctx is not UNSIGNED_TRAILER
    previous = ctx.seed_signature
    out = []
    for chunk in [*chunks, b""]:
        header = (size_format % len(chunk)).encode()
        if signed:
            digest = f"{EMPTY_SHA256}\n{hashlib.sha256(chunk).hexdigest()}"
            previous = _sign(ctx, "AWS4-HMAC-SHA256-PAYLOAD", previous, digest)
            header += b";chunk-signature=" + previous.encode()
        out.append(header + b"\r\n")
        if chunk:
            out.append(chunk + b"\r\n")
    lines = [f"{name}:{value}" for name, value in trailers.items()]
    if ctx is SIGNED_TRAILER:
        canonical = "".join(f"{name}:{value.strip()}\n" for name, value in trailers.items())
        lines.append(
            "x-amz-trailer-signature:"
            + _sign(ctx, "AWS4-HMAC-SHA256-TRAILER", previous, hashlib.sha256(canonical.encode()).hexdigest())
        )
    out.extend(f"{line}\r\n".encode() for line in lines)
    if closing_line:
        out.append(b"\r\n")
    return b"".join(out)


@st.composite
def valid_bodies(draw) -> Body:
    mode = draw(st.sampled_from(sorted(CONTEXTS)))
    ctx = CONTEXTS[mode]
    data = draw(st.binary(max_size=3000))
    cuts = sorted(draw(st.sets(st.integers(1, len(data) - 1), max_size=8))) if len(data) > 1 else []
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)]) if b > a]
    trailers: dict[str, str] = {}
    if ctx is not SIGNED:
        for name in draw(st.lists(st.sampled_from(TRAILER_NAMES), unique=True, max_size=3)):
            trailers[name] = draw(TRAILER_VALUES)
    names = [name.upper() if draw(st.booleans()) else name for name in trailers]
    size_format = draw(st.sampled_from(["%x", "%X", "%016x", "%03X"]))
    # Some SDKs end the body without the closing empty line (tolerated in every mode).
    closing_line = draw(st.booleans())
    decoded_length = draw(st.sampled_from([len(data), None]))
    body = encode(ctx, chunks, trailers, size_format, closing_line)
    return Body(body, ctx, decoded_length, names, data, {n: v.strip() for n, v in trailers.items()})


TOKENS = [b"\r", b"\n", b"\r\n", b";", b":", b"0", b"f", b" ", b"0\r\n\r\n", b";chunk-signature=", b"\x00", b"\xff"]


@st.composite
def mutated(draw, body: bytes) -> bytes:
    """``body`` after one to three edits: bit flips, insertions, deletions, cuts, repeats."""
    out = bytearray(body)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "repeat", "replace"]))
        at = draw(st.integers(0, len(out)))
        if op == "flip" and at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            out[at:at] = draw(st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=4)))
        elif op == "delete":
            del out[at : at + draw(st.integers(1, 40))]
        elif op == "truncate":
            del out[at:]
        elif op == "repeat":
            end = min(len(out), at + draw(st.integers(1, 120)))
            out[end:end] = out[at:end]
        elif op == "replace" and at < len(out):
            out[at] = draw(st.sampled_from(b"0123456789abcdefABCDEF\r\n;:-= "))
    return bytes(out)


def _outcomes_agree(encoded: bytes, body: Body, split, other_split):
    """The native and Python outcomes (equal), after checking they agree with each other, with
    another cut of the input and with the streaming decoder."""
    args = (encoded, body.ctx, body.decoded_length, body.names)
    native = run(_native, *args, split=split)
    python = run(pychunked, *args, split=split)
    assert native == python
    assert len(native.data) <= len(encoded)
    other = run(pychunked, *args, split=other_split)
    assert (other.error, other.done, other.trailers) == (native.error, native.done, native.trailers)
    assert native.error or other.data == native.data
    # The streaming decoder agrees on the verdict; its reason may differ where a body has two
    # faults (it reads on to the end before checking the length; the in-place ones do not).
    streaming = reference(*args)
    assert (native.error is None) == (streaming.error is None), (as_s3(native), streaming.error)
    assert native.error or (native.data, native.trailers) == (streaming.data, streaming.trailers)
    event(native.error[0] if native.error else "accepted")
    return native


@given(body=valid_bodies(), split=SPLITS)
def test_valid_bodies_decode_to_their_payload(body, split):
    for engine in (_native, pychunked):
        outcome = run(engine, body.encoded, body.ctx, body.decoded_length, body.names, split)
        assert outcome.error is None, outcome.error
        assert outcome.done and outcome.data == body.data and outcome.received == len(body.data)
        assert outcome.trailers == body.trailers


@given(data=st.data(), body=valid_bodies(), split=SPLITS, other_split=SPLITS)
def test_mutated_bodies_are_refused_alike_by_every_decoder(data, body, split, other_split):
    encoded = data.draw(mutated(body.encoded))
    outcome = _outcomes_agree(encoded, body, split, other_split)
    if body.signed and outcome.error is None:
        # The chain of chunk signatures covers every data byte and the order of the chunks.
        assert outcome.data == body.data


# Bytes, or pieces of the framing in any order: sizes, CRLFs, signatures, trailer lines.
FRAMING_SOUP = st.lists(
    st.one_of(
        st.sampled_from(
            [
                *TOKENS,
                b"3",
                b"a",
                b"abc",
                b"x-amz-checksum-crc32:",
                b"x-amz-trailer-signature:",
                b"chunk-signature=" + b"0" * 64,
            ]
        ),
        st.binary(max_size=3),
    ),
    max_size=40,
).map(b"".join)


@given(
    encoded=st.one_of(st.binary(max_size=300), FRAMING_SOUP),
    mode=st.sampled_from(sorted(CONTEXTS)),
    split=SPLITS,
    other_split=SPLITS,
    decoded_length=st.one_of(st.none(), st.integers(0, 300)),
)
def test_arbitrary_bytes_are_refused_alike_by_every_decoder(encoded, mode, split, other_split, decoded_length):
    body = Body(encoded, CONTEXTS[mode], decoded_length, [], b"", {})
    _outcomes_agree(encoded, body, split, other_split)
