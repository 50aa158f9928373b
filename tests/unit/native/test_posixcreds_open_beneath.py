"""open_beneath of both engines, each with openat2 and with the O_NOFOLLOW walk that replaces it
where the kernel lacks openat2 (forced here with AIF_OPENAT2=0): a path opens only what lies
beneath the directory, and a symlink is followed only where openat2 may follow it.

The tree every test gets, in tmp_path:
    outside.txt
    base/               <- the directory open_beneath works beneath
        file.txt
        sub/inner.txt
        link_in -> file.txt              link_abs -> <tmp_path>/outside.txt
        link_out -> ../outside.txt       dirlink -> sub         dirlink_out -> ..
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

from aif_gateway import _native
from aif_gateway.fsio import pyengine

ENGINES = {"native": _native, "python": pyengine}
BENEATH = _native.RESOLVE_BENEATH | _native.RESOLVE_NO_MAGICLINKS  # the default
NO_SYMLINKS = BENEATH | _native.RESOLVE_NO_SYMLINKS


class Opener(NamedTuple):
    engine: ModuleType
    resolver: str  # "openat2" or "walk"
    base_fd: int

    def read(self, path: str | bytes, resolve: int = BENEATH) -> bytes:
        fd = self.engine.open_beneath(self.base_fd, path, os.O_RDONLY, resolve=resolve)
        try:
            return os.read(fd, 100)
        finally:
            os.close(fd)

    def refusal(self, path: str | bytes, flags: int = os.O_RDONLY, resolve: int = BENEATH) -> OSError:
        with pytest.raises(OSError) as refused:
            os.close(self.engine.open_beneath(self.base_fd, path, flags, resolve=resolve))
        assert refused.value.filename == path
        return refused.value


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "outside.txt").write_bytes(b"outside")
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "file.txt").write_bytes(b"inside")
    (base / "sub" / "inner.txt").write_bytes(b"inner")
    (base / "link_in").symlink_to("file.txt")
    (base / "link_out").symlink_to("../outside.txt")
    (base / "link_abs").symlink_to(tmp_path / "outside.txt")
    (base / "dirlink").symlink_to("sub")
    (base / "dirlink_out").symlink_to("..")
    return base


@pytest.fixture(params=[(e, r) for e in sorted(ENGINES) for r in ("openat2", "walk")], ids=lambda p: "-".join(p))
def opener(request: pytest.FixtureRequest, tree: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Opener]:
    engine_name, resolver = request.param
    if resolver == "walk":
        monkeypatch.setenv("AIF_OPENAT2", "0")
    else:
        monkeypatch.delenv("AIF_OPENAT2", raising=False)
    base_fd = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    yield Opener(ENGINES[engine_name], resolver, base_fd)
    os.close(base_fd)


def test_engine_info_says_whether_openat2_is_used(opener):
    assert opener.engine.engine_info()["openat2"] == {"openat2": "yes", "walk": "walk"}[opener.resolver]


@pytest.mark.parametrize(
    "path, content",
    [
        ("file.txt", b"inside"),
        ("sub/inner.txt", b"inner"),
        ("./sub//inner.txt", b"inner"),
        (b"sub/inner.txt", b"inner"),
    ],
)
def test_a_file_beneath_opens(opener, path, content):
    assert opener.read(path) == content


def test_the_new_fd_is_close_on_exec(opener):
    fd = opener.engine.open_beneath(opener.base_fd, "file.txt", os.O_RDONLY)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["../outside.txt", "sub/../../outside.txt", "/etc/passwd", b"../outside.txt"])
def test_a_path_leading_out_is_refused_as_a_cross_device_link(opener, path):
    assert opener.refusal(path).errno == errno.EXDEV


@pytest.mark.parametrize("path", ["link_out", "link_abs", "dirlink_out/outside.txt"])
def test_a_symlink_leading_out_is_refused(opener, path):
    # openat2 follows the link and finds itself outside; the walk never follows one.
    assert opener.refusal(path).errno == {"openat2": errno.EXDEV, "walk": errno.ELOOP}[opener.resolver]


@pytest.mark.parametrize("path, content", [("link_in", b"inside"), ("dirlink/inner.txt", b"inner")])
def test_a_symlink_staying_beneath_is_followed_by_openat2_only(opener, path, content):
    if opener.resolver == "openat2":
        assert opener.read(path) == content
    else:
        assert opener.refusal(path).errno == errno.ELOOP


def test_a_dotdot_staying_beneath_is_followed_by_openat2_only(opener):
    if opener.resolver == "openat2":
        assert opener.read("sub/../file.txt") == b"inside"
    else:
        assert opener.refusal("sub/../file.txt").errno == errno.EXDEV


@pytest.mark.parametrize("path", ["link_in", "dirlink/inner.txt", "link_out"])
def test_no_symlinks_refuses_every_symlink(opener, path):
    assert opener.refusal(path, resolve=NO_SYMLINKS).errno == errno.ELOOP


def test_o_path_does_not_open_a_symlink_the_caller_did_not_ask_for(opener):
    assert opener.refusal("link_in", os.O_PATH, resolve=NO_SYMLINKS).errno == errno.ELOOP


def test_a_magic_link_is_refused(opener, tree):
    proc_fds = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    target = os.open(tree / "file.txt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        magic = Opener(opener.engine, opener.resolver, proc_fds)
        assert magic.refusal(str(target)).errno == errno.ELOOP
    finally:
        os.close(target)
        os.close(proc_fds)


def test_create_exclusive_makes_a_new_file_beneath(opener, tree):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = opener.engine.open_beneath(opener.base_fd, "sub/new.txt", flags, 0o600)
    os.write(fd, b"new")
    os.close(fd)
    assert (tree / "sub" / "new.txt").read_bytes() == b"new"
    assert stat.S_IMODE((tree / "sub" / "new.txt").stat().st_mode) == 0o600
    assert opener.refusal("sub/new.txt", flags).errno == errno.EEXIST


def test_create_exclusive_does_not_write_through_a_symlink(opener, tree):
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    assert opener.refusal("link_in", flags).errno == errno.EEXIST
    assert (tree / "file.txt").read_bytes() == b"inside"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("", errno.ENOENT),
        ("missing.txt", errno.ENOENT),
        ("missing/x", errno.ENOENT),
        ("file.txt/x", errno.ENOTDIR),
        ("file.txt/", errno.ENOTDIR),
        ("file.txt/.", errno.ENOTDIR),
        ("x" * 256, errno.ENAMETOOLONG),
        ("x" * 256 + "/..", errno.ENAMETOOLONG),
    ],
)
def test_the_kernels_errors_come_with_the_path(opener, path, expected):
    assert opener.refusal(path).errno == expected


@pytest.mark.parametrize("path", [".", "sub/", "./", "sub/."])
def test_a_directory_opens_as_the_kernel_reads_its_path(opener, path):
    fd = opener.engine.open_beneath(opener.base_fd, path, os.O_RDONLY)
    try:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


@pytest.mark.parametrize("path", ["proc/version", "proc"])
def test_no_xdev_refuses_a_mount_point(opener, path):
    root = Opener(opener.engine, opener.resolver, os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
    try:
        os.close(opener.engine.open_beneath(root.base_fd, path, os.O_RDONLY))  # /proc is a mount of its own
        assert root.refusal(path, resolve=BENEATH | _native.RESOLVE_NO_XDEV).errno == errno.EXDEV
    finally:
        os.close(root.base_fd)


@pytest.mark.parametrize(
    "arguments, error",
    [
        ({"path": "file.txt", "mode": 0o10000}, ValueError),
        ({"path": "file.txt", "resolve": 0x10}, ValueError),  # RESOLVE_IN_ROOT: not offered
        ({"path": "file\0.txt"}, ValueError),
        ({"path": 5}, TypeError),
    ],
)
def test_arguments_outside_the_contract_are_refused(opener, arguments, error):
    with pytest.raises(error):
        opener.engine.open_beneath(opener.base_fd, flags=os.O_RDONLY, **arguments)


def test_both_engines_offer_the_same_resolve_flags():
    names = ("RESOLVE_BENEATH", "RESOLVE_NO_SYMLINKS", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_XDEV")
    assert [getattr(_native, n) for n in names] == [getattr(pyengine, n) for n in names] == [8, 4, 2, 1]


# A child whose seccomp filter answers openat2 (437 on x86_64 and aarch64) with an errno, as
# container runtimes do for system calls they do not know: before the engine is imported (found by
# the probe) or after (found by the first call).
WITHOUT_OPENAT2 = """
import ctypes, errno, os, sys
engine_name, refusal, when, base = sys.argv[1], getattr(errno, sys.argv[2]), sys.argv[3], sys.argv[4]

def refuse_openat2():
    code = [(0x20, 0, 0, 0), (0x15, 0, 1, 437), (0x06, 0, 0, 0x00050000 | refusal), (0x06, 0, 0, 0x7FFF0000)]
    filters = (ctypes.c_uint64 * len(code))(*(c | jt << 16 | jf << 24 | k << 32 for c, jt, jf, k in code))
    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    program = Program(len(code), ctypes.cast(filters, ctypes.c_void_p))
    assert libc.prctl(22, 2, ctypes.byref(program), 0, 0) == 0  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER

if when == "before-import":
    refuse_openat2()
from aif_gateway import _native
from aif_gateway.fsio import pyengine
engine = {"native": _native, "python": pyengine}[engine_name]
if when == "after-import":
    refuse_openat2()
base_fd = os.open(base, os.O_PATH)
fd = engine.open_beneath(base_fd, "sub/inner.txt", os.O_RDONLY)
print(os.read(fd, 100).decode())
try:
    engine.open_beneath(base_fd, "link_in", os.O_RDONLY)
except OSError as exc:
    print(errno.errorcode[exc.errno])
print(engine.engine_info()["openat2"])
"""


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
@pytest.mark.parametrize(
    "refusal, when",
    [("ENOSYS", "before-import"), ("EPERM", "before-import"), ("E2BIG", "before-import"), ("ENOSYS", "after-import")],
)
def test_a_kernel_without_openat2_gets_the_walk(tree, engine_name, refusal, when):
    env = {k: v for k, v in os.environ.items() if k != "AIF_OPENAT2"}
    child = subprocess.run(
        [sys.executable, "-c", WITHOUT_OPENAT2, engine_name, refusal, when, str(tree)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.split() == ["inner", "ELOOP", "walk"]
