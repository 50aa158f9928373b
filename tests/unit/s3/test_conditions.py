import pytest

from aif_gateway.errors import NotModified, S3Error
from aif_gateway.s3.conditions import (
    check_copy_source_conditions,
    check_read_conditions,
    etag_matches,
    write_conditions,
)
from aif_gateway.store.base import ObjectInfo

# Last-Modified: Wed, 01 Jan 2025 12:00:00 GMT, plus a fraction of a second the client never sees.
MTIME_NS = 1_735_732_800_000_000_000 + 250_000_000
INFO = ObjectInfo(key="k", size=3, mtime_ns=MTIME_NS, etag="abc")
BEFORE = "Wed, 01 Jan 2025 11:00:00 GMT"
SAME = "Wed, 01 Jan 2025 12:00:00 GMT"
AFTER = "Wed, 01 Jan 2025 13:00:00 GMT"


def outcome(headers, check=check_read_conditions):
    try:
        check(headers, INFO)
    except NotModified:
        return 304
    except S3Error as err:
        return err.status
    return 200


@pytest.mark.parametrize(
    ("value", "matches"),
    [('"abc"', True), ("abc", True), ('W/"abc"', True), ('"x", "abc"', True), ("*", True), ('"abd"', False)],
)
def test_etag_lists(value, matches):
    assert etag_matches(value, "abc") is matches


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 200),
        ({"If-Match": '"abc"'}, 200),
        ({"If-Match": '"zzz"'}, 412),
        ({"If-Unmodified-Since": BEFORE}, 412),
        ({"If-Unmodified-Since": SAME}, 200),
        ({"If-None-Match": '"abc"'}, 304),
        ({"If-None-Match": '"zzz"'}, 200),
        ({"If-Modified-Since": SAME}, 304),
        ({"If-Modified-Since": AFTER}, 304),
        ({"If-Modified-Since": BEFORE}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        # S3's documented combinations (RFC 7232 section 6 order).
        ({"If-Match": '"abc"', "If-Unmodified-Since": BEFORE}, 200),
        ({"If-None-Match": '"zzz"', "If-Modified-Since": AFTER}, 200),
        ({"If-Match": '"zzz"', "If-None-Match": '"abc"'}, 412),
    ],
)
def test_read_conditions(headers, status):
    assert outcome(headers) == status


def test_precondition_failure_names_the_condition():
    with pytest.raises(S3Error) as info:
        check_read_conditions({"If-Unmodified-Since": BEFORE}, INFO)
    assert info.value.code == "PreconditionFailed"
    assert info.value.extra["Condition"] == "If-Unmodified-Since"


def test_not_modified_carries_the_validators():
    with pytest.raises(NotModified) as info:
        check_read_conditions({"If-None-Match": "*"}, INFO)
    assert (info.value.etag, info.value.last_modified_ns) == ("abc", MTIME_NS)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-amz-copy-source-if-match": '"abc"'}, 200),
        ({"x-amz-copy-source-if-match": '"zzz"'}, 412),
        ({"x-amz-copy-source-if-none-match": '"abc"'}, 412),
        ({"x-amz-copy-source-if-modified-since": AFTER}, 412),
        ({"x-amz-copy-source-if-unmodified-since": BEFORE}, 412),
        ({"x-amz-copy-source-if-match": '"abc"', "x-amz-copy-source-if-unmodified-since": BEFORE}, 200),
        ({"x-amz-copy-source-if-none-match": '"zzz"', "x-amz-copy-source-if-modified-since": AFTER}, 200),
        ({"If-Match": '"zzz"'}, 200),
    ],
)
def test_copy_source_conditions_fail_with_412_only(headers, status):
    assert outcome(headers, check_copy_source_conditions) == status


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (None, False)),
        ({"If-None-Match": "*"}, (None, True)),
        ({"If-Match": '"abc"'}, ("abc", False)),
        ({"If-Match": "abc"}, ("abc", False)),
        ({"If-Match": "*"}, ("*", False)),
    ],
)
def test_write_conditions(headers, expected):
    assert write_conditions(headers) == expected


@pytest.mark.parametrize("headers", [{"If-None-Match": '"abc"'}, {"If-None-Match": "*", "If-Match": '"abc"'}])
def test_write_if_none_match_other_than_star_is_not_implemented(headers):
    with pytest.raises(S3Error) as info:
        write_conditions(headers)
    assert info.value.code == "NotImplemented"
    assert info.value.extra["Header"] == "If-None-Match"
