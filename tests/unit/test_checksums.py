import base64
import hashlib
import random
import zlib

import pytest

from aif_gateway.checksums import (
    ALGORITHMS,
    DIGEST_SIZES,
    MultiHasher,
    b64,
    composite_checksum,
    decode_checksum,
    digest_of,
    full_object_crc,
    multipart_etag,
)

CHECK_INPUT = b"123456789"
SIZES = [0, 1, 4095, 4096, 1024 * 1024 + 7]


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def test_md5_is_always_computed():
    hasher = MultiHasher([])
    hasher.update(b"abc")
    assert hasher.digests() == {"MD5": hashlib.md5(b"abc").digest()}


def test_stdlib_algorithms_match_stdlib():
    data = _data(10_000)
    got = MultiHasher(["SHA1", "SHA256", "CRC32"])
    got.update(data)
    assert got.digests() == {
        "MD5": hashlib.md5(data).digest(),
        "SHA1": hashlib.sha1(data).digest(),
        "SHA256": hashlib.sha256(data).digest(),
        "CRC32": zlib.crc32(data).to_bytes(4, "big"),
    }


@pytest.mark.parametrize(
    "algorithm, check_value", [("CRC32", 0xCBF43926), ("CRC32C", 0xE3069283), ("CRC64NVME", 0xAE8B14860A799888)]
)
def test_crc_check_values(algorithm, check_value):
    digest = digest_of(algorithm, CHECK_INPUT)
    assert len(digest) == DIGEST_SIZES[algorithm]
    assert int.from_bytes(digest, "big") == check_value


def test_crc_of_empty_input_is_zero():
    for algorithm in ("CRC32", "CRC32C", "CRC64NVME"):
        assert digest_of(algorithm, b"") == bytes(DIGEST_SIZES[algorithm])


@pytest.mark.parametrize("size", SIZES)
def test_incremental_equals_one_shot(size):
    data = _data(size, seed=size)
    one_shot = MultiHasher(ALGORITHMS)
    one_shot.update(data)
    expected = one_shot.digests()
    rng = random.Random(size + 1)
    for _ in range(5):
        cuts = sorted(rng.randrange(size + 1) for _ in range(rng.randrange(1, 6)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, size])]
        hasher = MultiHasher(ALGORITHMS)
        for piece in pieces:
            hasher.update(memoryview(piece))
        assert hasher.digests() == expected


def test_memoryview_slices_are_hashed_by_content():
    buf = bytearray(b"xx123456789yy")
    hasher = MultiHasher(ALGORITHMS)
    hasher.update(memoryview(buf)[2:11])
    digests = hasher.digests()
    for algorithm in ALGORITHMS:
        assert digests[algorithm] == digest_of(algorithm, CHECK_INPUT)


def test_unknown_algorithm_is_rejected():
    with pytest.raises(ValueError):
        MultiHasher(["CRC16"])


def test_decode_checksum_round_trip():
    for algorithm in ALGORITHMS:
        digest = digest_of(algorithm, b"hello")
        assert decode_checksum(algorithm, b64(digest)) == digest


@pytest.mark.parametrize(
    "algorithm, value",
    [
        ("CRC32", "not base64!"),
        ("CRC32", b64(bytes(8))),  # a CRC64 where a CRC32 belongs
        ("SHA256", b64(bytes(20))),
        ("CRC32C", "AAAA"),  # 3 bytes
        ("CRC32", ""),
    ],
)
def test_decode_checksum_rejects_bad_values(algorithm, value):
    assert decode_checksum(algorithm, value) is None


def test_multipart_etag():
    parts = [_data(100, 1), _data(50, 2), _data(1, 3)]
    md5s = [hashlib.md5(p).digest() for p in parts]
    assert multipart_etag(md5s) == hashlib.md5(b"".join(md5s)).hexdigest() + "-3"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_composite_checksum(algorithm):
    parts = [_data(100, 1), _data(50, 2)]
    digests = [digest_of(algorithm, p) for p in parts]
    expected = base64.b64encode(digest_of(algorithm, digests[0] + digests[1])).decode() + "-2"
    assert composite_checksum(algorithm, digests) == expected


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
@pytest.mark.parametrize("sizes", [[1], [0, 5], [4096, 1, 0, 77777], [5 * 1024 * 1024, 1234]])
def test_full_object_crc_equals_crc_of_concatenation(algorithm, sizes):
    parts = [_data(size, seed=i) for i, size in enumerate(sizes)]
    combined = full_object_crc(algorithm, [(digest_of(algorithm, p), len(p)) for p in parts])
    assert combined == b64(digest_of(algorithm, b"".join(parts)))


def test_full_object_crc_refuses_non_crc():
    with pytest.raises(ValueError):
        full_object_crc("SHA256", [(bytes(32), 1)])
