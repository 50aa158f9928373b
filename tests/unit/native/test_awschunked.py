"""In-place aws-chunked decoding: the C decoder (native/awschunked.c) and its Python version
(aif_gateway/fsio/pychunked.py) against each other, against the gateway's earlier streaming
decoder (tests/unit/chunked_reference.py, an independent implementation), against botocore's
bodies and against AWS's documented signatures."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

import pytest
from botocore.httpchecksum import CrtCrc32cChecksum, Sha256Checksum

from aif_gateway import _native
from aif_gateway.checksums import b64, digest_of
from aif_gateway.errors import S3Error
from aif_gateway.fsio import engine as chosen_engine
from aif_gateway.fsio import pychunked
from aif_gateway.s3.sigv4 import AuthContext, derive_signing_key

# Body builders and the streaming decoder's harness live with chunked.py's own tests.
from ..chunked_reference import ReferenceDecoder
from ..s3.test_chunked import (
    DATA,
    DOC_DATA,
    DOC_SECRET,
    IDENTITY,
    SIGNED,
    SIGNED_TRAILER,
    UNSIGNED_TRAILER,
    _doc_body,
    auth,
    botocore_body,
    signed_body,
)
from ..s3.test_chunked import decode as stream_decode

ENGINES = {"native": _native, "python": pychunked}
CRC32 = "x-amz-checksum-crc32"
# What aif_gateway/s3 answers for each kind of refusal.
S3_CODES = {
    "framing": "InvalidRequest",
    "trailer": "InvalidRequest",
    "incomplete": "IncompleteBody",
    "signature": "SignatureDoesNotMatch",
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return ENGINES[request.param]


@dataclass
class Outcome:
    data: bytes
    done: bool
    received: int
    trailers: dict[str, str]
    error: tuple[str, str] | None  # (kind, message)


def pieces(body: bytes, split) -> list[bytes]:
    """body cut as `split` says: "whole", every n bytes, or ("random", seed)."""
    if split == "whole":
        return [body]
    if isinstance(split, int):
        return [body[i : i + split] for i in range(0, len(body), split)]
    rng = random.Random(split[1])
    out, i = [], 0
    while i < len(body):
        n = rng.choice([1, 2, 3, rng.randrange(1, 200), rng.randrange(1, 70_000)])
        out.append(body[i : i + n])
        i += n
    return out


def make_decoder(engine, ctx: AuthContext, decoded_length=None, names=()):
    signed = ctx.payload in (SIGNED.payload, SIGNED_TRAILER.payload)
    with_trailers = ctx.payload in (UNSIGNED_TRAILER.payload, SIGNED_TRAILER.payload)
    return engine.ChunkedDecoder(
        signed, with_trailers, ctx.signing_key, ctx.amz_date, ctx.scope, ctx.seed_signature, decoded_length, list(names)
    )


def run(engine, body, ctx, decoded_length=None, names=(), split="whole", finish=True) -> Outcome:
    """Feed body piece by piece, each inside a larger buffer (so in place means in place)."""
    decoder = make_decoder(engine, ctx, decoded_length, names)
    out = bytearray()
    error = None
    try:
        for piece in pieces(body, split):
            buffer = bytearray(b"<<" + piece + b">>")
            n = decoder.decode(memoryview(buffer)[2:-2])
            assert 0 <= n <= len(piece)
            assert buffer[:2] == b"<<" and buffer[-2:] == b">>"
            out += buffer[2 : 2 + n]
        if finish:
            decoder.finish()
    except engine.ChunkedError as exc:
        error = (exc.kind, exc.message)
        assert str(exc) == exc.message
        assert not decoder.done
    return Outcome(bytes(out), decoder.done, decoder.received, decoder.trailers, error)


def reference(body, ctx, decoded_length=None, names=()) -> Outcome:
    """What the earlier streaming decoder makes of the same body (error as (S3 code, message))."""
    try:
        got, trailers = stream_decode(body, ctx, decoded_length, names, split_every=97, decoder_cls=ReferenceDecoder)
    except S3Error as exc:
        return Outcome(b"", False, 0, {}, (exc.code, exc.message))
    data = b"".join(got)
    return Outcome(data, True, len(data), trailers, None)


def as_s3(outcome: Outcome) -> tuple[str, str] | None:
    return None if outcome.error is None else (S3_CODES[outcome.error[0]], outcome.error[1])


def decodes(engine, body, ctx, data, decoded_length=None, names=(), split="whole") -> Outcome:
    outcome = run(engine, body, ctx, decoded_length, names, split)
    assert outcome.error is None
    assert outcome.data == data
    assert outcome.done and outcome.received == len(data)
    return outcome


SPLITS = ["whole", 1, 2, 7, 4096, 4097, ("random", 1), ("random", 2)]


# -- valid bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("size", [0, 1, 4095, 10_000])
def test_botocore_unsigned_trailer_body(engine, size, split):
    data = DATA[:size]
    body = botocore_body(data, chunk_size=4096)
    outcome = decodes(engine, body, UNSIGNED_TRAILER, data, len(data), [CRC32], split)
    assert outcome.trailers == {CRC32: b64(digest_of("CRC32", data))}


@pytest.mark.parametrize(
    "checksum_cls, name, algorithm",
    [(CrtCrc32cChecksum, "x-amz-checksum-crc32c", "CRC32C"), (Sha256Checksum, "x-amz-checksum-sha256", "SHA256")],
)
def test_botocore_trailer_algorithms(engine, checksum_cls, name, algorithm):
    body = botocore_body(DATA, 10_000, checksum_cls, name)
    outcome = decodes(engine, body, UNSIGNED_TRAILER, DATA, None, [name.upper()], ("random", 3))
    assert outcome.trailers == {name: b64(digest_of(algorithm, DATA))}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("chunk_size", [1, 7, 8192, 60_000])
def test_signed_body(engine, chunk_size, split):
    data = DATA[:300] if chunk_size < 8 else DATA[:20_000]
    decodes(engine, signed_body(data, chunk_size, SIGNED), SIGNED, data, len(data), (), split)


@pytest.mark.parametrize("split", SPLITS)
def test_signed_trailer_body(engine, split):
    data = DATA[:20_000]
    trailers = {"x-amz-checksum-crc32c": b64(digest_of("CRC32C", data))}
    body = signed_body(data, 8192, SIGNED_TRAILER, trailers)
    outcome = decodes(engine, body, SIGNED_TRAILER, data, len(data), ["x-amz-checksum-crc32c"], split)
    assert outcome.trailers == trailers


EMPTY_BODIES = {
    "signed": (signed_body(b"", 10, SIGNED), SIGNED, []),
    "signed-trailer": (signed_body(b"", 10, SIGNED_TRAILER, {}), SIGNED_TRAILER, []),
    "unsigned": (botocore_body(b"", 4096), UNSIGNED_TRAILER, [CRC32]),
}


@pytest.mark.parametrize("mode", sorted(EMPTY_BODIES))
def test_empty_body(engine, mode):
    body, ctx, names = EMPTY_BODIES[mode]
    decodes(engine, body, ctx, b"", 0, names, 1)


DOC_KEY = derive_signing_key(DOC_SECRET, "20130524", "us-east-1", "s3")


def _doc_ctx(payload, seed):
    return AuthContext(IDENTITY, payload, None, DOC_KEY, "20130524T000000Z", "20130524/us-east-1/s3/aws4_request", seed)


def test_aws_documented_signed_body(engine):
    # AWS's "Transferring Payload in Multiple Chunks" example: signatures computed by AWS.
    ctx = _doc_ctx(SIGNED.payload, "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
    body = _doc_body(
        [
            b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            b"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
        ]
    )
    decodes(engine, body, ctx, DOC_DATA, 66560, (), ("random", 4))


def test_aws_documented_signed_trailer_body(engine):
    ctx = _doc_ctx(SIGNED_TRAILER.payload, "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e")
    trailer = (
        b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
        b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n"
    )
    body = _doc_body(
        [
            b"b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            b"1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            b"2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
        ],
        trailer,
    )
    outcome = decodes(engine, body, ctx, DOC_DATA, 66560, ["x-amz-checksum-crc32c"], 777)
    assert outcome.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    tampered = run(engine, body.replace(b"sOO8/Q==", b"sOO8/A=="), ctx, 66560, ["x-amz-checksum-crc32c"])
    assert tampered.error == ("signature", "The trailer signature does not match the trailers.")


def test_megabyte_buffers_and_chunks(engine):
    # The PUT path's buffers (~1 MiB) over 1 MiB chunks: the native decoder drops the GIL here.
    data = random.Random(5).randbytes(3 * (1 << 20) + 5)
    decodes(engine, signed_body(data, 1 << 20, SIGNED), SIGNED, data, len(data), (), 1 << 20)


def test_native_decoders_run_in_parallel_threads():
    data = random.Random(6).randbytes(2 << 20)
    body = signed_body(data, 1 << 16, SIGNED)
    results = [None] * 4

    def work(i):
        results[i] = run(_native, body, SIGNED, len(data), (), 1 << 20)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.data == data and r.done for r in results)


# -- how a body may end ---------------------------------------------------------------------------


def test_done_once_the_closing_line_arrives(engine):
    body = botocore_body(b"abc", 4096)
    decoder = make_decoder(engine, UNSIGNED_TRAILER, 3, [CRC32])
    buffer = bytearray(body[:-1])
    assert decoder.decode(buffer) == 3 and bytes(buffer[:3]) == b"abc"
    assert not decoder.done and decoder.received == 3
    assert decoder.decode(bytearray(body[-1:])) == 0
    assert decoder.done
    decoder.finish()
    assert decoder.done and decoder.trailers == {CRC32: b64(digest_of("CRC32", b"abc"))}


@pytest.mark.parametrize("ctx", [UNSIGNED_TRAILER, SIGNED], ids=["unsigned", "signed"])
def test_body_may_end_after_the_final_chunk(engine, ctx):
    # The AWS SDK for JavaScript sends "0\r\n" and nothing more when it has no checksum to add.
    body = b"5\r\nhello\r\n0\r\n" if ctx is UNSIGNED_TRAILER else signed_body(b"hello", 5, ctx)[:-2]
    decoder = make_decoder(engine, ctx, 5)
    assert decoder.decode(bytearray(body)) == 5
    assert not decoder.done
    decoder.finish()
    assert decoder.done


def test_missing_final_crlf_after_trailers_is_tolerated(engine):
    body = botocore_body(b"abc", 4096)
    outcome = run(engine, body[:-2], UNSIGNED_TRAILER, 3, [CRC32], 1)
    assert outcome.done and outcome.data == b"abc" and CRC32 in outcome.trailers


def test_signed_trailers_may_not_end_early(engine):
    body = signed_body(b"abc", 10, SIGNED_TRAILER, {CRC32: "NSRBwg=="})
    cut = body[: body.index(b"x-amz-trailer-signature")]
    assert run(engine, cut, SIGNED_TRAILER, 3, [CRC32]).error == (
        "trailer",
        "The signed trailer is missing x-amz-trailer-signature.",
    )


def test_data_is_released_before_its_chunk_is_verified_but_never_done(engine):
    # The caller writes released data to a temporary file and publishes it only once done.
    body = bytearray(signed_body(b"x" * 100 + b"y" * 100, 100, SIGNED))
    body[body.index(b"y")] = ord("z")
    outcome = run(engine, bytes(body), SIGNED, 200, (), split=1)  # each byte is handed out as it comes
    assert outcome.error[0] == "signature"
    assert outcome.data == b"x" * 100 + b"z" + b"y" * 99
    assert not outcome.done


def test_errors_are_sticky(engine):
    decoder = make_decoder(engine, UNSIGNED_TRAILER)
    with pytest.raises(engine.ChunkedError) as first:
        decoder.decode(bytearray(b"zz\r\n"))
    for call in (lambda: decoder.decode(bytearray(b"3\r\nabc\r\n")), decoder.finish):
        with pytest.raises(engine.ChunkedError) as again:
            call()
        assert (again.value.kind, again.value.message) == (first.value.kind, first.value.message)
    assert not decoder.done


def test_length_is_checked_when_the_closing_line_arrives(engine):
    # So done never stands for a body of the wrong length, even before finish(). (chunked.py
    # reads on to the end first: with bytes after the closing line it reports those instead.)
    decoder = make_decoder(engine, UNSIGNED_TRAILER, 4)
    with pytest.raises(engine.ChunkedError) as info:
        decoder.decode(bytearray(b"3\r\nabc\r\n0\r\n\r\n"))
    assert info.value.kind == "incomplete" and not decoder.done


def test_data_after_the_end(engine):
    decoder = make_decoder(engine, UNSIGNED_TRAILER, 3)
    assert decoder.decode(bytearray(b"3\r\nabc\r\n0\r\n\r\n")) == 3
    assert decoder.done
    with pytest.raises(engine.ChunkedError) as info:
        decoder.decode(bytearray(b"x"))
    assert info.value.kind == "framing" and not decoder.done


# -- refusals, with chunked.py's codes and messages --------------------------------------------------


def _swap_chunks():
    # Each chunk keeps a valid signature of its own bytes; only the chain shows the reordering.
    body = signed_body(b"A" * 4096 + b"B" * 4096, 4096, SIGNED)
    second = body.index(b"1000;", 1)
    final = body.index(b"0;chunk-signature=", second + 5 + 4096)
    return body[second:final] + body[:second] + body[final:]


def _drop_middle_chunk():
    body = signed_body(b"A" * 30, 10, SIGNED)
    second = body.index(b"a;", 1)
    third = body.index(b"a;", second + 1)
    return body[:second] + body[third:]


def _flip(body, at):
    out = bytearray(body)
    out[at] ^= 1
    return bytes(out)


CRC_ABC = b64(digest_of("CRC32", b"abc"))
SIGNED_ABC = signed_body(b"abc", 10, SIGNED)
SIGNED_ABC_TRAILER = signed_body(b"abc", 10, SIGNED_TRAILER, {CRC32: CRC_ABC})
TRAILER_SIGNATURE_LINE = SIGNED_ABC_TRAILER[SIGNED_ABC_TRAILER.index(b"x-amz-trailer-signature:") : -2]
UNSIGNED = UNSIGNED_TRAILER

REFUSALS = {
    # name: (body, ctx, decoded_length, trailer names, kind)
    "changed data byte": (_flip(signed_body(DATA, 4096, SIGNED), 5000), SIGNED, len(DATA), [], "signature"),
    "wrong seed": (signed_body(DATA[:100], 40, auth(SIGNED.payload, seed="b" * 64)), SIGNED, 100, [], "signature"),
    "swapped chunks": (_swap_chunks(), SIGNED, 8192, [], "signature"),
    "dropped middle chunk": (_drop_middle_chunk(), SIGNED, None, [], "signature"),
    "dropped final chunk": (SIGNED_ABC[: SIGNED_ABC.index(b"0;chunk")], SIGNED, 3, [], "incomplete"),
    "final chunk signature": (_flip(SIGNED_ABC, -5), SIGNED, 3, [], "signature"),
    "no chunk signature": (b"3\r\nabc\r\n0\r\n\r\n", SIGNED, 3, [], "framing"),
    "short chunk signature": (b"3;chunk-signature=abc\r\nabc\r\n0\r\n\r\n", SIGNED, 3, [], "framing"),
    "upper-case chunk signature": (
        SIGNED_ABC[:20] + SIGNED_ABC[20:80].upper() + SIGNED_ABC[80:],
        SIGNED,
        3,
        [],
        "framing",
    ),
    "bad hex": (b"zz\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "plus sign": (b"+3\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "0x prefix": (b"0x3\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "17 hex digits": (b"00000000000000003\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "quote in size": (b"3'\"\x00\xff\\\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "empty size": (b"\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "bare LF": (b"3\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "missing CRLF after data": (b"3\r\nabcX\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "chunk into next header": (b"4\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "extension in unsigned mode": (
        b"3;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n0\r\n\r\n",
        UNSIGNED,
        None,
        [],
        "framing",
    ),
    "data after the end": (b"3\r\nabc\r\n0\r\n\r\nextra", UNSIGNED, None, [], "framing"),
    "longer than decoded length": (b"3\r\nabc\r\n0\r\n\r\n", UNSIGNED, 2, [], "incomplete"),
    "shorter than decoded length": (b"3\r\nabc\r\n0\r\n\r\n", UNSIGNED, 4, [], "incomplete"),
    "cut inside a chunk": (b"3\r\nab", UNSIGNED, None, [], "incomplete"),
    "cut inside the CRLF after data": (b"3\r\nabc\r", UNSIGNED, None, [], "incomplete"),
    "no final chunk": (b"3\r\nabc\r\n", UNSIGNED, None, [], "incomplete"),
    "cut inside a line": (b"3\r\nabc\r\n0", UNSIGNED, None, [], "incomplete"),
    "cut inside a trailer": (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AA", UNSIGNED, None, [CRC32], "incomplete"),
    "empty body": (b"", UNSIGNED, None, [], "incomplete"),
    "size beyond the body": (b"ff\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "incomplete"),
    "overlong header line": (b"3" + b"0" * 300_000 + b"\r\nabc\r\n0\r\n\r\n", UNSIGNED, None, [], "framing"),
    "undeclared trailer": (botocore_body(b"abc", 4096), UNSIGNED, 3, ["x-amz-checksum-crc32c"], "trailer"),
    "trailer with none declared": (botocore_body(b"abc", 4096), UNSIGNED, 3, [], "trailer"),
    "missing trailer": (b"3\r\nabc\r\n0\r\n\r\n", UNSIGNED, 3, [CRC32], "trailer"),
    "missing trailers": (b"3\r\nabc\r\n0\r\n\r\n", UNSIGNED, 3, [CRC32, "X-Amz-Checksum-Sha256"], "trailer"),
    "duplicate trailer": (
        b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:A\r\nx-amz-checksum-crc32:A\r\n\r\n",
        UNSIGNED,
        3,
        [CRC32],
        "framing",
    ),
    "trailer without colon": (b"3\r\nabc\r\n0\r\ngarbage line\r\n\r\n", UNSIGNED, None, [], "framing"),
    "trailer with a bad name": (b"3\r\nabc\r\n0\r\nx_amz:1\r\n\r\n", UNSIGNED, None, ["x_amz"], "framing"),
    "trailer signature in unsigned mode": (
        b"3\r\nabc\r\n0\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n",
        UNSIGNED,
        3,
        [],
        "trailer",
    ),
    "trailers in signed mode": (SIGNED_ABC[:-2] + b"x-amz-checksum-crc32:NSRBwg==\r\n\r\n", SIGNED, 3, [], "framing"),
    "tampered trailer": (
        SIGNED_ABC_TRAILER.replace(CRC_ABC.encode(), b"AAAAAA=="),
        SIGNED_TRAILER,
        3,
        [CRC32],
        "signature",
    ),
    "short trailer signature": (
        SIGNED_ABC_TRAILER.replace(b"signature:", b"signature:0"),
        SIGNED_TRAILER,
        3,
        [CRC32],
        "signature",
    ),
    "trailer signature twice": (
        SIGNED_ABC_TRAILER[:-2] + TRAILER_SIGNATURE_LINE + b"\r\n",
        SIGNED_TRAILER,
        3,
        [CRC32],
        "framing",
    ),
    "trailer signature missing": (
        SIGNED_ABC_TRAILER.replace(TRAILER_SIGNATURE_LINE, b""),
        SIGNED_TRAILER,
        3,
        [CRC32],
        "trailer",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refusals_match_the_streaming_decoder(engine, name):
    body, ctx, decoded_length, names, kind = REFUSALS[name]
    expected = reference(body, ctx, decoded_length, names)
    for split in ("whole", 1, ("random", 7)):
        outcome = run(engine, body, ctx, decoded_length, names, split)
        assert outcome.error is not None and outcome.error[0] == kind, (split, outcome.error)
        assert as_s3(outcome) == expected.error, split


def test_refusal_messages(engine):
    def message(name):
        body, ctx, decoded_length, names, _ = REFUSALS[name]
        return run(engine, body, ctx, decoded_length, names).error[1]

    assert message("quote in size") == "Malformed aws-chunked body: bad chunk size b'3\\'\"\\x00\\xff\\\\'"
    assert message("missing trailers") == (
        "The trailer(s) x-amz-checksum-crc32, x-amz-checksum-sha256 declared in x-amz-trailer were not sent."
    )
    assert message("shorter than decoded length") == (
        "The aws-chunked body holds 3 bytes; x-amz-decoded-content-length says 4."
    )


def test_trailer_names_and_values_are_normalised(engine):
    body = b"3\r\nabc\r\n0\r\nX-Amz-Checksum-CRC32 \xa0: NSRBwg== \x85\r\n\r\n"
    outcome = decodes(engine, body, UNSIGNED, b"abc", 3, ["X-AMZ-CHECKSUM-CRC32"], 1)
    assert outcome.trailers == {CRC32: "NSRBwg=="}
    assert outcome.trailers == reference(body, UNSIGNED, 3, [CRC32]).trailers


@pytest.mark.parametrize("split", ["whole", 1, 100])
def test_line_limit_is_4096_bytes_without_crlf(engine, split):
    prefix = b"3\r\nabc\r\n0\r\n"
    longest = f"{CRC32}:".encode() + b"v" * (4096 - len(CRC32) - 1)
    assert len(longest) == 4096
    fits = run(engine, prefix + longest + b"\r\n\r\n", UNSIGNED, 3, [CRC32], split)
    assert fits.done and len(fits.trailers[CRC32]) == 4096 - len(CRC32) - 1
    over = run(engine, prefix + longest + b"v\r\n\r\n", UNSIGNED, 3, [CRC32], split)
    assert over.error == ("framing", "Malformed aws-chunked body: line too long")
    unterminated = run(engine, prefix + longest + b"vv", UNSIGNED, 3, [CRC32], split, finish=False)
    assert unterminated.error == ("framing", "Malformed aws-chunked body: line too long")


def test_constructor_refusals(engine):
    with pytest.raises(engine.ChunkedError) as info:
        make_decoder(engine, SIGNED, None, [CRC32])
    assert info.value.kind == "trailer"
    with pytest.raises(engine.ChunkedError) as info:
        make_decoder(engine, UNSIGNED, None, [f"x-{i}" for i in range(9)])
    assert info.value.kind == "trailer"
    with pytest.raises(engine.ChunkedError):
        make_decoder(engine, UNSIGNED, None, ["x" * 65])
    with pytest.raises(ValueError):
        engine.ChunkedDecoder(True, False, b"short", "d", "s", "a" * 64, None, [])
    with pytest.raises(ValueError):
        engine.ChunkedDecoder(True, False, bytes(32), "d", "s", "a" * 63, None, [])
    with pytest.raises(ValueError):
        make_decoder(engine, UNSIGNED, -1)
    with pytest.raises(TypeError):
        make_decoder(engine, UNSIGNED).decode(b"3\r\nabc\r\n")


def test_engine_module_exports_the_chosen_decoder():
    assert chosen_engine.ChunkedDecoder is chosen_engine._engine.ChunkedDecoder
    assert chosen_engine.ChunkedError is chosen_engine._engine.ChunkedError
    assert issubclass(_native.ChunkedError, ValueError) and issubclass(pychunked.ChunkedError, ValueError)


# -- native and Python versions agree on mutated bodies ---------------------------------------------------------


def _seeds():
    data = DATA[:3000]
    crc = {CRC32: b64(digest_of("CRC32", data))}
    return [
        (botocore_body(data, 1000), UNSIGNED, len(data), [CRC32]),
        (botocore_body(data, 1000), UNSIGNED, None, [CRC32]),
        (signed_body(data, 700, SIGNED), SIGNED, len(data), []),
        (signed_body(data, 1024, SIGNED_TRAILER, crc), SIGNED_TRAILER, len(data), [CRC32]),
        (b"5\r\nhello\r\n0\r\n", UNSIGNED, 5, []),
        (botocore_body(data, 1000), UNSIGNED, len(data), ["x-amz-checksum-crc32c"]),
    ]


def _mutate(body: bytes, rng: random.Random) -> bytes:
    b = bytearray(body)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        at = rng.randrange(len(b) + 1)
        op = rng.randrange(7)
        if op == 0 and at < len(b):
            b[at] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[at:at] = rng.choice([b"\r", b"\n", b"\r\n", b";", b":", b"0", b"f", b" ", rng.randbytes(3)])
        elif op == 2:
            del b[at : at + rng.randrange(1, 40)]
        elif op == 3:
            b = b[:at]
        elif op == 4:
            end = min(len(b), at + rng.randrange(1, 120))
            b[end:end] = b[at:end]
        elif op == 5:
            b += rng.choice([b"\r\n", b"x", b"0\r\n\r\n"])
        elif op == 6 and at < len(b):
            b[at] = rng.choice(b"0123456789abcdefABCDEF\r\n;:-=")
    return bytes(b)


@pytest.mark.parametrize("batch", range(4))
def test_native_and_python_agree_on_mutated_bodies(batch):
    rng = random.Random(1000 + batch)
    seeds = _seeds()
    kinds = set()
    for i in range(100):
        body, ctx, decoded_length, names = seeds[i % len(seeds)]
        mutated = _mutate(body, rng)
        split = ("random", rng.randrange(1 << 30))
        native = run(_native, mutated, ctx, decoded_length, names, split)
        assert native == run(pychunked, mutated, ctx, decoded_length, names, split), mutated
        # Where the input is cut does not change the verdict (only how much data came out first).
        other = run(pychunked, mutated, ctx, decoded_length, names, ("random", rng.randrange(1 << 30)))
        assert (other.error, other.done, other.trailers) == (native.error, native.done, native.trailers)
        assert native.error or other.data == native.data
        kinds.add(native.error[0] if native.error else "ok")
        ref = reference(mutated, ctx, decoded_length, names)
        assert as_s3(native) == ref.error, mutated
        assert native.error or (native.data, native.trailers) == (ref.data, ref.trailers)
    assert kinds == {"ok", "framing", "incomplete", "signature", "trailer"}
