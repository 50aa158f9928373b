"""aws-chunked decoding: bodies from botocore, hand-signed bodies and the AWS documentation's example."""

import asyncio
import hashlib
import hmac
import io
import random

import pytest
from aiohttp.streams import StreamReader
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum, CrtCrc32cChecksum, Sha256Checksum
from multidict import CIMultiDict

from aif_gateway.checksums import b64, digest_of
from aif_gateway.errors import S3Error
from aif_gateway.identity import Identity
from aif_gateway.s3.chunked import AwsChunkedDecoder
from aif_gateway.s3.sigv4 import EMPTY_SHA256, AuthContext, authenticate, derive_signing_key
from aif_gateway.s3.transport import READ_SIZE

IDENTITY = Identity(name="alice", access_key="AKID", secret_key="secret")
DATE = "20250101T000000Z"
SCOPE = "20250101/us-east-1/s3/aws4_request"
KEY = derive_signing_key("secret", "20250101", "us-east-1", "s3")
SEED = "a" * 64
DATA = random.Random(7).randbytes(50_000)


def auth(payload, seed=SEED, key=KEY, amz_date=DATE, scope=SCOPE):
    return AuthContext(IDENTITY, payload, None, key, amz_date, scope, seed)


UNSIGNED_TRAILER = auth("STREAMING-UNSIGNED-PAYLOAD-TRAILER")
SIGNED = auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
SIGNED_TRAILER = auth("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")


def _sign(ctx, kind, previous, digest_lines):
    sts = f"{kind}\n{ctx.amz_date}\n{ctx.scope}\n{previous}\n{digest_lines}"
    return hmac.new(ctx.signing_key, sts.encode(), hashlib.sha256).hexdigest()


def signed_body(data, chunk_size, ctx, trailers=None):
    """A signed aws-chunked body built from the formula in AWS's documentation."""
    out = []
    previous = ctx.seed_signature
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for chunk in chunks:
        digests = f"{EMPTY_SHA256}\n{hashlib.sha256(chunk).hexdigest()}"
        previous = _sign(ctx, "AWS4-HMAC-SHA256-PAYLOAD", previous, digests)
        out.append(b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode()))
        if chunk:
            out.append(chunk + b"\r\n")
    if trailers is not None:
        canonical = "".join(f"{name}:{value}\n" for name, value in trailers.items())
        signature = _sign(ctx, "AWS4-HMAC-SHA256-TRAILER", previous, hashlib.sha256(canonical.encode()).hexdigest())
        out.extend(f"{name}:{value}\r\n".encode() for name, value in trailers.items())
        out.append(f"x-amz-trailer-signature:{signature}\r\n".encode())
    out.append(b"\r\n")
    return b"".join(out)


def botocore_body(data, chunk_size, checksum_cls=Crc32Checksum, name="x-amz-checksum-crc32"):
    return AwsChunkedWrapper(io.BytesIO(data), checksum_cls, name, chunk_size=chunk_size).read()


async def _feed(reader, body, split_every):
    for i in range(0, len(body), split_every):
        reader.feed_data(body[i : i + split_every])
        await asyncio.sleep(0)
    reader.feed_eof()


def decode(body, ctx, decoded_length=None, trailer_names=(), split_every=None, decoder_cls=AwsChunkedDecoder):
    """(data pieces, trailers), with the body arriving split_every bytes at a time."""

    async def run():
        reader = asyncio.StreamReader()
        feeder = asyncio.create_task(_feed(reader, body, split_every or max(len(body), 1)))
        decoder = decoder_cls(reader, ctx, decoded_length, list(trailer_names))
        try:
            pieces = [bytes(piece) async for piece in decoder]
        finally:
            await feeder
        return pieces, decoder.trailers

    return asyncio.run(run())


def construct(ctx, trailer_names):
    async def run():
        return AwsChunkedDecoder(asyncio.StreamReader(), ctx, None, trailer_names)

    return asyncio.run(run())


def decode_error(body, ctx, decoded_length=None, trailer_names=()):
    with pytest.raises(S3Error) as info:
        decode(body, ctx, decoded_length, trailer_names, split_every=97)
    return info.value.code


# -- unsigned trailer mode (what current SDKs send by default) ----------------------------------


@pytest.mark.parametrize(
    "size, split_every",
    [(0, None), (1, 1), (8191, 1), (8191, 3), (50_000, 4096), (50_000, 4097), (50_000, None), (4096, 4098)],
)
def test_botocore_unsigned_trailer_body(size, split_every):
    data = DATA[:size]
    body = botocore_body(data, chunk_size=4096)
    pieces, trailers = decode(body, UNSIGNED_TRAILER, len(data), ["x-amz-checksum-crc32"], split_every)
    assert b"".join(pieces) == data
    assert trailers == {"x-amz-checksum-crc32": b64(digest_of("CRC32", data))}


@pytest.mark.parametrize(
    "checksum_cls, name, algorithm",
    [(CrtCrc32cChecksum, "x-amz-checksum-crc32c", "CRC32C"), (Sha256Checksum, "x-amz-checksum-sha256", "SHA256")],
)
def test_botocore_trailer_algorithms(checksum_cls, name, algorithm):
    body = botocore_body(DATA, 10_000, checksum_cls, name)
    pieces, trailers = decode(body, UNSIGNED_TRAILER, len(DATA), [name], split_every=1000)
    assert b"".join(pieces) == DATA
    assert trailers[name] == b64(digest_of(algorithm, DATA))


def test_unsigned_body_without_trailers_may_end_after_last_chunk():
    # The AWS SDK for JavaScript sends "0\r\n" and nothing more when it has no checksum to add.
    body = b"5\r\nhello\r\n0\r\n"
    assert decode(body, UNSIGNED_TRAILER, 5) == ([b"hello"], {})
    assert decode(body + b"\r\n", UNSIGNED_TRAILER, 5) == ([b"hello"], {})


def test_missing_final_crlf_after_trailers_is_tolerated():
    body = botocore_body(b"abc", 4096)
    assert body.endswith(b"\r\n\r\n")
    pieces, trailers = decode(body[:-2], UNSIGNED_TRAILER, 3, ["x-amz-checksum-crc32"])
    assert b"".join(pieces) == b"abc"
    assert "x-amz-checksum-crc32" in trailers


def test_trailer_bytes_never_appear_in_data():
    body = botocore_body(b"x" * 100, 40)
    pieces, _ = decode(body, UNSIGNED_TRAILER, 100, ["x-amz-checksum-crc32"])
    assert b"".join(pieces) == b"x" * 100


def test_declared_trailer_missing():
    body = b"3\r\nabc\r\n0\r\n\r\n"
    assert decode_error(body, UNSIGNED_TRAILER, 3, ["x-amz-checksum-crc32"]) == "InvalidRequest"


def test_undeclared_trailer():
    body = botocore_body(b"abc", 4096)
    assert decode_error(body, UNSIGNED_TRAILER, 3, ["x-amz-checksum-crc32c"]) == "InvalidRequest"
    assert decode_error(body, UNSIGNED_TRAILER, 3, []) == "InvalidRequest"


def test_duplicate_trailer():
    body = b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
    assert decode_error(body, UNSIGNED_TRAILER, 3, ["x-amz-checksum-crc32"]) == "InvalidRequest"


def test_trailer_names_and_values_are_normalised():
    body = b"3\r\nabc\r\n0\r\nX-Amz-Checksum-CRC32 : NSRBwg== \r\n\r\n"
    _, trailers = decode(body, UNSIGNED_TRAILER, 3, ["x-amz-checksum-crc32"])
    assert trailers == {"x-amz-checksum-crc32": "NSRBwg=="}


# -- framing errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, code",
    [
        (b"zz\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),  # size not hex
        (b"+3\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),  # int() would accept it; the framing does not
        (b"0x3\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),
        (b"\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),  # empty size
        (b"3\nabc\r\n0\r\n\r\n", "InvalidRequest"),  # bare LF
        (b"3\r\nabcX\r\n0\r\n\r\n", "InvalidRequest"),  # chunk longer than its size
        (b"3;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),  # extension in unsigned mode
        (b"3\r\nabc\r\n0\r\n\r\nextra", "InvalidRequest"),  # data after the end
        (b"3\r\nabc\r\n0\r\ngarbage line\r\n\r\n", "InvalidRequest"),  # trailer without ':'
        (b"3\r\nab", "IncompleteBody"),  # cut inside a chunk
        (b"3\r\nabc\r\n", "IncompleteBody"),  # no final chunk
        (b"3\r\nabc\r\n0", "IncompleteBody"),  # cut inside a line
        (b"", "IncompleteBody"),
        (b"4\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),  # chunk runs into the next header
        (b"ff\r\nabc\r\n0\r\n\r\n", "IncompleteBody"),  # chunk claims more than the body holds
    ],
)
def test_framing_errors(body, code):
    assert decode_error(body, UNSIGNED_TRAILER) == code


class _NoFlowControl:
    """aiohttp's StreamReader asks its protocol to pause and resume; here nothing needs to."""

    _reading_paused = False
    connected = True

    def pause_reading(self):
        pass

    def resume_reading(self, resume_parser=True):
        pass


def decode_with_aiohttp(body, ctx, decoded_length, trailer_names):
    async def run():
        reader = StreamReader(_NoFlowControl(), 2**16, loop=asyncio.get_running_loop())
        feeder = asyncio.create_task(_feed(reader, body, 1000))
        decoder = AwsChunkedDecoder(reader, ctx, decoded_length, trailer_names)
        try:
            return b"".join([piece async for piece in decoder]), decoder.trailers
        finally:
            await feeder

    return asyncio.run(run())


def test_decodes_from_aiohttp_stream_reader():
    body = botocore_body(DATA, 8192)
    data, trailers = decode_with_aiohttp(body, UNSIGNED_TRAILER, len(DATA), ["x-amz-checksum-crc32"])
    assert data == DATA
    assert trailers == {"x-amz-checksum-crc32": b64(digest_of("CRC32", DATA))}


def test_overlong_header_line_is_a_framing_error():
    body = b"3" + b"0" * 300_000 + b"\r\nabc\r\n0\r\n\r\n"
    assert decode_error(body, UNSIGNED_TRAILER) == "InvalidRequest"
    with pytest.raises(S3Error) as info:
        decode_with_aiohttp(body, UNSIGNED_TRAILER, None, [])
    assert info.value.code == "InvalidRequest"


def test_decoded_length_must_match():
    body = b"3\r\nabc\r\n0\r\n\r\n"
    assert decode_error(body, UNSIGNED_TRAILER, decoded_length=4) == "IncompleteBody"
    assert decode_error(body, UNSIGNED_TRAILER, decoded_length=2) == "IncompleteBody"


def test_overlong_body_is_refused_before_its_data_is_yielded():
    body = b"5\r\nhello\r\n0\r\n\r\n"

    async def run():
        reader = asyncio.StreamReader()
        reader.feed_data(body)
        reader.feed_eof()
        got = []
        with pytest.raises(S3Error):
            async for piece in AwsChunkedDecoder(reader, UNSIGNED_TRAILER, 3, []):
                got.append(piece)
        return got

    assert asyncio.run(run()) == []


def test_trailers_refused_in_mode_without_trailers():
    body = signed_body(b"abc", 10, SIGNED)
    with_trailer = body[:-2] + b"x-amz-checksum-crc32:NSRBwg==\r\n\r\n"
    assert decode_error(with_trailer, SIGNED, 3) == "InvalidRequest"
    with pytest.raises(S3Error):
        construct(SIGNED, ["x-amz-checksum-crc32"])


def test_non_streaming_payload_is_a_programming_error():
    with pytest.raises(ValueError):
        construct(auth("UNSIGNED-PAYLOAD"), [])


# -- signed modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, 8192, 50_000, 60_000])
@pytest.mark.parametrize("split_every", [5, 1000, None])
def test_signed_body_decodes(chunk_size, split_every):
    data = DATA[:300] if chunk_size < 8 else DATA
    pieces, trailers = decode(signed_body(data, chunk_size, SIGNED), SIGNED, len(data), [], split_every)
    assert b"".join(pieces) == data
    assert trailers == {}


def test_signed_empty_body():
    assert decode(signed_body(b"", 8192, SIGNED), SIGNED, 0) == ([], {})


def test_large_chunk_is_yielded_in_pieces():
    data = random.Random(1).randbytes(2 * READ_SIZE + 5)
    pieces, _ = decode(signed_body(data, len(data), SIGNED), SIGNED, len(data), split_every=65536)
    assert b"".join(pieces) == data
    assert len(pieces) > 2 and max(len(p) for p in pieces) <= READ_SIZE


def test_signed_body_with_changed_byte_is_refused():
    body = bytearray(signed_body(DATA, 4096, SIGNED))
    body[5000] ^= 1
    assert decode_error(bytes(body), SIGNED, len(DATA)) == "SignatureDoesNotMatch"


def test_signed_body_with_wrong_seed_is_refused():
    body = signed_body(DATA, 4096, auth(SIGNED.payload, seed="b" * 64))
    assert decode_error(body, SIGNED, len(DATA)) == "SignatureDoesNotMatch"


def test_signed_body_with_wrong_key_is_refused():
    body = signed_body(DATA, 4096, auth(SIGNED.payload, key=derive_signing_key("other", "20250101", "us-east-1", "s3")))
    assert decode_error(body, SIGNED, len(DATA)) == "SignatureDoesNotMatch"


def test_swapped_chunks_are_refused():
    # Each chunk keeps a valid signature of its own bytes; only the chain shows the reordering.
    data = b"A" * 4096 + b"B" * 4096
    body = signed_body(data, 4096, SIGNED)
    second_start = body.index(b"1000;", 1)
    final_start = body.index(b"0;chunk-signature=", second_start + 5 + 4096)
    swapped = body[second_start:final_start] + body[:second_start] + body[final_start:]
    assert len(swapped) == len(body)
    assert decode_error(swapped, SIGNED, len(data)) == "SignatureDoesNotMatch"


def test_dropped_final_chunk_is_incomplete():
    body = signed_body(b"abc", 10, SIGNED)
    cut = body[: body.index(b"0;chunk-signature")]
    assert decode_error(cut, SIGNED, 3) == "IncompleteBody"


def test_missing_chunk_signature_is_refused():
    assert decode_error(b"3\r\nabc\r\n0\r\n\r\n", SIGNED, 3) == "InvalidRequest"


def test_signed_final_chunk_signature_is_checked():
    body = signed_body(b"abc", 10, SIGNED)
    last = body.rindex(b"0;chunk-signature=") + len(b"0;chunk-signature=")
    tampered = body[:last] + (b"1" if body[last : last + 1] != b"1" else b"2") + body[last + 1 :]
    assert decode_error(tampered, SIGNED, 3) == "SignatureDoesNotMatch"


@pytest.mark.parametrize("split_every", [7, 150, None])
def test_a_corrupt_chunk_fails_the_stream_before_it_ends(split_every):
    # Data may be released before its chunk's signature (which follows it) is checked; what
    # protects the object is that the stream raises instead of ending, and stores publish
    # only a stream that ended.
    body = bytearray(signed_body(b"x" * 100 + b"y" * 100, 100, SIGNED))
    body[body.index(b"y")] = ord("z")  # corrupt the second (last) data chunk

    async def run():
        reader = asyncio.StreamReader()
        feeder = asyncio.create_task(_feed(reader, bytes(body), split_every or len(body)))
        got = []
        with pytest.raises(S3Error) as info:
            async for piece in AwsChunkedDecoder(reader, SIGNED, 200, []):
                got.append(bytes(piece))
        await feeder
        return b"".join(got), info.value.code

    data, code = asyncio.run(run())
    assert code == "SignatureDoesNotMatch"
    assert b"x" * 100 + b"z" + b"y" * 99 != data and len(data) <= 200


@pytest.mark.parametrize("split_every", [3, 333, None])
def test_signed_trailer_body_decodes(split_every):
    trailers = {"x-amz-checksum-crc32c": b64(digest_of("CRC32C", DATA))}
    body = signed_body(DATA, 8192, SIGNED_TRAILER, trailers)
    pieces, got = decode(body, SIGNED_TRAILER, len(DATA), ["x-amz-checksum-crc32c"], split_every)
    assert b"".join(pieces) == DATA
    assert got == trailers


def test_signed_trailer_tampered_value_is_refused():
    good = b64(digest_of("CRC32", DATA))
    body = signed_body(DATA, 8192, SIGNED_TRAILER, {"x-amz-checksum-crc32": good})
    tampered = body.replace(good.encode(), b64(digest_of("CRC32", b"other")).encode())
    assert decode_error(tampered, SIGNED_TRAILER, len(DATA), ["x-amz-checksum-crc32"]) == "SignatureDoesNotMatch"


def test_signed_trailer_without_signature_is_refused():
    body = signed_body(b"abc", 10, SIGNED_TRAILER, {"x-amz-checksum-crc32": b64(digest_of("CRC32", b"abc"))})
    start = body.index(b"x-amz-trailer-signature:")
    unsigned = body[:start] + body[body.index(b"\r\n", start) + 2 :]
    assert decode_error(unsigned, SIGNED_TRAILER, 3, ["x-amz-checksum-crc32"]) == "InvalidRequest"


# -- the AWS documentation's examples (known answers) -----------------------------------------------

DOC_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_IDENTITY = Identity(name="doc", access_key="AKIAIOSFODNN7EXAMPLE", secret_key=DOC_SECRET)
DOC_DATA = b"a" * 66560
DOC_NOW = 1369353600.0  # 2013-05-24T00:00:00Z


def _doc_body(signatures, trailer=b""):
    return (
        b"10000;chunk-signature=%s\r\n" % signatures[0]
        + DOC_DATA[:65536]
        + b"\r\n"
        + b"400;chunk-signature=%s\r\n" % signatures[1]
        + DOC_DATA[65536:]
        + b"\r\n"
        + b"0;chunk-signature=%s\r\n" % signatures[2]
        + trailer
        + b"\r\n"
    )


def test_aws_documented_chunked_upload_end_to_end():
    # "Signature Calculations for the Authorization Header: Transferring Payload in Multiple Chunks".
    headers = CIMultiDict(
        {
            "Host": "s3.amazonaws.com",
            "x-amz-date": "20130524T000000Z",
            "x-amz-storage-class": "REDUCED_REDUNDANCY",
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class,"
            "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": "66560",
            "Content-Length": "66824",
        }
    )
    ctx = authenticate(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        headers,
        lambda key: DOC_IDENTITY if key == DOC_IDENTITY.access_key else None,
        now=DOC_NOW,
    )
    body = _doc_body(
        [
            b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            b"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
        ]
    )
    assert len(body) == 66824
    pieces, _ = decode(body, ctx, 66560, split_every=1000)
    assert b"".join(pieces) == DOC_DATA


def test_aws_documented_signed_trailer_example():
    # "Signature calculations for trailing headers (chunked uploads)"; the seed is taken as given.
    ctx = AuthContext(
        DOC_IDENTITY,
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        None,
        derive_signing_key(DOC_SECRET, "20130524", "us-east-1", "s3"),
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
    )
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
    pieces, trailers = decode(body, ctx, 66560, ["x-amz-checksum-crc32c"], split_every=777)
    assert b"".join(pieces) == DOC_DATA
    assert trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    assert b64(digest_of("CRC32C", DOC_DATA)) == "sOO8/Q=="
    tampered = body.replace(b"sOO8/Q==", b"sOO8/A==")
    assert decode_error(tampered, ctx, 66560, ["x-amz-checksum-crc32c"]) == "SignatureDoesNotMatch"
