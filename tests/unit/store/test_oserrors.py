"""Filesystem errors become S3 errors in one place; others pass through untouched."""

from __future__ import annotations

import asyncio
import errno

import pytest

from aif_gateway.errors import S3Error
from aif_gateway.store.oserrors import in_thread, s3_errors


@pytest.mark.parametrize(
    "number, code",
    [
        (errno.EACCES, "AccessDenied"),
        (errno.EROFS, "AccessDenied"),
        (errno.ENOSPC, "InternalError"),
        (errno.EDQUOT, "InternalError"),
        (errno.ENAMETOOLONG, "KeyTooLongError"),
    ],
)
def test_errno_with_an_s3_meaning_becomes_that_error(number: int, code: str) -> None:
    with pytest.raises(S3Error) as info, s3_errors():
        raise OSError(number, "from the filesystem")
    assert info.value.code == code
    assert isinstance(info.value.__cause__, OSError)


def test_other_os_errors_pass_through() -> None:
    with pytest.raises(ConnectionResetError), s3_errors():
        raise ConnectionResetError(errno.ECONNRESET, "client went away")


def test_in_thread_runs_off_the_loop_and_maps_errors() -> None:
    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    assert asyncio.run(in_thread(lambda a, b=0: a + b, 1, b=2)) == 3
    with pytest.raises(S3Error) as info:
        asyncio.run(in_thread(full))
    assert info.value.message == "The storage filesystem is full."
