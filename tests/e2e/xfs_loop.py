"""A real XFS filesystem (with reflink) on a loop device, for tests that need extent sharing.

``xfs_mount`` (a pytest fixture) makes a sparse image file, ``mkfs.xfs -m reflink=1`` on it,
mounts it with ``mount -o loop`` (the loop device is detached automatically at unmount), yields
the mount point, and unmounts at teardown. It needs root and xfsprogs (``tests/run`` installs
them on CI, where the tests run as root). Where that is impossible it fails with the reason: a
skipped test would pass off an unverified reflink path as tested.

``shared_bytes(path)`` counts the bytes of ``path`` in extents shared with another file
(``xfs_io -c "fiemap -v"``, flag FIEMAP_EXTENT_SHARED).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

IMAGE_SIZE = 1 << 30  # sparse: only what the tests write takes space
_FIEMAP_EXTENT_SHARED = 0x2000
_SECTOR = 512
# "   0: [0..6143]:       192..6335         6144 0x2000" (holes read "hole" and are skipped)
_EXTENT = re.compile(r"^\s*\d+: \[\d+\.\.\d+\]:\s+\d+\.\.\d+\s+(\d+)\s+(0x[0-9a-f]+)\s*$")


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(
            f"XFS loop mount: `{' '.join(command)}` failed ({result.returncode}): {result.stderr.strip()}",
            pytrace=False,
        )


@pytest.fixture(scope="module")
def xfs_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.fail("XFS loop mount: these tests must run as root (mount -o loop)", pytrace=False)
    for tool in ("mkfs.xfs", "xfs_io", "mount", "umount"):
        if shutil.which(tool) is None:
            pytest.fail(f"XFS loop mount: {tool} is missing (apt-get install xfsprogs mount)", pytrace=False)
    work = tmp_path_factory.mktemp("xfs")
    image, mount_point = work / "xfs.img", work / "mnt"
    with open(image, "wb") as f:
        f.truncate(IMAGE_SIZE)
    mount_point.mkdir()
    _run("mkfs.xfs", "-q", "-m", "reflink=1", str(image))
    _run("mount", "-o", "loop", str(image), str(mount_point))
    try:
        yield mount_point
    finally:
        _run("umount", str(mount_point))
        image.unlink()


def shared_bytes(path: Path) -> int:
    out = subprocess.run(["xfs_io", "-r", "-c", "fiemap -v", str(path)], capture_output=True, text=True, check=True)
    shared = 0
    for line in out.stdout.splitlines():
        match = _EXTENT.match(line)
        if match and int(match.group(2), 16) & _FIEMAP_EXTENT_SHARED:
            shared += int(match.group(1)) * _SECTOR
    return shared
