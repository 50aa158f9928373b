# aif-stage-lib.sh: what prolog.sh, epilog.sh and task_prolog.sh share (POSIX sh, sourced).
#
# The caller sets AIF_STAGE_DIR (the directory of the scripts) and sources this file. It gives:
#   aif_load_settings         read the site settings (see aif-stage.conf.example): $AIF_STAGE_CONF,
#                             else $AIF_STAGE_DIR/aif-stage.conf, else /etc/aif-gateway/stage.conf;
#                             returns 1 with $AIF_ERROR set when they are missing or malformed
#   aif_directives            the words after "#BB_LUA" of each directive in the header of the job
#                             script on stdin (the header ends at the first command, as for sbatch)
#   aif_job_has_burst_buffer  whether Slurm's burst buffer plugin handles job $1 (then these skip it)
#   aif_run HOOK CMD...       run CMD with stdin from /dev/null, appending its output to $AIF_LOG;
#                             its exit status, and $AIF_OUTPUT: what it appended
#   aif_error_line RC         the CLI's one-line error in $AIF_OUTPUT (or the exit status)
#   aif_export_site_keys      export the settings' S3 endpoint and the site's keys (root's stage-in)
#   aif_export_user_keys NAME export the S3 endpoint and the user's credentials file, nothing of
#                             the site's keys (a stage-out that runs as that user)
#
# Nothing here evaluates a directive's text: its words only ever reach a command as arguments.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin${PATH:+:$PATH}
export PATH
# Nothing inherited decides whose keys a command uses.
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE \
	AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_REGION \
	AWS_DEFAULT_REGION AWS_CA_BUNDLE

AIF_GATEWAY_BIN=aif-gateway
AIF_STAGE_STATE=/var/lib/aif-gateway/stage
AIF_STAGE_CACHE=
AIF_STAGE_CACHE_SIZE=
AIF_STAGE_EXTRA_ARGS=
AIF_STAGE_USER_CREDENTIALS=
AIF_ERROR=
AIF_OUTPUT=

aif_settings_path() {
	if [ -n "${AIF_STAGE_CONF:-}" ]; then
		printf '%s\n' "$AIF_STAGE_CONF"
	elif [ -e "$AIF_STAGE_DIR/aif-stage.conf" ]; then
		printf '%s\n' "$AIF_STAGE_DIR/aif-stage.conf"
	else
		printf '%s\n' /etc/aif-gateway/stage.conf
	fi
}

aif_trim() {
	set -- "${1#"${1%%[![:space:]]*}"}"
	printf '%s' "${1%"${1##*[![:space:]]}"}"
}

aif_load_settings() {
	_conf=$(aif_settings_path)
	if [ ! -r "$_conf" ]; then
		AIF_ERROR="cannot read the site settings $_conf (AIF_STAGE_CONF)"
		return 1
	fi
	_number=0
	while IFS= read -r _line || [ -n "$_line" ]; do
		_number=$((_number + 1))
		_line=$(aif_trim "$_line")
		case $_line in '' | '#'*) continue ;; esac
		case $_line in
		*=*) ;;
		*) AIF_ERROR="$_conf:$_number: expected KEY=VALUE"; return 1 ;;
		esac
		_key=$(aif_trim "${_line%%=*}")
		_value=$(aif_trim "${_line#*=}")
		case $_value in
		\"*\") _value=${_value#\"}; _value=${_value%\"} ;;
		\'*\') _value=${_value#\'}; _value=${_value%\'} ;;
		esac
		case $_key in
		AIF_GATEWAY_BIN) AIF_GATEWAY_BIN=$_value ;;
		AIF_STAGE_CACHE) AIF_STAGE_CACHE=$_value ;;
		AIF_STAGE_CACHE_SIZE) AIF_STAGE_CACHE_SIZE=$_value ;;
		AIF_STAGE_STATE) AIF_STAGE_STATE=$_value ;;
		AIF_STAGE_EXTRA_ARGS) AIF_STAGE_EXTRA_ARGS=$_value ;;
		AIF_STAGE_USER_CREDENTIALS) AIF_STAGE_USER_CREDENTIALS=$_value ;;
		AWS_ENDPOINT_URL) _aws_endpoint_url=$_value ;;
		AWS_REGION) _aws_region=$_value ;;
		AWS_CA_BUNDLE) _aws_ca_bundle=$_value ;;
		AWS_PROFILE) _aws_profile=$_value ;;
		AWS_SHARED_CREDENTIALS_FILE) _aws_shared_credentials_file=$_value ;;
		AWS_CONFIG_FILE) _aws_config_file=$_value ;;
		AWS_ACCESS_KEY_ID) _aws_access_key_id=$_value ;;
		AWS_SECRET_ACCESS_KEY) _aws_secret_access_key=$_value ;;
		*) AIF_ERROR="$_conf:$_number: unknown setting $_key"; return 1 ;;
		esac
	done <"$_conf"
	if [ -z "$AIF_STAGE_CACHE" ]; then
		AIF_ERROR="$_conf: AIF_STAGE_CACHE (the staging area) is not set"
		return 1
	fi
	return 0
}

aif_export_public() {
	[ -n "${_aws_endpoint_url:-}" ] && export AWS_ENDPOINT_URL="$_aws_endpoint_url"
	[ -n "${_aws_region:-}" ] && export AWS_REGION="$_aws_region"
	[ -n "${_aws_ca_bundle:-}" ] && export AWS_CA_BUNDLE="$_aws_ca_bundle"
	return 0
}

aif_export_site_keys() {
	aif_export_public
	[ -n "${_aws_profile:-}" ] && export AWS_PROFILE="$_aws_profile"
	[ -n "${_aws_shared_credentials_file:-}" ] && export AWS_SHARED_CREDENTIALS_FILE="$_aws_shared_credentials_file"
	[ -n "${_aws_config_file:-}" ] && export AWS_CONFIG_FILE="$_aws_config_file"
	[ -n "${_aws_access_key_id:-}" ] && export AWS_ACCESS_KEY_ID="$_aws_access_key_id"
	[ -n "${_aws_secret_access_key:-}" ] && export AWS_SECRET_ACCESS_KEY="$_aws_secret_access_key"
	return 0
}

aif_export_user_keys() {
	aif_export_public
	if [ -n "$AIF_STAGE_USER_CREDENTIALS" ]; then
		# %u: the user's name, %U: the uid, %%: a percent sign.
		AWS_SHARED_CREDENTIALS_FILE=$(printf '%s' "$AIF_STAGE_USER_CREDENTIALS" |
			awk -v u="$1" -v U="$(id -u "$1")" '{
				out = ""
				while ((i = index($0, "%")) > 0) {
					c = substr($0, i + 1, 1)
					out = out substr($0, 1, i - 1) (c == "u" ? u : c == "U" ? U : c == "%" ? "%" : "%" c)
					$0 = substr($0, i + 2)
				}
				printf "%s%s", out, $0
			}')
		export AWS_SHARED_CREDENTIALS_FILE
	fi
}

# slurmctld's rules for the burst buffer spec (as burst_buffer.lua reads it): empty lines are
# skipped, the first line not starting with '#' ends the header, and a directive ending in '\'
# continues on the next #BB_LUA line.
aif_directives() {
	awk '
		$0 == "" { next }
		!/^#/ { exit }
		/^#BB_LUA/ {
			text = substr($0, 8)
			if (cont) { sub(/^[ \t]+/, " ", text); text = acc text }
			if (text ~ /\\$/) { acc = substr(text, 1, length(text) - 1); cont = 1; next }
			print text
			cont = 0
			next
		}
		cont { print acc; cont = 0 }
		END { if (cont) print acc }
	'
}

aif_job_has_burst_buffer() {
	scontrol show job "$1" 2>/dev/null | grep -q '^[[:space:]]*BurstBuffer='
}

aif_run() {
	_hook=$1
	shift
	printf '== %s %s: %s\n' "$(date +%Y-%m-%dT%H:%M:%S)" "$_hook" "$*" >>"$AIF_LOG"
	_before=$(wc -c <"$AIF_LOG")
	"$@" </dev/null >>"$AIF_LOG" 2>&1
	_rc=$?
	AIF_OUTPUT=$(tail -c +"$((_before + 1))" "$AIF_LOG")
	printf '== %s %s: exit %s\n' "$(date +%Y-%m-%dT%H:%M:%S)" "$_hook" "$_rc" >>"$AIF_LOG"
	return "$_rc"
}

aif_error_line() {
	case $1 in
	126 | 127) printf 'cannot run %s (AIF_GATEWAY_BIN)' "$AIF_GATEWAY_BIN"; return ;;
	129 | 13[0-9] | 14[0-9] | 15[0-9]) printf "killed by signal %s" "$(($1 - 128))"; return ;;
	esac
	# Best: the CLI's error line; then any line of the CLI or runuser; then the last line that is
	# not JSON (a report or a progress record), e.g. a Python exception.
	_line=$(printf '%s\n' "$AIF_OUTPUT" | sed -n 's/^aif-gateway stage [a-z]*: error: //p' | tail -n 1)
	[ -n "$_line" ] || _line=$(printf '%s\n' "$AIF_OUTPUT" | grep -E '^(aif-gateway stage [a-z]+|runuser): ' | tail -n 1)
	[ -n "$_line" ] || _line="exit status $1: $(printf '%s\n' "$AIF_OUTPUT" | grep -v -e '^{' -e '^[[:space:]]*$' | tail -n 1)"
	printf '%s' "$_line"
}

# The top-level "path" of the CLI's JSON report (written with --report; it precedes "cache").
aif_report_path() {
	sed -n 's/^[[:space:]]*"path": "\([^"\\]*\)",\{0,1\}$/\1/p' "$1" | head -n 1
}
