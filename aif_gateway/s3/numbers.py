"""Numbers in requests: ASCII decimal digits only, and few enough to mean a real size.

``str.isdigit()`` and ``re``'s ``\\d`` also take digits such as "²" or "٣", which ``int()``
refuses or reads, and ``int()`` refuses strings of over 4,300 digits: each was a 500 from a
header or query value (tests/unit/test_fuzz_*.py). Every count, size, offset and part number a
request carries goes through ``decimal``.
"""

from __future__ import annotations

import re

__all__ = ["DECIMAL", "decimal"]

# The pattern, for parsers that match more than a number (byte ranges).
# 19 digits hold every offset and size a 64-bit file can have; more is never a real number here.
DECIMAL = r"[0-9]{1,19}"
_DECIMAL = re.compile(DECIMAL)


def decimal(text: str | None) -> int | None:
    """The value of ``text`` (surrounding spaces allowed), or None if it is no such number."""
    if text is None:
        return None
    text = text.strip()
    return int(text) if _DECIMAL.fullmatch(text) else None
