--[[
burst_buffer.lua for BurstBufferType=burst_buffer/lua: datasets are staged while the job is still
PENDING (reason BurstBufferStageIn), before any node or GPU is given to it, and results are staged
out after it ends. Install it as burst_buffer.lua next to slurm.conf (see README.md here).

Job script directives (in the header, before the first command, like #SBATCH lines):

  #BB_LUA stage_in SRC [SRC...] [as NAME]     SRC: s3://bucket[/prefix]; several lines allowed.
                                              The first one's data dir is $AIF_DATASET, a named
                                              one's also $AIF_DATASET_<NAME>.
  #BB_LUA stage_out PATH s3://bucket/prefix   after the job, copy the new or changed files under
                                              the absolute PATH, read as the job's user.

A directive ending in '\' continues on the next #BB_LUA line, as slurmctld joins them.

The hooks stay thin: each runs `aif-gateway stage ...` (the staging engine: parallel, resumable,
verified, through a shared site cache) and turns its outcome into a Slurm answer.

  slurm_bb_job_process  validates the directives: a malformed one rejects the job at sbatch.
                        (It and slurm_bb_paths run inside slurmctld itself, which cannot kill
                        them: both only read and write small files, no commands.)
  slurm_bb_setup        records the job's uid/gid (22.05 passes none to data_in/data_out).
  slurm_bb_data_in      `stage in SRC... --cache $AIF_STAGE_CACHE --holder <job id>` per
                        stage_in line; a failure returns slurm.ERROR: the job is held, its reason
                        names what failed and the log file.
  slurm_bb_paths        AIF_DATASET, AIF_DATASET_<NAME>, AIF_STAGE_LOG into the job environment.
  slurm_bb_pre_run      nothing: the data is in the site cache, which the nodes mount; this runs
                        on the controller, which cannot reach node-local disks (see README.md).
  slurm_bb_data_out     `stage out PATH --to URL` per stage_out line, run as the job's user
                        (runuser) with that user's keys, so only what the user may read leaves.
  slurm_bb_job_teardown `stage release --holder <job id>` (under setsid, so that it completes
                        even if slurmctld kills the hook): the cache may evict the data again.
  slurm_bb_get_status   `scontrol show bbstat`: the cache's entries (`stage status --cache`).

Site settings: a KEY=VALUE file, found at $AIF_STAGE_CONF (slurmctld's environment reaches the
hooks), else aif-stage.conf beside this file, else /etc/aif-gateway/stage.conf. Keys: see
aif-stage.conf.example. Per job the hooks keep, under AIF_STAGE_STATE:
  jobs/<id>.state  uid, gid and staged paths (root only; setup -> data_in -> paths -> data_out)
  logs/<id>.log    every command run for the job and its output (readable by the job's group)

The hooks run as root. That is why sources must be s3:// URLs, read with the site's keys:
filesystem paths and @manifests would let any user read any file through the cache.

Written for Slurm 22.05 (each hook takes the leading arguments it passes) and newer releases
(23.02+ append uid, gid and a job_info table: used when present, ignored otherwise).
Lua 5.1 compatible (Debian's Slurm links liblua5.1).
--]]

local DEFAULT_CONF = "/etc/aif-gateway/stage.conf"
local DEFAULT_STATE = "/var/lib/aif-gateway/stage"
local SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
-- Slurm shows the message as the job's reason: long enough for a URL and a log path.
local MAX_MESSAGE = 900
local SETTINGS = {
	AIF_GATEWAY_BIN = true, AIF_STAGE_CACHE = true, AIF_STAGE_CACHE_SIZE = true,
	AIF_STAGE_STATE = true, AIF_STAGE_EXTRA_ARGS = true, AIF_STAGE_USER_CREDENTIALS = true,
	AWS_ENDPOINT_URL = true, AWS_REGION = true, AWS_CA_BUNDLE = true, AWS_PROFILE = true,
	AWS_SHARED_CREDENTIALS_FILE = true, AWS_CONFIG_FILE = true,
	AWS_ACCESS_KEY_ID = true, AWS_SECRET_ACCESS_KEY = true,
}
-- The settings every command gets; the others are the site's keys, for root's stage-in only.
local PUBLIC = { AWS_ENDPOINT_URL = true, AWS_REGION = true, AWS_CA_BUNDLE = true }
-- Whatever slurmctld's own environment holds must not decide whose keys a command uses.
local CLEARED = "AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_PROFILE "
	.. "AWS_DEFAULT_PROFILE AWS_SHARED_CREDENTIALS_FILE AWS_CONFIG_FILE AWS_ENDPOINT_URL "
	.. "AWS_ENDPOINT_URL_S3 AWS_REGION AWS_DEFAULT_REGION AWS_CA_BUNDLE"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

-- ---------------------------------------------------------------- small tools

-- One shell word, whatever the text holds: job directives are user input.
local function quote(text)
	return "'" .. (tostring(text):gsub("'", "'\\''")) .. "'"
end

local function trim(text)
	return (text:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function words(text)
	local found = {}
	for word in text:gmatch("%S+") do
		found[#found + 1] = word
	end
	return found
end

local function one_line(text)
	text = trim((text or ""):gsub("%s+", " "))
	if #text > MAX_MESSAGE then
		text = text:sub(1, MAX_MESSAGE - 3) .. "..."
	end
	return text
end

local function read_file(path)
	local f = io.open(path, "r")
	if f == nil then
		return nil
	end
	local text = f:read("*a")
	f:close()
	return text
end

local function exists(path)
	local f = io.open(path, "r")
	if f then
		f:close()
		return true
	end
	return false
end

-- Replace ``path`` at once (a reader never sees half a file).
local function write_file(path, text)
	local tmp = path .. ".tmp"
	local f, err = io.open(tmp, "w")
	if f == nil then
		return nil, err
	end
	f:write(text)
	f:close()
	local ok, rename_err = os.rename(tmp, path)
	if not ok then
		return nil, rename_err
	end
	return true
end

-- Run a shell line; its exit status. Lua 5.1 reports no status from popen:close() and a
-- platform-dependent one from os.execute, so the line prints its own.
local function shell(line)
	local p = io.popen(line .. "\necho \"aif-rc=$?\"", "r")
	local out = p:read("*a")
	p:close()
	return tonumber(out:match("aif%-rc=(%d+)%s*$")) or 255
end

-- ---------------------------------------------------------------- site settings

local function settings_path()
	local from_env = os.getenv("AIF_STAGE_CONF")
	if from_env and from_env ~= "" then
		return from_env
	end
	if exists(here .. "aif-stage.conf") then
		return here .. "aif-stage.conf"
	end
	return DEFAULT_CONF
end

local function load_settings()
	local path = settings_path()
	local text = read_file(path)
	if text == nil then
		return nil, "cannot read the site settings " .. path .. " (AIF_STAGE_CONF)"
	end
	local conf = {}
	local number = 0
	for line in (text .. "\n"):gmatch("([^\n]*)\n") do
		number = number + 1
		line = trim(line)
		if line ~= "" and line:sub(1, 1) ~= "#" then
			local key, value = line:match("^([%w_]+)%s*=%s*(.-)$")
			if key == nil then
				return nil, string.format("%s:%d: expected KEY=VALUE", path, number)
			end
			if not SETTINGS[key] then
				return nil, string.format("%s:%d: unknown setting %s", path, number, key)
			end
			-- Optional quotes around a value, as in a shell or systemd environment file.
			conf[key] = value:match('^"(.*)"$') or value:match("^'(.*)'$") or value
		end
	end
	if (conf.AIF_STAGE_CACHE or "") == "" then
		return nil, path .. ": AIF_STAGE_CACHE (the site staging area) is not set"
	end
	conf.AIF_GATEWAY_BIN = conf.AIF_GATEWAY_BIN or "aif-gateway"
	conf.AIF_STAGE_STATE = conf.AIF_STAGE_STATE or DEFAULT_STATE
	return conf
end

-- ---------------------------------------------------------------- directives

local function check_s3_url(url)
	if url:find("%c") then
		return "control characters in " .. url
	end
	local bucket = url:match("^s3://([^/]*)")
	if bucket == nil then
		return url .. ": not an s3://bucket/prefix URL (the burst buffer runs as root, so it "
			.. "stages only from S3 with the site's keys; read files on the shared filesystem "
			.. "directly, or run `aif-gateway stage in` inside the job)"
	end
	if #bucket < 3 or #bucket > 63 or not bucket:match("^[a-z0-9][a-z0-9.%-]*[a-z0-9]$") then
		return url .. ": '" .. bucket .. "' is not a valid bucket name"
	end
	return nil
end

-- The #BB_LUA directives of a job script as {number = first line, text = words after #BB_LUA},
-- read by slurmctld's rules for the burst buffer spec: the header ends at the first non-empty
-- line not starting with '#', and a directive ending in '\' continues on the next #BB_LUA line.
local function header_directives(text)
	local found, pending = {}, nil
	local number = 0
	for line in (text .. "\n"):gmatch("([^\n]*)\n") do
		number = number + 1
		if line ~= "" then
			if line:sub(1, 1) ~= "#" then
				break
			end
			local rest = line:match("^#BB_LUA(.*)$")
			if rest == nil then
				pending = nil
			else
				if pending then
					pending.text = pending.text .. rest:gsub("^%s+", " ")
				else
					pending = { number = number, text = rest }
					found[#found + 1] = pending
				end
				if pending.text:sub(-1) == "\\" then
					pending.text = pending.text:sub(1, -2)
				else
					pending = nil
				end
			end
		end
	end
	return found
end

-- The job's plan {stage_in = {{sources, name}...}, stage_out = {{path, url}...}}, or nil and a
-- message naming the directive's line.
local function parse_directives(job_script)
	local text = read_file(job_script)
	if text == nil then
		return nil, "cannot read the job script " .. tostring(job_script)
	end
	local plan = { stage_in = {}, stage_out = {} }
	local names, unnamed = {}, 0
	for _, directive in ipairs(header_directives(text)) do
		local where = "#BB_LUA line " .. directive.number .. ": "
		local args = words(directive.text)
		local verb = table.remove(args, 1)
		if verb == "stage_in" then
			local name
			if #args >= 2 and args[#args - 1] == "as" then
				name = table.remove(args)
				table.remove(args)
				if not name:match("^[%a_][%w_]*$") or #name > 64 then
					return nil, where .. "'" .. name .. "' is not a NAME (letters, digits, _)"
				end
				name = name:upper()
				if names[name] then
					return nil, where .. "a second dataset named " .. name
				end
				names[name] = true
			else
				unnamed = unnamed + 1
				if unnamed > 1 then
					return nil, where .. "a second stage_in without a name: add `as NAME` (it "
						.. "becomes $AIF_DATASET_NAME)"
				end
			end
			if #args == 0 then
				return nil, where .. "stage_in needs at least one s3://bucket/prefix"
			end
			for _, source in ipairs(args) do
				local problem = check_s3_url(source)
				if problem then
					return nil, where .. problem
				end
			end
			plan.stage_in[#plan.stage_in + 1] = { sources = args, name = name }
		elseif verb == "stage_out" then
			if #args ~= 2 then
				return nil, where .. "usage: #BB_LUA stage_out /absolute/path s3://bucket/prefix"
			end
			local path, url = args[1], args[2]
			if path:sub(1, 1) ~= "/" or path:find("%c") then
				return nil, where .. "stage_out needs an absolute path, not " .. path
			end
			local problem = check_s3_url(url)
			if problem then
				return nil, where .. problem
			end
			plan.stage_out[#plan.stage_out + 1] = { path = path, url = url }
		elseif verb == nil then
			return nil, where .. "an empty directive (known: stage_in, stage_out)"
		else
			return nil, where .. "unknown directive '" .. verb .. "' (known: stage_in, stage_out)"
		end
	end
	return plan
end

-- ---------------------------------------------------------------- per-job state

local function check_job_id(job_id)
	if not tostring(job_id):match("^%d+$") then
		return "not a job id: " .. tostring(job_id)
	end
end

local function state_file(conf, job_id)
	return conf.AIF_STAGE_STATE .. "/jobs/" .. job_id .. ".state"
end

local function log_file(conf, job_id)
	return conf.AIF_STAGE_STATE .. "/logs/" .. job_id .. ".log"
end

local function read_state(conf, job_id)
	local state = {}
	local text = read_file(state_file(conf, job_id)) or ""
	for key, value in text:gmatch("([^=\n]+)=([^\n]*)") do
		state[key] = value
	end
	return state
end

local function write_state(conf, job_id, state)
	local keys = {}
	for key, _ in pairs(state) do
		keys[#keys + 1] = key
	end
	table.sort(keys)
	local lines = {}
	for _, key in ipairs(keys) do
		lines[#lines + 1] = key .. "=" .. state[key] .. "\n"
	end
	return write_file(state_file(conf, job_id), table.concat(lines))
end

-- uid/gid from setup's state file, else from the arguments newer Slurm appends.
local function job_owner(conf, job_id, uid, gid)
	local state = read_state(conf, job_id)
	state.uid = state.uid or (uid and tostring(uid))
	state.gid = state.gid or (gid and tostring(gid))
	return state
end

-- ---------------------------------------------------------------- running the staging CLI

-- AIF_STAGE_USER_CREDENTIALS as one shell word: %u becomes the user's name ($u, set from the
-- uid in the command's environment file), %U the uid, %% a percent sign.
local function user_credentials_word(pattern, uid)
	local parts = {}
	for piece, code in (pattern .. "%"):gmatch("([^%%]*)%%(.?)") do
		parts[#parts + 1] = quote(piece)
		if code == "u" then
			parts[#parts + 1] = '"$u"'
		elseif code == "U" then
			parts[#parts + 1] = quote(uid)
		elseif code == "%" then
			parts[#parts + 1] = "%"
		elseif code ~= "" then
			parts[#parts + 1] = quote("%" .. code)
		end
	end
	return table.concat(parts)
end

-- The environment of a command, as shell lines: the S3 endpoint, and either the site's keys
-- (root's stage-in) or the job user's own (AIF_STAGE_USER_CREDENTIALS, else the user's ~/.aws).
-- It goes through a root-only file, so no key ever shows in a process's arguments.
local function env_file(conf, job_id, as_uid)
	local lines = { "unset " .. CLEARED, "export PATH=" .. quote(SYSTEM_PATH .. ":" .. (os.getenv("PATH") or "")) }
	local keys = {}
	for key, _ in pairs(SETTINGS) do
		if key:match("^AWS_") and conf[key] and (as_uid == nil or PUBLIC[key]) then
			keys[#keys + 1] = key
		end
	end
	table.sort(keys)
	for _, key in ipairs(keys) do
		lines[#lines + 1] = "export " .. key .. "=" .. quote(conf[key])
	end
	if as_uid then
		-- runuser needs a name; an unknown uid leaves $u empty and runuser says so in the log.
		lines[#lines + 1] = "u=$(id -nu " .. quote(as_uid) .. ")"
		if conf.AIF_STAGE_USER_CREDENTIALS then
			lines[#lines + 1] = "export AWS_SHARED_CREDENTIALS_FILE="
				.. user_credentials_word(conf.AIF_STAGE_USER_CREDENTIALS, as_uid)
		end
	end
	local path = conf.AIF_STAGE_STATE .. "/jobs/" .. job_id .. ".env"
	local ok, err = write_file(path, table.concat(lines, "\n") .. "\n")
	if not ok then
		return nil, err
	end
	return path
end

-- Append the output of ``argv`` (run as root, or as uid ``as_uid``) to the job's log; returns
-- the exit status and the lines it added to the log.
local function run_logged(conf, job_id, hook, argv, as_uid)
	local log = log_file(conf, job_id)
	local env, err = env_file(conf, job_id, as_uid)
	if env == nil then
		return 255, "cannot write the job's command environment: " .. tostring(err)
	end
	local quoted = {}
	for i, word in ipairs(argv) do
		quoted[i] = quote(word)
	end
	local command = table.concat(quoted, " ")
	if as_uid then
		command = 'runuser -u "$u" -- ' .. command
	end
	local f, open_err = io.open(log, "a")
	if f == nil then
		return 255, "cannot open the job's log: " .. tostring(open_err)
	end
	f:write(string.format("== %s %s: %s\n", os.date("%Y-%m-%dT%H:%M:%S"), hook, command))
	local before = f:seek("end")
	f:close()
	-- umask 022: the cache's files are read by every job that reuses them. The braces put
	-- everything, `id` included, under the log's redirection.
	local rc = shell("umask 022; { . " .. quote(env) .. " && rm -f " .. quote(env) .. " && "
		.. command .. "; } </dev/null >>" .. quote(log) .. " 2>&1")
	os.remove(env)
	local output = ""
	f = io.open(log, "r+")
	if f then
		f:seek("set", before)
		output = f:read("*a") or ""
		f:seek("end")
		f:write(string.format("== %s %s: exit %d\n", os.date("%Y-%m-%dT%H:%M:%S"), hook, rc))
		f:close()
	end
	return rc, output
end

-- The CLI's own one-line error from the output it logged ("aif-gateway stage in: error: ...").
local function error_line(output, rc, conf)
	if rc == 126 or rc == 127 then
		return "cannot run " .. conf.AIF_GATEWAY_BIN .. " (AIF_GATEWAY_BIN)"
	elseif rc > 128 and rc < 160 then
		-- The shell's status of a command killed by a signal: the CLI had no word to say.
		return "killed by signal " .. (rc - 128)
	end
	-- Best: the CLI's error line; then any line of the CLI or runuser; then the last line that
	-- is not JSON (a report or a progress record), e.g. a Python exception.
	local error_message, cli_message, last
	for line in output:gmatch("[^\n]+") do
		error_message = line:match("^aif%-gateway stage %a+: error: (.*)$") or error_message
		cli_message = line:match("^aif%-gateway stage %a+: (.*)$") or line:match("^runuser: (.*)$")
			or cli_message
		if line:sub(1, 1) ~= "{" and line:match("%S") then
			last = trim(line)
		end
	end
	return error_message or cli_message or ("exit status " .. rc .. (last and (": " .. last) or ""))
end

-- A string field of the CLI's JSON report (the first one of that name: top-level "path"
-- precedes "cache"). Paths are the site cache's dir plus a hex key; one with a quote or a
-- backslash (escaped in JSON) does not match, and the stage-in is reported as failed.
local function json_string(text, field)
	return text:match('"' .. field .. '"%s*:%s*"([^"\\]*)"')
end

local function fail(message)
	return slurm.ERROR, one_line(message)
end

local function prepare(job_id)
	local problem = check_job_id(job_id)
	if problem then
		return nil, problem
	end
	local conf, err = load_settings()
	if conf == nil then
		return nil, err
	end
	return conf
end

-- ---------------------------------------------------------------- the hooks

function slurm_bb_job_process(job_script, ...)
	local plan, err = parse_directives(job_script)
	if plan == nil then
		return slurm.ERROR, one_line(err)
	end
	return slurm.SUCCESS
end

function slurm_bb_pools(...)
	return slurm.SUCCESS
end

function slurm_bb_setup(job_id, uid, gid, pool, bb_size, job_script, ...)
	local conf, err = prepare(job_id)
	if conf == nil then
		return fail(err)
	end
	if not tostring(uid):match("^%d+$") or not tostring(gid):match("^%d+$") then
		return fail("unexpected uid/gid " .. tostring(uid) .. "/" .. tostring(gid))
	end
	local state, logs = conf.AIF_STAGE_STATE .. "/jobs", conf.AIF_STAGE_STATE .. "/logs"
	local log = log_file(conf, job_id)
	-- jobs/ holds each command's environment (the site's keys): root only. The log is the
	-- job's to read (its path is $AIF_STAGE_LOG), so it belongs to the job's group.
	local rc = shell("umask 022; mkdir -p " .. quote(state) .. " " .. quote(logs)
		.. " && chmod 0700 " .. quote(state) .. " && : >" .. quote(log)
		.. " && chgrp " .. quote(gid) .. " " .. quote(log) .. " && chmod 0640 " .. quote(log))
	if rc ~= 0 then
		return fail("cannot create the job's state under " .. conf.AIF_STAGE_STATE)
	end
	local ok, write_err = write_state(conf, job_id, { uid = uid, gid = gid })
	if not ok then
		return fail("cannot write " .. state_file(conf, job_id) .. ": " .. tostring(write_err))
	end
	return slurm.SUCCESS
end

function slurm_bb_data_in(job_id, job_script, uid, gid, ...)
	local conf, err = prepare(job_id)
	if conf == nil then
		return fail(err)
	end
	local plan, parse_err = parse_directives(job_script)
	if plan == nil then
		return fail(parse_err)
	end
	local state = job_owner(conf, job_id, uid, gid)
	local log = log_file(conf, job_id)
	for index, dataset in ipairs(plan.stage_in) do
		local report = conf.AIF_STAGE_STATE .. "/jobs/" .. job_id .. ".in" .. index .. ".json"
		os.remove(report)
		local argv = { conf.AIF_GATEWAY_BIN, "stage", "in" }
		for _, source in ipairs(dataset.sources) do
			argv[#argv + 1] = source
		end
		for _, word in ipairs({ "--cache", conf.AIF_STAGE_CACHE, "--holder", job_id, "--json",
				"--report", report }) do
			argv[#argv + 1] = word
		end
		if conf.AIF_STAGE_CACHE_SIZE then
			argv[#argv + 1] = "--cache-size"
			argv[#argv + 1] = conf.AIF_STAGE_CACHE_SIZE
		end
		for _, word in ipairs(words(conf.AIF_STAGE_EXTRA_ARGS or "")) do
			argv[#argv + 1] = word
		end
		local rc, output = run_logged(conf, job_id, "data_in", argv)
		local path = json_string(read_file(report) or "", "path")
		os.remove(report)
		if rc ~= 0 or path == nil or path:find("[\n\r]") then
			return fail("stage_in " .. table.concat(dataset.sources, " ") .. " failed: "
				.. error_line(output, rc, conf) .. " (log: " .. log .. ")")
		end
		state["dataset." .. index] = path
		if dataset.name then
			state["name." .. index] = dataset.name
		end
	end
	local ok, write_err = write_state(conf, job_id, state)
	if not ok then
		return fail("cannot write " .. state_file(conf, job_id) .. ": " .. tostring(write_err))
	end
	return slurm.SUCCESS
end

function slurm_bb_paths(job_id, job_script, path_file, ...)
	local conf, err = prepare(job_id)
	if conf == nil then
		return fail(err)
	end
	local state = read_state(conf, job_id)
	local lines = { "AIF_STAGE_LOG=" .. log_file(conf, job_id) }
	local index = 1
	while state["dataset." .. index] do
		local path = state["dataset." .. index]
		if index == 1 then
			lines[#lines + 1] = "AIF_DATASET=" .. path
		end
		if state["name." .. index] then
			lines[#lines + 1] = "AIF_DATASET_" .. state["name." .. index] .. "=" .. path
		end
		index = index + 1
	end
	local f, open_err = io.open(path_file, "w")
	if f == nil then
		return fail("cannot write " .. tostring(path_file) .. ": " .. tostring(open_err))
	end
	f:write(table.concat(lines, "\n") .. "\n")
	f:close()
	return slurm.SUCCESS
end

-- The data sits in the site cache, which the compute nodes mount. A site that wants it on
-- node-local disk copies it onward in a Prolog (prolog.sh), once the nodes are known.
function slurm_bb_pre_run(...)
	return slurm.SUCCESS
end

function slurm_bb_post_run(...)
	return slurm.SUCCESS
end

function slurm_bb_data_out(job_id, job_script, uid, gid, ...)
	local conf, err = prepare(job_id)
	if conf == nil then
		return fail(err)
	end
	local plan, parse_err = parse_directives(job_script)
	if plan == nil then
		return fail(parse_err)
	end
	local owner = job_owner(conf, job_id, uid, gid)
	if #plan.stage_out > 0 and not (owner.uid or ""):match("^%d+$") then
		return fail("the job's uid is unknown (no state from slurm_bb_setup)")
	end
	local log = log_file(conf, job_id)
	for _, out in ipairs(plan.stage_out) do
		local rc, output = run_logged(conf, job_id, "data_out",
			{ conf.AIF_GATEWAY_BIN, "stage", "out", out.path, "--to", out.url, "--json" }, owner.uid)
		if rc ~= 0 then
			return fail("stage_out " .. out.path .. " to " .. out.url .. " failed: "
				.. error_line(output, rc, conf) .. " (log: " .. log .. ")")
		end
	end
	return slurm.SUCCESS
end

function slurm_bb_job_teardown(job_id, job_script, hurry, ...)
	local conf, err = prepare(job_id)
	if conf == nil then
		return fail(err)
	end
	-- Slurm 22.05 may kill this hook as it starts: a cancel queues the teardown and then kills
	-- the job's running scripts, this one included when it already runs, and never reruns it.
	-- So the release and the clean-up run in a session of their own (setsid), which that kill
	-- does not reach: they finish even then.
	local jobs = conf.AIF_STAGE_STATE .. "/jobs/" .. job_id
	local release = table.concat({ quote(conf.AIF_GATEWAY_BIN), "stage", "release", "--cache",
		quote(conf.AIF_STAGE_CACHE), "--holder", quote(job_id) }, " ")
		.. "; rc=$?; rm -f -- " .. quote(jobs .. ".state") .. " " .. quote(jobs .. ".env") .. " "
		.. quote(jobs) .. ".in*.json; exit $rc"
	local rc, output = run_logged(conf, job_id, "teardown", { "setsid", "-w", "sh", "-c", release })
	if rc ~= 0 then
		-- Not an error for Slurm: the lease lapses by itself (stage in --lease-max-age), and a
		-- failing teardown would keep the job's buffer around for nothing.
		return slurm.SUCCESS, "stage release failed: " .. one_line(error_line(output, rc, conf))
	end
	return slurm.SUCCESS
end

function slurm_bb_real_size(...)
	return slurm.SUCCESS
end

-- `scontrol show bbstat`: the site cache's entries, least recently used first.
function slurm_bb_get_status(...)
	local conf, err = load_settings()
	if conf == nil then
		return slurm.ERROR, err
	end
	local p = io.popen(quote(conf.AIF_GATEWAY_BIN) .. " stage status --cache "
		.. quote(conf.AIF_STAGE_CACHE) .. " 2>&1")
	local out = p:read("*a")
	p:close()
	return slurm.SUCCESS, out
end
