#!/bin/sh
# Slurm Epilog: stage a job's results out and release its datasets, for sites without burst
# buffers (the partner of prolog.sh; settings and layout as there, see README.md).
#
# For each `#BB_LUA stage_out /absolute/path s3://bucket/prefix` in the job script's header, runs
# `aif-gateway stage out PATH --to URL` as the job's user (runuser), so only files that user may
# read leave the cluster, with the user's own keys (AIF_STAGE_USER_CREDENTIALS, else ~/.aws) and
# none of the site's. Only on the job's first node, so a multi-node job stages out once. Then
# `stage release --holder <job id>` lets the cache evict the job's datasets again.
#
# Always exits 0: a failing Epilog drains the node, and a stage-out failure is the job's
# business. Failures are in the job's log (AIF_STAGE_STATE/logs/<job id>.log, $AIF_STAGE_LOG in
# the job) and on stderr (slurmd's log). The job's files stay where it wrote them.

AIF_STAGE_DIR=$(dirname -- "$0")
. "$AIF_STAGE_DIR/aif-stage-lib.sh"

job=${SLURM_JOB_ID:?SLURM_JOB_ID is not set: run this as slurm.conf Epilog}
case $job in *[!0-9]* | '') echo "aif-stage epilog: bad job id $job" >&2; exit 0 ;; esac

script=$(scontrol write batch_script "$job" - 2>/dev/null) || exit 0
directives=$(printf '%s\n' "$script" | aif_directives)
[ -n "$directives" ] || exit 0
aif_job_has_burst_buffer "$job" && exit 0

if ! aif_load_settings; then
	echo "aif-stage epilog: job $job: $AIF_ERROR" >&2
	exit 0
fi
umask 022
mkdir -p "$AIF_STAGE_STATE/logs" || exit 0
AIF_LOG=$AIF_STAGE_STATE/logs/$job.log
[ -e "$AIF_LOG" ] || { : >"$AIF_LOG"; chgrp "${SLURM_JOB_GID:-0}" "$AIF_LOG"; chmod 0640 "$AIF_LOG"; }

first_node=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}}" 2>/dev/null | head -n 1)
if [ -z "$first_node" ] || [ "$first_node" = "${SLURMD_NODENAME:-}" ]; then
	aif_export_user_keys "$SLURM_JOB_USER"
	while IFS= read -r line; do
		set -f
		# shellcheck disable=SC2086 # word splitting is the point; globbing is off
		set -- $line
		set +f
		[ "${1:-}" = stage_out ] && [ $# -eq 3 ] || continue
		case $2 in /*) ;; *) continue ;; esac
		aif_run epilog runuser -u "$SLURM_JOB_USER" -- "$AIF_GATEWAY_BIN" stage out "$2" --to "$3" --json
		rc=$?
		if [ "$rc" -ne 0 ]; then
			echo "aif-stage epilog: job $job: stage_out $2 to $3 failed: $(aif_error_line "$rc") (log: $AIF_LOG)" |
				tee -a "$AIF_LOG" >&2
		fi
	done <<EOF
$directives
EOF
fi

# The site's keys are not needed to release a lease; the cache's files are root's.
aif_run epilog "$AIF_GATEWAY_BIN" stage release --cache "$AIF_STAGE_CACHE" --holder "$job" ||
	echo "aif-stage epilog: job $job: stage release failed: $(aif_error_line $?)" >&2
rm -f "$AIF_STAGE_STATE/env/$job"
exit 0
