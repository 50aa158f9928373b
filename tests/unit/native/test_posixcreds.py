"""Per-thread POSIX credentials of both engines (native/posixcreds.c and its Python version): a
thread switched to a user holds that user's fsuid, fsgid and groups alone, the kernel checks its
file access as that user's, and restoring gives back root's.

Each switch runs on a thread of its own, whose credentials die with it: a failing test cannot
leave the test runner's thread switched. The tests run as root, as the gateway does.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

from aif_gateway import _native
from aif_gateway.fsio import pyengine

ENGINES = {"native": _native, "python": pyengine}
ALICE = (4101, 4101, (4201,))
BOB = (4102, 4102, (4202, 4203))
PROCESS = (os.geteuid(), os.getegid(), tuple(sorted(os.getgroups())))
CAP_DAC_OVERRIDE = 1
T = TypeVar("T")


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> ModuleType:
    return ENGINES[request.param]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every uid may enter and write (pytest's tmp_path lies under a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="aif-creds-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


def _root_file(directory: Path, name: str, mode: int, gid: int = 0) -> Path:
    path = directory / name
    path.write_bytes(b"secret")
    os.chown(path, 0, gid)
    path.chmod(mode)
    return path


def _on_new_thread(fn: Callable[[], T]) -> T:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def _proc_status() -> dict[str, str]:
    """This thread's /proc status lines (Uid: real, effective, saved, fs; likewise Gid)."""
    with open("/proc/thread-self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _kernel_view() -> tuple[int, int, tuple[int, ...]]:
    """(fsuid, fsgid, groups) of this thread as /proc tells them, independently of the engines."""
    status = _proc_status()
    return (
        int(status["Uid"].split()[3]),
        int(status["Gid"].split()[3]),
        tuple(sorted(int(g) for g in status["Groups"].split())),
    )


def _has_dac_override() -> bool:
    return bool(int(_proc_status()["CapEff"], 16) >> CAP_DAC_OVERRIDE & 1)


def _can_read(path: Path) -> bool:
    try:
        return path.read_bytes() == b"secret"
    except PermissionError:
        return False


def test_a_switch_sets_this_threads_fsuid_fsgid_and_groups(engine):
    def switched():
        engine.set_thread_creds(*ALICE)
        try:
            return engine.thread_creds(), _kernel_view()
        finally:
            engine.restore_thread_creds()

    assert _on_new_thread(switched) == (ALICE, ALICE)


def test_thread_creds_reports_the_process_credentials_when_not_switched(engine):
    assert engine.thread_creds() == PROCESS == _kernel_view()


def test_two_threads_hold_different_identities_at_once(engine, shared_dir):
    alices_file = _root_file(shared_dir, "alices", 0o600)
    os.chown(alices_file, ALICE[0], ALICE[1])
    both_switched = threading.Barrier(3, timeout=30)
    main_checked = threading.Barrier(3, timeout=30)
    seen_by_main = {}

    def work(name, creds):
        engine.set_thread_creds(*creds)
        try:
            both_switched.wait()
            (shared_dir / name).touch()
            result = engine.thread_creds(), _can_read(alices_file)
            main_checked.wait()
            return result
        finally:
            engine.restore_thread_creds()

    with ThreadPoolExecutor(2) as pool:
        alice = pool.submit(work, "by-alice", ALICE)
        bob = pool.submit(work, "by-bob", BOB)
        both_switched.wait()
        seen_by_main["creds"], seen_by_main["kernel"] = engine.thread_creds(), _kernel_view()
        main_checked.wait()
        assert alice.result() == (ALICE, True)
        assert bob.result() == (BOB, False)
    assert seen_by_main == {"creds": PROCESS, "kernel": PROCESS}
    made_by_alice, made_by_bob = (shared_dir / "by-alice").stat(), (shared_dir / "by-bob").stat()
    assert (made_by_alice.st_uid, made_by_alice.st_gid) == ALICE[:2]
    assert (made_by_bob.st_uid, made_by_bob.st_gid) == BOB[:2]


def test_groups_switched_in_one_thread_leave_another_threads_groups(engine):
    switched = threading.Event()
    observed = threading.Event()

    def hold_bobs_groups():
        engine.set_thread_creds(*BOB)
        try:
            switched.set()
            assert observed.wait(30)
            return _kernel_view()
        finally:
            engine.restore_thread_creds()

    def look():
        assert switched.wait(30)
        try:
            return _kernel_view(), engine.thread_creds()
        finally:
            observed.set()

    with ThreadPoolExecutor(2) as pool:
        holder, looker = pool.submit(hold_bobs_groups), pool.submit(look)
        assert looker.result() == (PROCESS, PROCESS)
        assert holder.result() == BOB


def test_a_supplementary_group_grants_what_the_group_may_do(engine, shared_dir):
    group_file = _root_file(shared_dir, "group-readable", 0o640, gid=ALICE[2][0])

    def can_read_as(creds):
        engine.set_thread_creds(*creds)
        try:
            return _can_read(group_file)
        finally:
            engine.restore_thread_creds()

    assert _on_new_thread(lambda: can_read_as(ALICE)) is True
    assert _on_new_thread(lambda: can_read_as(BOB)) is False


def test_a_user_loses_dac_override_and_restore_gives_it_back(engine, shared_dir):
    root_only = _root_file(shared_dir, "root-only", 0o600)

    def as_alice_then_root():
        engine.set_thread_creds(*ALICE)
        try:
            as_alice = _can_read(root_only), _has_dac_override()
        finally:
            engine.restore_thread_creds()
        return as_alice, (_can_read(root_only), _has_dac_override())

    assert _on_new_thread(as_alice_then_root) == ((False, False), (True, True))


def test_restore_after_an_exception_brings_back_the_process_credentials(engine, shared_dir):
    root_only = _root_file(shared_dir, "root-only", 0o600)

    def fail_while_switched():
        try:
            engine.set_thread_creds(*BOB)
            raise RuntimeError("the request failed")
        except RuntimeError:
            pass
        finally:
            engine.restore_thread_creds()
        return engine.thread_creds(), _kernel_view(), _can_read(root_only)

    assert _on_new_thread(fail_while_switched) == (PROCESS, PROCESS, True)


def test_a_failed_switch_leaves_the_thread_on_the_process_credentials(engine):
    too_many_groups = range(5000, 5000 + 70000)  # the kernel takes at most 65536

    def switch_then_fail():
        engine.set_thread_creds(*BOB)
        with pytest.raises(OSError) as failure:
            engine.set_thread_creds(ALICE[0], ALICE[1], too_many_groups)
        return failure.value.errno, engine.thread_creds()

    assert _on_new_thread(switch_then_fail) == (errno.EINVAL, PROCESS)


@pytest.mark.parametrize(
    "uid, gid, groups, error",
    [
        (-1, 0, [], ValueError),
        (2**32 - 1, 0, [], ValueError),
        (0, 2**40, [], ValueError),
        (0, 0, [2**32], ValueError),
        (0, 0, 5, TypeError),
        (0, 0, ["5"], TypeError),
        (1.5, 0, [], TypeError),
    ],
)
def test_ids_that_are_not_ids_are_refused_before_any_change(engine, uid, gid, groups, error):
    def attempt():
        with pytest.raises(error):
            engine.set_thread_creds(uid, gid, groups)
        return engine.thread_creds()

    assert _on_new_thread(attempt) == PROCESS


UNPRIVILEGED_SWITCH = """
import os, sys
from aif_gateway import _native
from aif_gateway.fsio import pyengine
engine = {"native": _native, "python": pyengine}[sys.argv[1]]
os.setgroups([])
os.setresgid(4101, 4101, 4101)
os.setresuid(4101, 4101, 4101)  # every capability is gone now
engine.set_thread_creds(4101, 4101, [])  # its own ids and groups: no privilege needed
engine.restore_thread_creds()
try:
    engine.set_thread_creds(4102, 4101, [])
except PermissionError as exc:
    print("refused", exc.errno, engine.thread_creds())
"""


def test_without_privilege_a_switch_to_another_user_is_refused(engine):
    # setfsuid fails silently (it returns the previous fsuid either way): only reading the id back
    # notices. A process of uid 4101 without capabilities may keep its ids but not take another's.
    child = subprocess.run(
        [sys.executable, "-c", UNPRIVILEGED_SWITCH, engine.engine_info()["engine"]],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.split(maxsplit=2) == ["refused", str(errno.EPERM), "(4101, 4101, ())\n"]
