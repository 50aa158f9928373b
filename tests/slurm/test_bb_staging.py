"""deploy/slurm/burst_buffer.lua on a private Slurm 22.05, with the real gateway and the real
staging CLI: GPU jobs of an ordinary user that ask for datasets with ``#BB_LUA`` directives.

Shown: the job pends (BurstBufferStageIn) without node or GPU while the bytes move and starts
only once every file is staged and verified, reading it from $AIF_DATASET; a second job reuses
the cached dataset without moving a byte; stage-out copies what the job wrote after it ends, as
the job's user; a missing source holds the job with the URL in its reason; malformed directives
are refused at sbatch; shell metacharacters in directives stay text.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import TEST_USER, SlurmCluster, make_root
from .conftest import module_cluster
from .staging_support import (
    StagingSite,
    buffers_left,
    cache_entries,
    env_lines,
    eventually,
    gres_used,
    journaled_files,
    reports,
    staged_files,
    sums_file,
)

LUA = Path(__file__).resolve().parents[2] / "deploy" / "slurm" / "burst_buffer.lua"
KiB = 1024
MiB = 1024 * KiB


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    with module_cluster(request, make_root(), LUA, stage_in_timeout_s=300) as started:
        yield started


@pytest.fixture(scope="module")
def site(cluster: SlurmCluster) -> Iterator[StagingSite]:
    started = StagingSite(cluster.root, cluster.etc).start()
    try:
        # The site's keys inline: the settings file is then root's alone (the hooks run as root).
        # --jobs 2 keeps the many-small-files stage-in below long enough to watch.
        started.write_settings(keys_inline=True, mode=0o600, AIF_STAGE_EXTRA_ARGS="--jobs 2 --progress-interval 1")
        yield started
    finally:
        started.close()


@pytest.fixture(autouse=True)
def _no_job_left(cluster: SlurmCluster) -> Iterator[None]:
    yield
    # --hurry: a job held in STAGE_OUT by a failed stage-out is torn down too.
    cluster.run("scancel", "--hurry", "--user", TEST_USER, check=False)
    eventually(lambda: not buffers_left(cluster), what="burst buffers torn down")


def submit_rejected(cluster: SlurmCluster, script: str) -> str:
    """sbatch's error for a script it refused (as the job user)."""
    path = cluster.jobs_dir / f"rejected-{uuid.uuid4().hex}.sh"
    path.write_text(script)
    path.chmod(0o644)
    result = cluster.run("sbatch", "--gres=gpu:1", str(path), user=TEST_USER, check=False)
    assert result.returncode != 0, f"sbatch accepted it: {result.stdout}"
    return result.stderr


def stage_in_pids(source: str) -> list[int]:
    """The running `aif-gateway stage in` of ``source`` (its Python process)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # The Python process itself, not the shell lines around it.
            if b"python" in argv[0] and b"in" in argv and source.encode() in argv:
                found.append(int(entry.name))
    return found


def finished(cluster: SlurmCluster, site: StagingSite, job: int, timeout: float = 60) -> str:
    """Wait for the job to complete (stage-out included); its output."""
    record = cluster.wait_for(job, "COMPLETED", "FAILED", "CANCELLED", timeout=timeout)
    output = cluster.output(job) if (cluster.jobs_dir / f"slurm-{job}.out").exists() else ""
    assert record["job_state"] == "COMPLETED", f"{record['job_state']}: {output}\n{site.log(job)}"
    return output


def test_job_pends_without_gpu_while_its_dataset_moves_then_reads_it_verified(
    cluster: SlurmCluster, site: StagingSite
) -> None:
    bucket = site.new_bucket()
    files = {f"train/{i:05d}.bin": os.urandom(4 * KiB) for i in range(1500)}
    files.update({"labels.csv": os.urandom(3 * MiB + 17), "val/big.bin": os.urandom(5 * MiB)})
    site.put_tree(bucket, "imagenet", files)
    sums = sums_file(cluster.jobs_dir, files, f"sums-{uuid.uuid4().hex}.txt")
    earlier = cache_entries(site.cache)
    job = cluster.sbatch(
        f"#!/bin/sh\n#SBATCH --job-name=train\n#BB_LUA stage_in s3://{bucket}/imagenet\n\n"
        "echo STARTED=$(date +%s.%N)\n"
        f'cd "$AIF_DATASET" && sha256sum --quiet --strict -c {sums} && echo CHECKSUMS=ok\n'
        f"echo FILES=$(find . -path ./.aifstage -prune -o -type f -print | wc -l)\n"
        f'{site.cli} stage status "$AIF_DATASET" >/dev/null && echo COMPLETE=yes\n'
        "echo AIF_DATASET=$AIF_DATASET\necho AIF_STAGE_LOG=$AIF_STAGE_LOG\n"
        'grep -q \'"ok": true\' "$AIF_STAGE_LOG" && echo LOG_READABLE=yes\n'
        "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES\n",
        "--gres=gpu:1",
    )
    cluster.wait_for(job, "PENDING", reason="BurstBufferStageIn", timeout=30)

    # While data_in runs, sample how many files reached the cache: the GPU count first, then the
    # job's record, so a sample only counts if the job was still pending after both.
    progress = []
    while True:
        gpus = gres_used(cluster)
        staged = staged_files(site.cache, earlier)
        record = cluster.job(job)
        if (record["job_state"], record["state_reason"]) != ("PENDING", "BurstBufferStageIn"):
            break
        assert record["nodes"] == "" and record["gres_detail"] == [], record
        assert gpus == "gpu:0"
        # "staged-in": data_in returned, the scheduler has yet to start the job.
        assert record["burst_buffer_state"] in ("staging-in", "staged-in")
        progress.append(staged)
        time.sleep(0.05)
    moving = sorted({count for count in progress if 0 < count < len(files)})
    assert len(moving) >= 2, f"no stage-in in progress seen while the job pended: {progress}"

    output = finished(cluster, site, job)
    seen = env_lines(output)
    assert seen["CHECKSUMS"] == "ok" and seen["COMPLETE"] == "yes", output
    assert int(seen["FILES"]) == len(files)
    assert seen["CUDA_VISIBLE_DEVICES"] in ("0", "1")
    data = Path(seen["AIF_DATASET"])
    assert data.parent.parent == site.cache
    # Started only after the stage was complete and verified (its marker is written last).
    marker = data / ".aifstage" / "complete.json"
    assert float(seen["STARTED"]) >= marker.stat().st_mtime
    assert cluster.job(job)["start_time"] >= int(marker.stat().st_mtime)
    # The log the job was pointed at holds the CLI's report: every file verified.
    assert seen["AIF_STAGE_LOG"] == str(site.state / "logs" / f"{job}.log")
    assert seen["LOG_READABLE"] == "yes"  # by the job's user
    (report,) = reports(Path(seen["AIF_STAGE_LOG"]).read_text())
    assert report["ok"] and report["path"] == str(data) and report["cache"]["hit"] is False
    assert (report["files"], report["bytes"]) == (len(files), sum(map(len, files.values())))
    assert sum(report["verified"].values()) == len(files)


def test_a_second_job_with_the_same_dataset_reuses_the_cache(cluster: SlurmCluster, site: StagingSite) -> None:
    bucket = site.new_bucket()
    files = {f"shard-{i}.tar": os.urandom(200 * KiB + i) for i in range(5)}
    for rel, body in files.items():
        site.s3.put_object(Bucket=bucket, Key=f"tokens/{rel}", Body=body)
    # A directive continued on the next #BB_LUA line, as slurmctld joins them.
    script = (
        f"#!/bin/sh\n#BB_LUA stage_in s3://{bucket}/tokens \\\n#BB_LUA   as tokens\n"
        "echo AIF_DATASET=$AIF_DATASET\necho AIF_DATASET_TOKENS=$AIF_DATASET_TOKENS\n"
    )
    first = cluster.sbatch(script, "--gres=gpu:1")
    first_seen = env_lines(finished(cluster, site, first))
    second = cluster.sbatch(script, "--gres=gpu:1")
    second_seen = env_lines(finished(cluster, site, second))

    assert first_seen["AIF_DATASET"] == first_seen["AIF_DATASET_TOKENS"] == second_seen["AIF_DATASET"]
    (missed,) = reports(site.log(first))
    (hit,) = reports(site.log(second))
    assert missed["cache"]["hit"] is False and missed["files"] == len(files)
    assert hit["cache"] == {**missed["cache"], "hit": True}
    assert (hit["files"], hit["bytes"]) == (0, 0)
    # Teardown released both jobs' leases: the entry may be evicted again. `scontrol show
    # bbstat` (slurm_bb_get_status) lists the cache.
    key = missed["cache"]["key"]
    eventually(lambda: site.leases().get(key) == [], what=f"leases of {key}: {site.leases()}")
    assert key in cluster.scontrol("show", "bbstat")


def test_a_stage_in_killed_midway_holds_the_job_and_a_resubmission_resumes_it(
    cluster: SlurmCluster, site: StagingSite
) -> None:
    bucket = site.new_bucket()
    files = {f"{i:05d}.bin": os.urandom(KiB + i) for i in range(2000)}
    site.put_tree(bucket, "shards", files)
    script = f"#!/bin/sh\n#BB_LUA stage_in s3://{bucket}/shards\necho ran\n"
    earlier = cache_entries(site.cache)
    job = cluster.sbatch(script, "--gres=gpu:1")
    cluster.wait_for(job, "PENDING", reason="BurstBufferStageIn", timeout=30)
    # Kill the staging process as a crash or the OOM killer would, once its journal holds
    # finished files (it commits them about once a second).
    eventually(lambda: journaled_files(site.cache, earlier) > 0, what="journaled files")
    (pid,) = stage_in_pids(f"s3://{bucket}/shards")
    os.kill(pid, signal.SIGKILL)
    record = cluster.wait_for(job, "PENDING", reason="BurstBufferOperation", timeout=30)
    assert record["priority"] == 0
    assert record["state_description"] == (
        f"burst_buffer/lua: slurm_bb_data_in: stage_in s3://{bucket}/shards failed: killed by signal 9 "
        f"(log: {site.state}/logs/{job}.log)"
    )
    journaled = journaled_files(site.cache, earlier)
    assert 0 < journaled < len(files)

    # Slurm 22.05 does not run data_in again for a released job: the user cancels it (its
    # teardown releases the lease) and submits again; only what the journal lacks moves.
    cluster.run("scancel", str(job), user=TEST_USER)
    eventually(lambda: job not in buffers_left(cluster), what="buffer torn down")
    eventually(lambda: all(holders == [] for holders in site.leases().values()), what="lease released")
    again = cluster.sbatch(script, "--gres=gpu:1")
    assert finished(cluster, site, again) == "ran\n"
    (report,) = reports(site.log(again))
    assert report["cache"]["hit"] is False
    assert report["skipped_files"] >= journaled
    assert report["files"] + report["skipped_files"] == len(files)


def test_stage_out_copies_what_the_job_wrote_to_a_bucket_after_it_ends(
    cluster: SlurmCluster, site: StagingSite
) -> None:
    bucket = site.new_bucket()
    results = cluster.jobs_dir / f"results-{uuid.uuid4().hex}"
    job = cluster.sbatch(
        f"#!/bin/sh\n#BB_LUA stage_out {results} s3://{bucket}/run-1\n"
        f"mkdir -p {results}/logs\nhead -c 3000000 /dev/urandom > {results}/checkpoint.pt\n"
        f"echo 'step 100 loss 0.25' > {results}/logs/train.txt\n",
        "--gres=gpu:1",
    )
    finished(cluster, site, job)
    written = {p.relative_to(results).as_posix(): p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert sorted(written) == ["checkpoint.pt", "logs/train.txt"]
    assert site.objects(bucket, "run-1") == written
    (report,) = reports(site.log(job))
    assert report["direction"] == "out" and report["files"] == 2
    # Run as the job's user, with that user's own keys file.
    assert f"runuser -u \"$u\" -- '{site.cli}' 'stage' 'out'" in site.log(job)


def test_stage_out_reads_as_the_job_user_and_a_failure_shows_in_the_reason(
    cluster: SlurmCluster, site: StagingSite
) -> None:
    bucket = site.new_bucket()
    private = cluster.root / f"root-only-{uuid.uuid4().hex}"
    private.mkdir(mode=0o700)
    (private / "secret.bin").write_bytes(b"root's")
    job = cluster.sbatch(f"#!/bin/sh\n#BB_LUA stage_out {private} s3://{bucket}/stolen\ntrue\n", "--gres=gpu:1")
    record = cluster.wait_for(job, "STAGE_OUT", reason="BurstBufferOperation", timeout=60)
    reason = record["state_description"]
    assert reason.startswith(
        f"burst_buffer/lua: slurm_bb_data_out: stage_out {private} to s3://{bucket}/stolen failed: permission denied"
    ), reason
    assert f"(log: {site.state}/logs/{job}.log)" in reason
    assert site.objects(bucket, "stolen") == {}
    # Slurm keeps such a job in STAGE_OUT (its files stay where they are); `scancel --hurry`
    # gives up on the stage-out and tears the buffer down.
    time.sleep(1.5)
    assert cluster.job(job)["job_state"] == "STAGE_OUT"
    cluster.run("scancel", "--hurry", str(job), user=TEST_USER)
    cluster.wait_for(job, "COMPLETED", timeout=30)
    eventually(lambda: job not in buffers_left(cluster), what="buffer torn down")
    eventually(lambda: not (site.state / "jobs" / f"{job}.state").exists(), what="job state removed")


def test_a_missing_source_holds_the_job_with_the_url_in_its_reason(cluster: SlurmCluster, site: StagingSite) -> None:
    bucket = site.new_bucket()
    missing = f"s3://{bucket}/no-such-dataset-{uuid.uuid4().hex[:8]}"
    job = cluster.sbatch(f"#!/bin/sh\n#BB_LUA stage_in {missing}\necho ran\n", "--gres=gpu:1")
    record = cluster.wait_for(job, "PENDING", reason="BurstBufferOperation", timeout=60)
    assert record["priority"] == 0  # held
    reason = record["state_description"]
    assert reason == (
        f"burst_buffer/lua: slurm_bb_data_in: stage_in {missing} failed: no objects at "
        f"{missing}: check the bucket and prefix (log: {site.state}/logs/{job}.log)"
    )
    assert f"no objects at {missing}" in site.log(job)
    time.sleep(1.5)  # several scheduling passes: held, never started
    assert (cluster.job(job)["job_state"], cluster.job(job)["nodes"]) == ("PENDING", "")
    assert not (cluster.jobs_dir / f"slurm-{job}.out").exists()


def test_malformed_directives_are_refused_at_submit(cluster: SlurmCluster, site: StagingSite) -> None:
    cases = {
        "#BB_LUA stage_in /etc/shadow": "#BB_LUA line 2: /etc/shadow: not an s3://bucket/prefix URL",
        "#BB_LUA stage_in @/etc/manifest": "not an s3://bucket/prefix URL",
        "#BB_LUA stage_in s3://Bad_Bucket/x": "'Bad_Bucket' is not a valid bucket name",
        "#BB_LUA stage_in": "stage_in needs at least one s3://bucket/prefix",
        "#BB_LUA": "an empty directive",
        "#BB_LUA stage_in s3://data/a as 9lives": "'9lives' is not a NAME",
        "#BB_LUA stage_in s3://data/a\n#BB_LUA stage_in s3://data/b": "line 3: a second stage_in without a name",
        "#BB_LUA stage_out results s3://data/out": "stage_out needs an absolute path, not results",
        "#BB_LUA stage_out /home/u/results": "usage: #BB_LUA stage_out /absolute/path s3://bucket/prefix",
        "#BB_LUA stage_inn s3://data/a": "unknown directive 'stage_inn' (known: stage_in, stage_out)",
    }
    for directive, message in cases.items():
        error = submit_rejected(cluster, f"#!/bin/sh\n{directive}\ntrue\n")
        assert "sbatch: error: burst_buffer/lua: #BB_LUA line" in error and message in error, (directive, error)


def test_shell_metacharacters_in_directives_stay_text(cluster: SlurmCluster, site: StagingSite) -> None:
    tag = uuid.uuid4().hex[:12]
    planted = [Path("/tmp") / f"pwned-{tag}", cluster.root / f"pwned-{tag}", cluster.jobs_dir / f"pwned-{tag}"]
    # The example: refused at submit (a one-letter bucket; "/tmp/pwned" is no URL).
    error = submit_rejected(cluster, f"#!/bin/sh\n#BB_LUA stage_in s3://b/x;touch /tmp/pwned-{tag}\ntrue\n")
    assert "is not a valid bucket name" in error

    # Valid URLs whose keys are full of shell syntax reach the CLI as single arguments: the
    # first is reported missing, verbatim.
    bucket = site.new_bucket()
    touch = f"touch${{IFS}}/tmp/pwned-{tag}"
    attempts = [
        f"s3://{bucket}/x;{touch}",
        f"s3://{bucket}/$({touch})",
        f"s3://{bucket}/`{touch}`",
        f"s3://{bucket}/'$({touch})'",
        f's3://{bucket}/"|{touch}"',
        f"s3://{bucket}/a&&{touch}",
    ]
    job = cluster.sbatch(f"#!/bin/sh\n#BB_LUA stage_in {' '.join(attempts)}\ntrue\n", "--gres=gpu:1")
    record = cluster.wait_for(job, "PENDING", reason="BurstBufferOperation", timeout=60)
    reason = record["state_description"]
    assert f"stage_in {' '.join(attempts)} failed: no objects at " in reason
    assert any(f"no objects at {url}: check the bucket and prefix" in reason for url in attempts), reason
    cluster.run("scancel", str(job))

    # A stage_out path with shell syntax in it, which the job creates: copied, nothing run.
    results = cluster.jobs_dir / f"out;touch${{IFS}}pwned-{tag};'$(touch${{IFS}}pwned-{tag})'`touch${{IFS}}pwned-{tag}`"
    quoted = "'" + str(results).replace("'", "'\\''") + "'"
    job = cluster.sbatch(
        f"#!/bin/sh\n#BB_LUA stage_out {results} s3://{bucket}/odd\n"
        f"mkdir -p {quoted} && echo data > {quoted}/file.txt\n",
        "--gres=gpu:1",
    )
    finished(cluster, site, job)
    assert site.objects(bucket, "odd") == {"file.txt": b"data\n"}
    for path in planted:
        assert not path.exists(), f"{path} was created: a directive ran as a command"
