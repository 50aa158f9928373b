"""Hasher: the C engine against the Python version and against independent references."""

from __future__ import annotations

import hashlib
import random
import threading
import zlib

import pytest
import xxhash
from awscrt import checksums as crt

from aif_gateway import _native
from aif_gateway.fsio import pyengine

ALL = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "XXH3_64")
MIB = 1 << 20
SIZES = [0, 1, 7, 4095, 4096, 65537, MIB + 3, 9 * MIB]
ENGINES = {"native": _native, "python": pyengine}


def _data(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _reference(data: bytes) -> dict[str, bytes]:
    return {
        "MD5": hashlib.md5(data).digest(),
        "CRC32": zlib.crc32(data).to_bytes(4, "big"),
        "CRC32C": crt.crc32c(data).to_bytes(4, "big"),
        "CRC64NVME": crt.crc64nvme(data).to_bytes(8, "big"),
        "SHA1": hashlib.sha1(data).digest(),
        "SHA256": hashlib.sha256(data).digest(),
        "XXH3_64": xxhash.xxh3_64_digest(data),
    }


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return ENGINES[request.param]


@pytest.mark.parametrize("size", SIZES)
def test_every_algorithm_matches_the_references(engine, size):
    data = _data(size, seed=size)
    hasher = engine.Hasher(ALL)
    hasher.update(data)
    assert hasher.digests() == _reference(data)


@pytest.mark.parametrize(
    "algorithm, check_value", [("CRC32", 0xCBF43926), ("CRC32C", 0xE3069283), ("CRC64NVME", 0xAE8B14860A799888)]
)
def test_crc_check_values(engine, algorithm, check_value):
    hasher = engine.Hasher([algorithm])
    hasher.update(b"123456789")
    assert int.from_bytes(hasher.digests()[algorithm], "big") == check_value


@pytest.mark.parametrize("size", SIZES)
def test_native_equals_python_over_random_splits_and_offsets(size):
    rng = random.Random(size + 1)
    backing = _data(size + 64, seed=size)
    for _ in range(4):
        start = rng.randrange(64)  # unaligned starts reach the CRC kernels' byte loops
        data = memoryview(backing)[start : start + size]
        cuts = sorted(rng.randrange(size + 1) for _ in range(rng.randrange(1, 8)))
        native, python = _native.Hasher(ALL), pyengine.Hasher(ALL)
        for a, b in zip([0, *cuts], [*cuts, size]):
            native.update(data[a:b])
            python.update(data[a:b])
        assert native.digests() == python.digests() == _reference(bytes(data))


def test_md5_only_unless_asked(engine):
    hasher = engine.Hasher([])
    hasher.update(bytearray(b"abc"))
    assert hasher.digests() == {"MD5": hashlib.md5(b"abc").digest()}


def test_digests_midway_leave_the_hasher_running(engine):
    hasher = engine.Hasher(ALL)
    hasher.update(b"hello ")
    assert hasher.digests() == _reference(b"hello ")
    hasher.update(b"world")
    assert hasher.digests() == _reference(b"hello world")


@pytest.mark.parametrize("bad", [["CRC16"], ["md5"], [5]])
def test_unknown_algorithm_is_rejected(engine, bad):
    with pytest.raises(ValueError):
        engine.Hasher(bad)


def test_text_is_not_hashed(engine):
    with pytest.raises(TypeError):
        engine.Hasher([]).update("abc")


def test_four_threads_hash_at_once():
    """Separate hashers in parallel, and one hasher shared by all: its lock keeps it whole."""
    chunk = _data(3 * MIB + 5, seed=7)
    rounds = 5
    shared = _native.Hasher(ALL)
    own: list[dict[str, bytes]] = []
    lock = threading.Lock()

    def work():
        mine = _native.Hasher(ALL)
        for _ in range(rounds):
            mine.update(chunk)
            shared.update(chunk)
        with lock:
            own.append(mine.digests())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert own == [_reference(chunk * rounds)] * 4
    # Every update fed the same bytes, so whatever order they ran in, the result is fixed.
    assert shared.digests() == _reference(chunk * rounds * 4)


@pytest.mark.parametrize("algorithms", [(), ("CRC64NVME",), ("XXH3_64", "CRC32C")])
def test_md5_can_be_left_out(engine, algorithms):
    data = _data(MIB + 11, 5)
    hasher = engine.Hasher(algorithms, md5=False)
    hasher.update(data)
    reference = _reference(data)
    assert hasher.digests() == {name: reference[name] for name in algorithms}


def test_md5_is_keyword_only(engine):
    with pytest.raises(TypeError):
        engine.Hasher((), False)
