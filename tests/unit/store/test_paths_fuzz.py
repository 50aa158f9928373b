"""Properties of key-to-path mapping (aif_gateway/store/paths.py), with hypothesis.

- Any key either validates into segments that spell the key again, each a plain name (no
  '', '.', '..', '/', NUL; at most 255 bytes; 1,024 in all; not the internal directory first),
  or is refused with an S3Error: never another exception.
- A key that validates resolves, in a bucket full of symlinks (to the bucket, to its parent,
  into .aifgw, dangling, in loops), to a path inside the bucket directory and outside its
  internal directory, or is refused with AccessDenied.
- Keys built to be unsafe ('..', '.', '//', a leading '/', NUL, long segments, lone
  surrogates, the internal directory) are refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from aif_gateway.errors import S3Error
from aif_gateway.store.paths import (
    INTERNAL_DIR,
    MAX_KEY_BYTES,
    MAX_SEGMENT_BYTES,
    BucketPaths,
    is_dir_key,
    validate_key,
)

# The names of the links and directories in the bucket below, so that keys run through them.
LINKS = {
    "up": "..",
    "root": ".",
    "abs-up": "{parent}",
    "internal": INTERNAL_DIR,
    "into-internal": f"{INTERNAL_DIR}/tmp",
    "etc": "/etc",
    "sub-link": "sub",
    "sub-up": "sub/../..",
    "dangling": "no/such/dir",
    "loop": "loop",
    "ping": "pong",
    "pong": "ping",
}
SEGMENTS = st.one_of(
    st.sampled_from(
        [
            *LINKS,
            "sub",
            INTERNAL_DIR,
            ".",
            "..",
            "",
            "...",
            " ",
            "a\x00b",
            "x" * 255,
            "x" * 256,
            "\u00e9" * 128,
            "\udcff",
            "\\",
            "%2e%2e",
        ]
    ),
    st.text(max_size=12),
    st.text(st.characters(), max_size=4),  # any code point, surrogates and NUL included
)
KEYS = st.one_of(
    st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join),
    st.lists(SEGMENTS, min_size=1, max_size=6).map(lambda parts: "/".join(parts) + "/"),
    st.text(st.characters(), max_size=40),
)


@pytest.fixture(scope="module")
def bucket(tmp_path_factory) -> BucketPaths:
    base = tmp_path_factory.mktemp("fuzz-paths")
    directory = base / "bucket"
    (directory / INTERNAL_DIR / "tmp").mkdir(parents=True)
    (directory / "sub" / "deeper").mkdir(parents=True)
    (base / "outside").mkdir()
    for name, target in LINKS.items():
        os.symlink(target.format(parent=base), directory / name)
        os.symlink(target.format(parent=base), directory / "sub" / name)
    # A reserved name in every bucket (a mapped bucket on another filesystem keeps its state there).
    return BucketPaths.at("bucket", directory, directory / INTERNAL_DIR)


def _segments_or_error(key: str) -> list[str] | S3Error:
    try:
        return validate_key(key)
    except S3Error as err:
        assert err.code in ("InvalidArgument", "KeyTooLongError")
        return err


@given(key=KEYS)
def test_a_key_validates_into_plain_segments_or_is_refused(key):
    segments = _segments_or_error(key)
    if isinstance(segments, S3Error):
        event(f"refused: {segments.code}")
        return
    event("valid")
    assert "/".join(segments) + ("/" if is_dir_key(key) else "") == key
    assert len(key.encode("utf-8")) <= MAX_KEY_BYTES
    assert segments[0] != INTERNAL_DIR
    for segment in segments:
        assert segment not in ("", ".", "..")
        assert "/" not in segment and "\x00" not in segment
        assert len(segment.encode("utf-8")) <= MAX_SEGMENT_BYTES


@given(key=KEYS)
def test_a_key_resolves_inside_its_bucket_and_outside_internal_state(bucket, key):
    try:
        path = bucket.resolve(key)
    except S3Error as err:
        assert err.code in ("InvalidArgument", "KeyTooLongError", "AccessDenied")
        event(f"refused: {err.code}")
        return
    event("resolved")
    relative = Path(os.path.relpath(path, bucket.dir))
    assert os.path.commonpath([bucket.dir, path]) == str(bucket.dir)
    assert relative.parts and relative.parts[0] not in (INTERNAL_DIR, "..", ".")
    assert Path(os.path.realpath(path)) == path


@st.composite
def _with_a_bad_segment(draw) -> str:
    """Segments around an empty, '.' or '..' one (an empty last one gets a '/' after it,
    else the key would be a valid directory key)."""
    before, after = draw(st.lists(SEGMENTS, max_size=3)), draw(st.lists(SEGMENTS, max_size=3))
    bad = draw(st.sampled_from(["", ".", ".."]))
    key = "/".join([*before, bad, *after])
    return key + "/" if not bad and not after else key


UNSAFE = st.one_of(
    _with_a_bad_segment(),
    st.text(max_size=20).map(lambda s: "/" + s),
    st.tuples(st.text(max_size=20), st.text(max_size=20)).map(lambda t: f"{t[0]}\x00{t[1]}"),
    st.tuples(st.text(max_size=20), st.integers(MAX_SEGMENT_BYTES + 1, 400)).map(lambda t: f"{t[0]}/{'s' * t[1]}"),
    st.integers(MAX_KEY_BYTES + 1, 3000).map(lambda n: "/".join(["k" * 200] * (n // 201 + 1))),
    st.tuples(st.text(max_size=10), st.integers(0xD800, 0xDFFF)).map(lambda t: t[0] + chr(t[1])),
    st.text(max_size=20).map(lambda s: f"{INTERNAL_DIR}/{s}"),
    st.just(INTERNAL_DIR),
)


@given(key=UNSAFE)
def test_unsafe_keys_are_refused(bucket, key):
    with pytest.raises(S3Error) as info:
        bucket.resolve(key)
    assert info.value.code in ("InvalidArgument", "KeyTooLongError")
