import pytest

from aif_gateway.errors import S3Error
from aif_gateway.s3.ranges import parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-1000", 100, (0, 99)),
        ("bytes=50-1000", 100, (50, 99)),
        ("bytes=99-99", 100, (99, 99)),
        ("bytes=0-0", 1, (0, 0)),
        ("BYTES=1-2", 10, (1, 2)),
    ],
)
def test_single_ranges(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [None, "", "bytes=", "bytes=-", "items=0-1", "bytes=5-2", "bytes=0-1,3-4", "bytes=a-b", "0-1", "bytes=1-2-3"],
)
def test_malformed_or_multiple_ranges_mean_the_whole_object(header):
    assert parse_range(header, 100) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=100-", 100),
        ("bytes=100-200", 100),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-0", 100),
        ("bytes=-5", 0),
    ],
)
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(S3Error) as info:
        parse_range(header, size)
    err = info.value
    assert err.code == "InvalidRange" and err.status == 416
    assert err.extra == {"RangeRequested": header, "ActualObjectSize": str(size)}
    assert err.headers["Content-Range"] == f"bytes */{size}"
