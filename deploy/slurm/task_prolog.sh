#!/bin/sh
# Slurm TaskProlog (runs as the job's user before each task): hands the paths prolog.sh staged
# to the task as environment variables (AIF_DATASET, AIF_DATASET_<NAME>, AIF_STAGE_LOG). A
# Prolog cannot set a job's environment; a TaskProlog can, by printing "export NAME=value".
#
# It reads AIF_STAGE_STATE from the site settings when this user can read them, else uses the
# default /var/lib/aif-gateway/stage: a site that keeps S3 keys in a root-only stage.conf keeps
# the default state directory (or moves the keys to a root-only AWS_SHARED_CREDENTIALS_FILE).

AIF_STAGE_DIR=$(dirname -- "$0")
. "$AIF_STAGE_DIR/aif-stage-lib.sh"

[ -r "$(aif_settings_path)" ] && aif_load_settings
case ${SLURM_JOB_ID:-} in *[!0-9]* | '') exit 0 ;; esac
env_file=$AIF_STAGE_STATE/env/$SLURM_JOB_ID
[ -r "$env_file" ] || exit 0
while IFS= read -r line; do
	case $line in
	AIF_*=*) printf 'export %s\n' "$line" ;;
	esac
done <"$env_file"
exit 0
