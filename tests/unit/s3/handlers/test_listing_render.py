"""The listing's hand-rendered XML against the generic renderer it stands in for, byte for byte."""

from __future__ import annotations

import random
import string

import pytest

from aif_gateway.s3.handlers.listing import STORAGE_CLASS, contents, last_modified, owner_xml, url_encode
from aif_gateway.s3.responses import iso8601
from aif_gateway.s3.xmlio import _ESCAPE_TABLE, Fragment, XmlChildren, escape_text, render, to_xml
from aif_gateway.store.base import ObjectInfo

T0 = 1_735_689_600_123_456_789


def generic_entry(info: ObjectInfo, encode, owner: XmlChildren | None) -> XmlChildren:
    """The ``Contents`` entry as the handler built it before ``contents`` (the Python fallback)."""
    entry: XmlChildren = [
        ("Key", encode(info.key)),
        ("LastModified", iso8601(info.mtime_ns)),
        ("ETag", f'"{info.etag}"'),
    ]
    entry.extend(("ChecksumAlgorithm", algorithm) for algorithm in info.checksums)
    if info.checksums and info.checksum_type:
        entry.append(("ChecksumType", info.checksum_type))
    entry.append(("Size", info.size))
    entry.append(("Owner", owner))
    entry.append(("StorageClass", STORAGE_CLASS))
    return entry


ALPHABET = string.ascii_letters + string.digits + "/-_.~ +%&<>\"'\n\r\t\x01\x1féü日本\U0001f600"


def random_objects(rng: random.Random, count: int) -> list[ObjectInfo]:
    objects = []
    for _ in range(count):
        checksums = {name: "AAAA" for name in rng.sample(["CRC32", "CRC32C", "SHA256"], rng.randrange(3))}
        objects.append(
            ObjectInfo(
                key="".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 30))),
                size=rng.randrange(10**12),
                mtime_ns=rng.randrange(-(10**18), 4 * 10**18),
                etag=rng.choice(["d41d8cd98f00b204e9800998ecf8427e", "abc-3", 'odd<&>"etag']),
                checksums=checksums,
                checksum_type=rng.choice([None, "COMPOSITE", "FULL_OBJECT"]),
            )
        )
    return objects


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("url", [False, True])
@pytest.mark.parametrize("owner", [None, "alice", "o'<&>"])
def test_contents_is_what_the_generic_renderer_makes(seed: int, url: bool, owner: str | None) -> None:
    objects = random_objects(random.Random(seed), 50)
    encode = url_encode if url else (lambda text: text)
    generic = [("Contents", generic_entry(info, encode, owner_xml(owner))) for info in objects]
    fast = contents(objects, url_encode if url else None, owner_xml(owner))
    assert to_xml("ListBucketResult", [("Name", "b"), fast]) == to_xml("ListBucketResult", [("Name", "b"), *generic])


def test_an_empty_page_has_no_contents() -> None:
    assert contents([], None, None) == ""


def test_last_modified_is_iso8601() -> None:
    rng = random.Random(7)
    values = [0, 1, 999_999, 1_000_000, -1, -999_999, -1_000_000, -1_000_000_001, T0]
    values += [rng.randrange(-2 * 10**18, 4 * 10**18) for _ in range(5000)]
    values += [T0 + rng.randrange(10**9) for _ in range(1000)]  # many in the same second
    assert [last_modified(v) for v in values] == [iso8601(v) for v in values]


def test_escape_text_escapes_only_what_needs_it() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(20)))
        assert escape_text(text) == text.translate(_ESCAPE_TABLE)


def test_a_fragment_goes_in_unescaped_inside_its_element_or_bare() -> None:
    inner = render([("ID", "a&b"), ("Flag", True)])
    assert inner == "<ID>a&amp;b</ID><Flag>true</Flag>" and isinstance(inner, Fragment)
    doc = to_xml("R", [("Owner", inner), Fragment("<X>1</X><X>2</X>"), ("Text", "<not markup>")], namespace=False)
    assert doc.endswith(
        b"<R><Owner><ID>a&amp;b</ID><Flag>true</Flag></Owner><X>1</X><X>2</X><Text>&lt;not markup&gt;</Text></R>"
    )


def test_numbers_where_strings_belong_render_as_the_generic_renderer_does() -> None:
    # A record written by something else than the gateway may hold them; the page must still render.
    odd = [ObjectInfo(key="k", size=1, mtime_ns=T0, etag=5, checksums={"CRC32": "x"}, checksum_type=7)]  # type: ignore[arg-type]
    generic = [("Contents", generic_entry(odd[0], lambda text: text, None))]
    assert to_xml("R", [contents(odd, None, None)]) == to_xml("R", generic)
