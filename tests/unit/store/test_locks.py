"""Per-key locks exclude across real processes and across threads of one process."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import shutil
import threading
from pathlib import Path

from aif_gateway.store.locks import LOCK_FILE, key_lock, lock_slot

# spawn: a fresh interpreter per worker, like separate gateway processes (and no fork-with-threads).
_ctx = multiprocessing.get_context("spawn")


def _increment(internal: Path, counter: Path, rounds: int) -> None:
    """Read-modify-write a counter under the lock: any overlap loses an increment."""
    for _ in range(rounds):
        with key_lock(internal, "the/key"):
            value = int(counter.read_text())
            os.sched_yield()
            counter.write_text(str(value + 1))


def _increment_with_threads(internal: Path, counter: Path, rounds: int) -> None:
    threads = [threading.Thread(target=_increment, args=(internal, counter, rounds)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _slot_is_free(lock_file: Path, slot: int) -> bool:
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot, os.SEEK_SET)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _report_slot_free(lock_file: Path, slot: int, result: multiprocessing.queues.Queue) -> None:  # type: ignore[name-defined]
    result.put(_slot_is_free(lock_file, slot))


def _slot_free_in_other_process(lock_file: Path, slot: int) -> bool:
    result = _ctx.Queue()
    proc = _ctx.Process(target=_report_slot_free, args=(lock_file, slot, result))
    proc.start()
    answer = result.get(timeout=60)
    proc.join(timeout=60)
    return bool(answer)


def test_processes_with_threads_never_overlap(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    procs = [_ctx.Process(target=_increment_with_threads, args=(tmp_path, counter, 40)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert counter.read_text() == str(4 * 3 * 40)


def test_threads_of_one_process_never_overlap(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("0")
    _increment_with_threads(tmp_path, counter, 200)
    assert counter.read_text() == str(3 * 200)


def test_the_key_slot_is_held_exactly_while_inside(tmp_path: Path) -> None:
    lock_file = tmp_path / LOCK_FILE
    with key_lock(tmp_path, "k"):
        assert not _slot_free_in_other_process(lock_file, lock_slot("k"))
        other = next(str(i) for i in range(100) if lock_slot(str(i)) != lock_slot("k"))
        assert _slot_free_in_other_process(lock_file, lock_slot(other))
    assert _slot_free_in_other_process(lock_file, lock_slot("k"))


def test_a_recreated_lock_file_is_locked_not_the_deleted_one(tmp_path: Path) -> None:
    internal = tmp_path / ".aifgw"
    internal.mkdir()
    with key_lock(internal, "k"):
        pass
    shutil.rmtree(internal)  # the bucket was deleted and created again
    internal.mkdir()
    with key_lock(internal, "k"):
        assert not _slot_free_in_other_process(internal / LOCK_FILE, lock_slot("k"))


def test_slots_are_stable_and_in_range() -> None:
    assert lock_slot("a/b") == lock_slot("a/b")
    assert all(0 <= lock_slot(str(i)) < 2**20 for i in range(1000))
