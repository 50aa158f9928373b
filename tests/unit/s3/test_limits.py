"""AWS's request limits (s3/limits.py): part numbers and declared sizes, checked before a body."""

from __future__ import annotations

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.s3.limits import Limits, check_upload_size, part_number


# "²" is a digit to str.isdigit() but not to int(); int() refuses more than 4,300 digits.
@pytest.mark.parametrize("raw", ["0", "10001", "-1", "x", "", "1.0", "²", "9" * 5000, None])
def test_part_number_outside_1_to_10000_is_invalid_argument(raw: str | None) -> None:
    with pytest.raises(S3Error) as exc:
        part_number(raw, 10_000)
    assert exc.value.code == "InvalidArgument"
    assert exc.value.extra == {"ArgumentName": "partNumber", "ArgumentValue": raw or ""}
    assert exc.value.message == "Part number must be an integer between 1 and 10000, inclusive"


def test_part_number_bounds_are_inclusive() -> None:
    assert part_number("1", 10_000) == 1
    assert part_number("10000", 10_000) == 10_000


def test_a_site_may_allow_fewer_parts() -> None:
    with pytest.raises(S3Error, match="between 1 and 100, inclusive"):
        part_number("101", 100)


def test_aws_limits_are_the_defaults() -> None:
    assert Limits() == Limits(max_object_size=5 << 30, max_part_size=5 << 30, max_parts=10_000)


def test_a_declared_size_over_the_limit_is_entity_too_large() -> None:
    check_upload_size(5 << 30, 5 << 30)
    check_upload_size(None, 5 << 30)
    with pytest.raises(S3Error) as exc:
        check_upload_size(5 << 40, 5 << 30)
    assert exc.value.code == "EntityTooLarge" and exc.value.status == 400
    assert exc.value.extra == {"ProposedSize": str(5 << 40), "MaxSizeAllowed": str(5 << 30)}
