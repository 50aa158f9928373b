"""deploy/slurm/prolog.sh, task_prolog.sh and epilog.sh on a private Slurm 22.05 without a burst
buffer plugin: the same ``#BB_LUA`` directives, staged once the job holds its node and GPU.

Shown: the Prolog stages the dataset (after the allocation: the cost the burst buffer avoids), the
TaskProlog hands its path to the job, the Epilog stages the results out as the job's user and
releases the dataset; a missing source cancels the job with the reason in its Comment and leaves
the node in service.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import NODE_NAME, TEST_USER, SlurmCluster, make_root
from .conftest import module_cluster
from .staging_support import StagingSite, env_lines, eventually, reports, sums_file

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "slurm"
SCRIPTS = ("prolog.sh", "epilog.sh", "task_prolog.sh", "aif-stage-lib.sh")


@pytest.fixture(scope="module")
def hooks() -> Iterator[Path]:
    """The scripts as a site installs them: together in one directory, settings beside them."""
    root = make_root("aifgw-slurm-")
    hooks = root / "hooks"
    hooks.mkdir(mode=0o755)
    for name in SCRIPTS:
        shutil.copy2(DEPLOY / name, hooks / name)
    yield hooks


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, hooks: Path) -> Iterator[SlurmCluster]:
    extra = [
        f"Prolog={hooks}/prolog.sh",
        f"Epilog={hooks}/epilog.sh",
        f"TaskProlog={hooks}/task_prolog.sh",
        "PrologFlags=Alloc",
    ]
    with module_cluster(request, hooks.parent, None, extra_conf=extra) as started:
        yield started


@pytest.fixture(scope="module")
def site(cluster: SlurmCluster, hooks: Path) -> Iterator[StagingSite]:
    started = StagingSite(cluster.root, hooks).start()
    try:
        # Readable by the job user (task_prolog.sh reads AIF_STAGE_STATE from it), so the site's
        # keys live in a root-only AWS_SHARED_CREDENTIALS_FILE.
        started.write_settings(keys_inline=False, mode=0o644)
        yield started
    finally:
        started.close()


@pytest.fixture(autouse=True)
def _no_job_left(cluster: SlurmCluster) -> Iterator[None]:
    yield
    cluster.run("scancel", "--user", TEST_USER, check=False)


def test_prolog_stages_in_task_prolog_points_the_job_at_it_epilog_stages_out(
    cluster: SlurmCluster, site: StagingSite
) -> None:
    bucket = site.new_bucket()
    files = {f"part-{i:03d}.parquet": os.urandom(20_000 + i) for i in range(40)}
    site.put_tree(bucket, "tables", files)
    sums = sums_file(cluster.jobs_dir, files, f"sums-{uuid.uuid4().hex}.txt")
    results = cluster.jobs_dir / f"results-{uuid.uuid4().hex}"
    job = cluster.sbatch(
        f"#!/bin/sh\n#BB_LUA stage_in s3://{bucket}/tables as tables\n"
        f"#BB_LUA stage_out {results} s3://{bucket}/out\n"
        f'cd "$AIF_DATASET" && sha256sum --quiet --strict -c {sums} && echo CHECKSUMS=ok\n'
        "echo AIF_DATASET=$AIF_DATASET\necho AIF_DATASET_TABLES=$AIF_DATASET_TABLES\n"
        "echo AIF_STAGE_LOG=$AIF_STAGE_LOG\necho CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES\n"
        f"mkdir -p {results} && echo 'epoch 1' > {results}/metrics.txt\n",
        "--gres=gpu:1",
    )
    record = cluster.wait_for(job, "COMPLETED", "FAILED", "CANCELLED", timeout=60)
    output = cluster.output(job)
    assert record["job_state"] == "COMPLETED", f"{output}\n{site.log(job)}"
    assert record["burst_buffer"] == ""  # the Prolog's doing, not a burst buffer plugin's
    seen = env_lines(output)
    assert seen["CHECKSUMS"] == "ok", output
    assert seen["AIF_DATASET"] == seen["AIF_DATASET_TABLES"]
    assert Path(seen["AIF_DATASET"]).parent.parent == site.cache
    assert seen["AIF_STAGE_LOG"] == str(site.state / "logs" / f"{job}.log")
    assert seen["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    # The stage ran after the job got its node and GPU: the cost of a Prolog.
    marker = Path(seen["AIF_DATASET"]) / ".aifstage" / "complete.json"
    assert record["start_time"] <= marker.stat().st_mtime

    # The Epilog runs after the job: stage-out as the user, then the lease is released.
    eventually(lambda: site.objects(bucket, "out") == {"metrics.txt": b"epoch 1\n"}, what="results staged out")
    stage_in, stage_out = reports(site.log(job))
    assert stage_in["cache"]["hit"] is False and stage_in["files"] == len(files)
    assert stage_out["direction"] == "out" and stage_out["files"] == 1
    key = stage_in["cache"]["key"]
    eventually(lambda: site.leases().get(key) == [], what="lease released")
    assert not (site.state / "env" / str(job)).exists()


def test_prolog_failure_cancels_the_job_with_the_reason_and_keeps_the_node(
    cluster: SlurmCluster, site: StagingSite
) -> None:
    bucket = site.new_bucket()
    missing = f"s3://{bucket}/absent-{uuid.uuid4().hex[:8]}"
    job = cluster.sbatch(f"#!/bin/sh\n#BB_LUA stage_in {missing}\necho ran\n", "--gres=gpu:1")
    cluster.wait_for(job, "CANCELLED", timeout=60)
    comment = cluster.job(job)["comment"]
    assert comment == (
        f"aif-stage: stage_in {missing} failed: no objects at {missing}: check the bucket "
        f"and prefix (log: {site.state}/logs/{job}.log)"
    )
    assert not (cluster.jobs_dir / f"slurm-{job}.out").exists()
    # Not drained: the Prolog exited 0 after cancelling.
    state = cluster.run("sinfo", "-h", "-N", "-n", NODE_NAME, "-o", "%T").stdout.strip()
    assert state == "idle"
