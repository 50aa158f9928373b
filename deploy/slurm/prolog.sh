#!/bin/sh
# Slurm Prolog: stage a job's datasets on its node, for sites without burst buffers.
#
# slurm.conf:  Prolog=/etc/slurm/aif-stage/prolog.sh   Epilog=/etc/slurm/aif-stage/epilog.sh
#              TaskProlog=/etc/slurm/aif-stage/task_prolog.sh   PrologFlags=Alloc
# (all three next to aif-stage-lib.sh; settings as for burst_buffer.lua, see README.md).
#
# Reads the same directives as burst_buffer.lua from the job script's header
# (`scontrol write batch_script`): `#BB_LUA stage_in s3://bucket/prefix... [as NAME]`, and runs
# `aif-gateway stage in ... --cache $AIF_STAGE_CACHE --holder <job id>` as root for each. The
# paths go to AIF_STATE/env/<job id>, which task_prolog.sh hands to the job's tasks as
# AIF_DATASET / AIF_DATASET_<NAME> / AIF_STAGE_LOG. Jobs that Slurm's burst buffer plugin handles,
# and jobs without directives, are left alone.
#
# The cost, and why the burst buffer is better: a Prolog runs once the job holds its nodes and
# GPUs, so they sit idle while the data moves (the burst buffer stages while the job is still
# pending). With a cache on shared storage a dataset that is already cached costs nothing here.
#
# A failure cancels the job, with the reason in its Comment (`scontrol show job`, `sacct -o
# comment`), and exits 0: a failing Prolog would drain the node for what is the job's problem.
# Only a broken site setup (unreadable settings) fails the Prolog, so that an administrator sees
# it. Runs on every node of the job; a shared cache makes the nodes wait for one transfer.

AIF_STAGE_DIR=$(dirname -- "$0")
. "$AIF_STAGE_DIR/aif-stage-lib.sh"

job=${SLURM_JOB_ID:?SLURM_JOB_ID is not set: run this as slurm.conf Prolog}
case $job in *[!0-9]* | '') echo "aif-stage prolog: bad job id $job" >&2; exit 1 ;; esac

# Interactive allocations have no batch script, hence no directives.
script=$(scontrol write batch_script "$job" - 2>/dev/null) || exit 0
directives=$(printf '%s\n' "$script" | aif_directives)
[ -n "$directives" ] || exit 0
aif_job_has_burst_buffer "$job" && exit 0

if ! aif_load_settings; then
	echo "aif-stage prolog: job $job: $AIF_ERROR" >&2
	exit 1
fi
umask 022
mkdir -p "$AIF_STAGE_STATE/jobs" "$AIF_STAGE_STATE/logs" "$AIF_STAGE_STATE/env" || exit 1
chmod 0700 "$AIF_STAGE_STATE/jobs"
AIF_LOG=$AIF_STAGE_STATE/logs/$job.log
: >>"$AIF_LOG" && chgrp "${SLURM_JOB_GID:-0}" "$AIF_LOG" && chmod 0640 "$AIF_LOG" || exit 1
env_file=$AIF_STAGE_STATE/env/$job

fail() {
	message="aif-stage: $1 (log: $AIF_LOG)"
	printf '== %s prolog: %s\n' "$(date +%Y-%m-%dT%H:%M:%S)" "$message" >>"$AIF_LOG"
	scontrol update JobId="$job" Comment="$(printf '%s' "$message" | cut -c1-900)" >>"$AIF_LOG" 2>&1
	aif_run release "$AIF_GATEWAY_BIN" stage release --cache "$AIF_STAGE_CACHE" --holder "$job"
	rm -f "$env_file" "$env_file.tmp"
	# Could not cancel: fail the Prolog (Slurm drains the node and holds the job) rather than
	# let the job run without its data.
	scancel "$job" >>"$AIF_LOG" 2>&1 || exit 1
	exit 0
}

# Two passes over the directives: "check" validates all of them (as burst_buffer.lua's
# job_process does at submit), so a bad last line fails the job before a byte moves; "stage"
# runs them.
for mode in check stage; do
	unnamed=0
	names=" "
	index=0
	if [ "$mode" = stage ]; then
		aif_export_site_keys
		printf 'AIF_STAGE_LOG=%s\n' "$AIF_LOG" >"$env_file.tmp"
	fi
	while IFS= read -r line; do
		set -f
		# shellcheck disable=SC2086 # word splitting is the point; globbing is off
		set -- $line
		set +f
		verb=${1:-}
		[ $# -gt 0 ] && shift
		case $verb in
		stage_in)
			name=
			previous=
			last=
			for word in "$@"; do previous=$last; last=$word; done
			if [ $# -ge 3 ] && [ "$previous" = as ]; then
				name=$last
				# Keep the words before "as NAME".
				keep=$(($# - 2))
				count=0
				for word in "$@"; do
					count=$((count + 1))
					[ "$count" -le "$keep" ] && set -- "$@" "$word"
				done
				shift "$((keep + 2))"
				case $name in [!A-Za-z_]* | *[!A-Za-z0-9_]*) fail "#BB_LUA stage_in: '$name' is not a NAME" ;; esac
				name=$(printf '%s' "$name" | tr 'a-z' 'A-Z')
				case $names in *" $name "*) fail "#BB_LUA stage_in: a second dataset named $name" ;; esac
				names="$names$name "
			else
				unnamed=$((unnamed + 1))
				[ "$unnamed" -le 1 ] || fail "#BB_LUA stage_in: a second stage_in without a name: add 'as NAME'"
			fi
			[ $# -ge 1 ] || fail "#BB_LUA stage_in needs at least one s3://bucket/prefix"
			for source in "$@"; do
				case $source in
				s3://?*) ;;
				*) fail "#BB_LUA stage_in: $source: not an s3://bucket/prefix URL (root stages only from S3)" ;;
				esac
			done
			[ "$mode" = stage ] || continue
			index=$((index + 1))
			report=$AIF_STAGE_STATE/jobs/$job.in$index.json
			rm -f "$report"
			set -f
			# shellcheck disable=SC2086 # AIF_STAGE_EXTRA_ARGS: extra words from the site settings
			aif_run prolog "$AIF_GATEWAY_BIN" stage in "$@" --cache "$AIF_STAGE_CACHE" --holder "$job" \
				--json --report "$report" ${AIF_STAGE_CACHE_SIZE:+--cache-size "$AIF_STAGE_CACHE_SIZE"} \
				$AIF_STAGE_EXTRA_ARGS
			rc=$?
			set +f
			path=$(aif_report_path "$report" 2>/dev/null)
			rm -f "$report"
			if [ "$rc" -ne 0 ] || [ -z "$path" ]; then
				fail "stage_in $* failed: $(aif_error_line "$rc")"
			fi
			[ "$index" -eq 1 ] && printf 'AIF_DATASET=%s\n' "$path" >>"$env_file.tmp"
			[ -n "$name" ] && printf 'AIF_DATASET_%s=%s\n' "$name" "$path" >>"$env_file.tmp"
			;;
		stage_out)
			[ $# -eq 2 ] || fail "usage: #BB_LUA stage_out /absolute/path s3://bucket/prefix"
			case $1 in /*) ;; *) fail "#BB_LUA stage_out needs an absolute path, not $1" ;; esac
			case $2 in s3://?*) ;; *) fail "#BB_LUA stage_out: $2: not an s3://bucket/prefix URL" ;; esac
			;;
		*) fail "#BB_LUA: unknown directive '$verb' (known: stage_in, stage_out)" ;;
		esac
	done <<EOF
$directives
EOF
done
chgrp "${SLURM_JOB_GID:-0}" "$env_file.tmp" && chmod 0640 "$env_file.tmp" && mv -f "$env_file.tmp" "$env_file"
