--[[
A burst_buffer.lua for the harness's own tests: it records every slurm_bb_* call and the
arguments Slurm passed, and takes its behaviour per job from #BB_LUA directives in the job script:

  #BB_LUA wait_for PATH     slurm_bb_data_in returns only once PATH exists (the test creates it)
  #BB_LUA fail MESSAGE      slurm_bb_data_in returns slurm.ERROR, MESSAGE

Each call appends one line to calls.log beside this file (Slurm installs it next to slurm.conf):
  function name TAB argument count TAB one "type:value" field per argument (tables: their keys)
slurm_bb_paths also exports AIFGW_BB_PATHS=<job id> into the job's environment.
--]]

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local calls_log = here .. "calls.log"

local function describe(value)
	if type(value) == "table" then
		local keys = {}
		for key, _ in pairs(value) do
			keys[#keys + 1] = tostring(key)
		end
		table.sort(keys)
		return "table:" .. table.concat(keys, ",")
	end
	-- Tabs and newlines would break the one-line record.
	return type(value) .. ":" .. tostring(value):gsub("[\t\n]", " ")
end

local function record(name, ...)
	local count = select("#", ...)
	local fields = {}
	for i = 1, count do
		fields[i] = describe((select(i, ...)))
	end
	local log = io.open(calls_log, "a")
	log:write(name, "\t", count, "\t", table.concat(fields, "\t"), "\n")
	log:close()
end

local function directives(job_script)
	local found = {}
	local script = io.open(job_script, "r")
	if script == nil then
		return found
	end
	for line in script:lines() do
		local verb, rest = line:match("^#BB_LUA%s+(%S+)%s*(.-)%s*$")
		if verb then
			found[#found + 1] = { verb = verb, arg = rest }
		end
	end
	script:close()
	return found
end

-- Hooks that only record their call and succeed.
for _, name in ipairs({ "slurm_bb_job_process", "slurm_bb_pools", "slurm_bb_setup",
		"slurm_bb_real_size", "slurm_bb_pre_run", "slurm_bb_post_run", "slurm_bb_data_out",
		"slurm_bb_job_teardown" }) do
	_G[name] = function(...)
		record(name, ...)
		return slurm.SUCCESS
	end
end

function slurm_bb_data_in(job_id, job_script, ...)
	record("slurm_bb_data_in", job_id, job_script, ...)
	for _, directive in ipairs(directives(job_script)) do
		if directive.verb == "fail" then
			return slurm.ERROR, directive.arg
		elseif directive.verb == "wait_for" then
			-- A real stage-in blocks the same way: slurmscriptd runs this in its own process.
			local status = os.execute(string.format(
				"for i in $(seq 1200); do [ -e '%s' ] && exit 0; sleep 0.1; done; exit 1",
				directive.arg))
			if status ~= 0 then
				return slurm.ERROR, "gave up waiting for " .. directive.arg
			end
		end
	end
	return slurm.SUCCESS
end

function slurm_bb_paths(job_id, job_script, path_file, ...)
	record("slurm_bb_paths", job_id, job_script, path_file, ...)
	local paths = io.open(path_file, "w")
	paths:write("AIFGW_BB_PATHS=", job_id, "\n")
	paths:close()
	return slurm.SUCCESS
end

function slurm_bb_get_status(...)
	record("slurm_bb_get_status", ...)
	return slurm.SUCCESS, "recording_bb status\n"
end
