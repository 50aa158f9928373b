"""ckpt.writer through a real target (a DirectoryTarget on tmp_path): stripes, copies, failures."""

from __future__ import annotations

import os
import random

import pytest

from aif_gateway.ckpt.targets import DirectoryTarget


@pytest.fixture
def target(tmp_path):
    d = DirectoryTarget(tmp_path / "ck", threads=3, part_size=1000)
    yield d
    d.close()


@pytest.mark.parametrize("seed", range(6))
def test_any_mix_of_pieces_gives_the_concatenation(target, tmp_path, seed):
    rng = random.Random(seed)
    pieces = [rng.randbytes(rng.choice([0, 1, 3, 999, 1000, 1001, 4500])) for _ in range(rng.randint(0, 12))]
    file = target.open_file("f")
    for piece in pieces:
        file.write(memoryview(piece), keep=rng.random() < 0.5)
    assert file.commit() == sum(map(len, pieces))
    assert (tmp_path / "ck/f").read_bytes() == b"".join(pieces)
    assert os.listdir(tmp_path / "ck") == ["f"]


def test_pieces_not_kept_are_copied_at_once(target, tmp_path):
    buffer = bytearray(b"a" * 2500)
    file = target.open_file("f")
    file.write(buffer)
    buffer[:] = b"b" * 2500  # the caller reuses its buffer, as torch.save does
    file.commit()
    assert (tmp_path / "ck/f").read_bytes() == b"a" * 2500


def test_an_empty_file(target, tmp_path):
    target.open_file("empty").commit()
    assert (tmp_path / "ck/empty").read_bytes() == b""


def test_a_failing_stripe_fails_the_file_and_leaves_nothing(target, tmp_path, monkeypatch):
    file = target.open_file("f")
    calls = []

    def broken(part, offset, pieces, last):
        calls.append(part)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file, "_send", broken)
    with pytest.raises(OSError, match="No space"):
        for _ in range(10):
            file.write(b"x" * 700)
        file.commit()
    assert calls and not (tmp_path / "ck/f").exists()
    assert os.listdir(tmp_path / "ck") == []


def test_abort_removes_the_temp_file(target, tmp_path):
    file = target.open_file("f")
    file.write(b"x" * 5000)
    file.abort()
    assert os.listdir(tmp_path / "ck") == []


def test_reads(target):
    target.put_bytes("sub/g", bytes(range(256)) * 100)
    view = memoryview(bytearray(300))
    target.read_into("sub/g", 250, view)
    assert bytes(view) == (bytes(range(256)) * 100)[250:550]
    with pytest.raises(EOFError):
        target.read_into("sub/g", 25_500, memoryview(bytearray(200)))
    with pytest.raises(FileNotFoundError):
        target.read_bytes("nope")
    assert sorted(target.list()) == ["sub/g"]
    with pytest.raises(ValueError):
        target.read_bytes("../outside")
