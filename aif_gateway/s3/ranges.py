"""The Range header with S3's semantics: one pure function.

``parse_range(header, size) -> (first, last) | None`` (inclusive bounds):
- ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n``; an end past the object is clamped.
- A start at or past the size, a suffix of zero bytes, or any range of an empty object is
  ``InvalidRange`` (416) carrying ``RangeRequested`` and ``ActualObjectSize``.
- A header that is not a single well-formed byte range (another unit, ``a-b`` with a > b,
  several ranges: S3 serves one range per GET) is ignored: None means the whole object,
  as RFC 9110 asks of a server that does not honour a Range.
"""

from __future__ import annotations

import re

from ..errors import S3Error
from .numbers import DECIMAL

__all__ = ["parse_range"]

# ASCII digits, few enough to be an offset (numbers.py); anything else is not a range we honour.
_SINGLE_RANGE = re.compile(rf"bytes=\s*({DECIMAL})?\s*-\s*({DECIMAL})?\s*", re.IGNORECASE)


def _unsatisfiable(header: str, size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        extra={"RangeRequested": header, "ActualObjectSize": str(size)},
        headers={"Content-Range": f"bytes */{size}"},
    )


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    if not header:
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - suffix), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last_text and last < first:
        return None
    if first >= size:
        raise _unsatisfiable(header, size)
    return first, min(last, size - 1)
