"""Fixtures: one private Slurm per test module, with the recording burst_buffer.lua.

A failing test's report gets the tail of every daemon log (slurmctld's includes each burst
buffer hook's status and message: DebugFlags=BurstBuffer). The cluster's directory is removed
after a clean run and kept, with its path printed, after a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .cluster import SlurmCluster, make_root

RECORDING_LUA = Path(__file__).with_name("recording_bb.lua")


@contextmanager
def module_cluster(
    request: pytest.FixtureRequest, root: Path, lua: Path | None, **options: Any
) -> Iterator[SlurmCluster]:
    """A module's private Slurm in ``root``: removed after a clean run, kept (path printed) after
    a failure. Not as root it fails: a skip would pass off the Slurm integration as tested, and
    CI runs the suite as root."""
    if os.geteuid() != 0:
        pytest.fail("tests/slurm must run as root (they start munged, slurmctld and slurmd)", pytrace=False)
    failed_before = request.session.testsfailed
    try:
        with SlurmCluster(root, lua, **options) as started:
            yield started
    finally:
        if request.session.testsfailed == failed_before:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nSlurm cluster files kept in {root}")


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    with module_cluster(request, make_root(), RECORDING_LUA) as started:
        yield started


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    started = getattr(item, "funcargs", {}).get("cluster")
    if report.failed and isinstance(started, SlurmCluster):
        report.sections.append(("Slurm daemon logs", started.log_tail()))
    return report
