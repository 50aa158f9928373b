"""Properties of the metadata record decoders (aif_gateway/store/meta.py), with hypothesis.

Any file owner can set the ``user.aifgw.meta`` xattr (or write a sidecar), so a record read back
is input like any request. Whatever the bytes:
- ``ObjectRecord.decode`` never raises; it gives None or a record whose every field has its
  declared type, whose ``part_sizes`` has at most 10,000 entries adding up to ``size``, whose
  ``headers`` are only those S3 lets an object carry, and whose text fields (sent back as
  response headers) hold no control characters;
- the listing's fast path (``listed_info``) never raises, gives a well-typed ObjectInfo, and
  shows what ``info_for`` shows from ``decode`` (its documented contract);
- ``decode_tags`` never raises and gives a dict of strings.
Records the gateway writes decode to themselves.
"""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

from hypothesis import event, example, given
from hypothesis import strategies as st

from aif_gateway.s3.headers import STORED_HEADERS
from aif_gateway.store.base import CHECKSUM_ALGORITHMS, ObjectInfo
from aif_gateway.store.meta import ObjectRecord, decode_tags, info_for, listed_info

MAX_PARTS = 10_000
ALLOWED_HEADERS = {name.lower() for name in STORED_HEADERS}
CHECKSUM_TYPES = (None, "COMPOSITE", "FULL_OBJECT")
# The fields a listing shows (listed_info's contract with info_for).
LISTED_FIELDS = ("key", "size", "mtime_ns", "etag", "checksums", "checksum_type", "is_dir_marker")


def _is_int(value) -> bool:
    return type(value) is int  # bool is an int to isinstance


def _header_safe(text) -> bool:
    """Text that can go into a response header as it is: a str without CR, LF, NUL or other
    control characters (aiohttp refuses CR and LF, which would be a 500)."""
    return isinstance(text, str) and not any(ord(c) < 0x20 and c != "\t" or c == "\x7f" for c in text)


def _str_dict(value, keys_allowed=None) -> bool:
    """Header-safe strings, with keys from ``keys_allowed`` (compared without case: header names)."""
    allowed = None if keys_allowed is None else {k.lower() for k in keys_allowed}
    return isinstance(value, dict) and all(
        _header_safe(k) and _header_safe(v) and (allowed is None or k.lower() in allowed) for k, v in value.items()
    )


def assert_well_formed(record: ObjectRecord) -> None:
    assert _header_safe(record.etag) and _header_safe(record.content_type)
    assert _is_int(record.size) and record.size >= 0 and _is_int(record.mtime_ns)
    assert _str_dict(record.headers, ALLOWED_HEADERS), record.headers
    assert _str_dict(record.user_meta), record.user_meta
    assert _str_dict(record.checksums, CHECKSUM_ALGORITHMS), record.checksums
    assert record.checksum_type in CHECKSUM_TYPES
    assert type(record.dir_marker) is bool
    if record.part_sizes is not None:
        assert type(record.part_sizes) is tuple and len(record.part_sizes) <= MAX_PARTS
        assert all(_is_int(size) and size >= 0 for size in record.part_sizes)
        assert sum(record.part_sizes) == record.size


def assert_well_formed_info(info: ObjectInfo) -> None:
    assert _header_safe(info.etag) and _is_int(info.size) and info.size >= 0 and _is_int(info.mtime_ns)
    assert _str_dict(info.checksums, CHECKSUM_ALGORITHMS) and info.checksum_type in CHECKSUM_TYPES
    assert type(info.is_dir_marker) is bool


# -- strategies -----------------------------------------------------------------------------------

TEXT = st.text(max_size=20)
# Part runs ([size, count]): counts bounded so that the current decoder's expansion stays cheap.
RUNS = st.lists(
    st.lists(st.integers(0, 10**12), min_size=2, max_size=2).map(lambda run: [run[0], run[1] % 20_001]), max_size=4
)


@st.composite
def records(draw) -> ObjectRecord:
    """Records as the gateway writes them."""
    parts = draw(st.none() | st.lists(st.integers(0, 5 * 2**30), min_size=1, max_size=30).map(tuple))
    return ObjectRecord(
        etag=draw(st.text("0123456789abcdef-", min_size=1, max_size=40)),
        size=sum(parts) if parts else draw(st.integers(0, 2**50)),
        mtime_ns=draw(st.integers(0, 2**63 - 1)),
        content_type=draw(st.sampled_from(["application/octet-stream", "text/plain; charset=utf-8"])),
        headers=draw(st.dictionaries(st.sampled_from(STORED_HEADERS), st.text("abc =/;", max_size=10), max_size=2)),
        user_meta=draw(
            st.dictionaries(st.text("abcxyz-", min_size=1, max_size=8), st.text("abc ", max_size=8), max_size=2)
        ),
        # Checksums are base64 digests (with a part count when COMPOSITE), as the gateway stores them.
        checksums=draw(
            st.dictionaries(
                st.sampled_from(CHECKSUM_ALGORITHMS),
                st.builds(
                    lambda digest, parts: base64.b64encode(digest).decode() + parts,
                    st.binary(min_size=4, max_size=32),
                    st.sampled_from(["", "-3"]),
                ),
                max_size=1,
            )
        ),
        checksum_type=draw(st.sampled_from(CHECKSUM_TYPES)),
        part_sizes=parts,
        dir_marker=draw(st.booleans()),
    )


# Any JSON value (no part_sizes-shaped lists of huge counts: see RUNS).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
FIELD_VALUES = {
    "etag": st.one_of(TEXT, st.just("e\r\nSet-Cookie: a=b"), JSON),
    "size": st.one_of(st.integers(-5, 2**64), st.just(True), st.just("5"), JSON),
    "mtime_ns": st.one_of(st.integers(-5, 2**64), st.just(1.5), JSON),
    "content_type": st.one_of(TEXT, st.just("text/html\r\nLocation: x"), JSON),
    "headers": st.one_of(
        st.dictionaries(
            st.sampled_from(["Set-Cookie", "Location", "Cache-Control", "Expires"]), st.one_of(TEXT, JSON), max_size=2
        ),
        JSON,
    ),
    "user_meta": st.one_of(st.dictionaries(TEXT, st.one_of(TEXT, JSON), max_size=2), JSON),
    "checksums": st.one_of(
        st.dictionaries(st.sampled_from(["CRC32", "MD5", ""]), st.one_of(TEXT, JSON), max_size=2), JSON
    ),
    "checksum_type": st.one_of(st.sampled_from(["COMPOSITE", "SOMETHING"]), JSON),
    "part_sizes": st.one_of(
        RUNS,
        st.just([[1, -3]]),
        st.just([[1.5, 2]]),
        st.just([["a", 2]]),
        st.just([[1, 2, 3]]),
        st.just([[1, 10_001]]),
        st.just({"ab": 1}),
        st.just("ab"),
        st.none(),
    ),
    "dir_marker": st.one_of(st.booleans(), st.just(1), st.just("yes"), JSON),
}


@st.composite
def forged_records(draw) -> bytes:
    """A record the gateway wrote, then edited: fields retyped, removed or added, then perhaps
    its bytes cut or altered."""
    raw = json.loads(draw(records()).encode())
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(FIELD_VALUES)))
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "set":
            raw[name] = draw(FIELD_VALUES[name])
        elif action == "delete":
            raw.pop(name, None)
        else:
            raw[draw(TEXT)] = draw(JSON)
    data = json.dumps(raw).encode()
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from([b"", b"[", b"{", b"\xff", b"1", b'"', b"]]"])) + data[at + 1 :]
    return data


ANY_BYTES = st.one_of(st.binary(max_size=200), JSON.map(lambda value: json.dumps(value).encode()), forged_records())


def _decoded(data: bytes) -> ObjectRecord | None:
    record = ObjectRecord.decode(data)
    event("decoded" if record is not None else "None")
    return record


# -- properties ------------------------------------------------------------------------------------


@given(record=records())
def test_records_the_gateway_writes_decode_to_themselves(record):
    assert ObjectRecord.decode(record.encode()) == record


@given(data=ANY_BYTES)
@example(data=b"1")  # not an object: AttributeError
@example(data=b"[" * 100_000)  # deeper than json's recursion limit: RecursionError
@example(data=b'{"etag":"e","size":2,"mtime_ns":1,"part_sizes":[[1,10001]]}')  # 10,001 parts
@example(data=b'{"etag":"e","size":2,"mtime_ns":1,"part_sizes":[[1,3]]}')  # parts add up to 3
@example(data=b'{"etag":"e","size":2,"mtime_ns":1,"headers":{"Set-Cookie":"a=b"}}')
@example(data=b'{"etag":"e\\r\\nLocation: x","size":2,"mtime_ns":1}')
@example(data=b'{"etag":1,"size":"2","mtime_ns":null,"dir_marker":"no"}')
@example(data=b'{"etag":"e","size":0,"mtime_ns":0,"checksums":{"":""},"checksum_type":""}')
def test_any_record_decodes_to_none_or_a_well_formed_record(data):
    record = _decoded(data)
    if record is not None:
        assert_well_formed(record)


@given(data=ANY_BYTES, size=st.integers(0, 2**40), mtime_ns=st.integers(0, 2**62), key=TEXT.filter(bool))
@example(data=b"null", size=5, mtime_ns=1, key="k")  # one forged xattr must not fail a whole listing
@example(data=b'{"etag":"e","size":"5","mtime_ns":1,"dir_marker":true}', size=5, mtime_ns=1, key="k")
@example(data=b'{"etag":"e","size":5,"mtime_ns":1,"checksums":{"CRC32":7}}', size=5, mtime_ns=1, key="k")
def test_any_record_is_listed_well_formed_and_as_info_for_shows_it(data, size, mtime_ns, key):
    listed = listed_info(key, size, mtime_ns, data)
    assert_well_formed_info(listed)
    record = ObjectRecord.decode(data)
    shown = info_for(key, SimpleNamespace(st_size=size, st_mtime_ns=mtime_ns), record)
    assert {f: getattr(listed, f) for f in LISTED_FIELDS} == {f: getattr(shown, f) for f in LISTED_FIELDS}


@given(data=st.one_of(ANY_BYTES, st.dictionaries(TEXT, JSON).map(lambda d: json.dumps(d).encode())))
@example(data=b"[" * 100_000)
@example(data=b'{"k":1}')
def test_any_tags_record_decodes_to_a_dict_of_strings(data):
    tags = decode_tags(data)
    assert isinstance(tags, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
