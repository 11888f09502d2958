-- probe-count.lua: probe every library function of the guest and print a
-- table of hits per vCPU (what `bpftrace -e 'kprobe:lib_* { @[probe, cpu] =
-- count(); }'` prints).  Every lib_* function is either probed and counted,
-- or refused with the engine's reason; the guest's own per-vCPU counters
-- (lib_calls_<name>) are printed beside the hits for comparison.
--
--   vmpoke campaign campaigns/probe-count.lua [IMAGE] [--vcpus N] [--json R]

campaign = { vcpus = 2, tasks = 2 }
local SECONDS = 2

local probes = {}
for _, s in ipairs(vm:syms("lib_*")) do
  if s.type == "func" and not s.name:find(".", 1, true) then   -- entry points, not .cold parts
    local ok, p = pcall(vm.probe, vm, s.name)
    if ok then
      probes[#probes + 1] = { name = s.name, p = p }
    else
      vmpoke.log("refused: %s", p)
    end
  end
end
expect(#probes > 0, "at least one library function probed")

-- the guest's own count of calls on one vCPU, if it keeps one
local function guest_calls(name, vcpu)
  local counter = vm:sym("lib_calls_" .. name:gsub("^lib_", ""))
  if not counter then return nil end
  return string.unpack("<I8", vm:read(counter + 8 * vcpu, 8))
end
local vcpus = campaign.vcpus
local start = {}
for _, e in ipairs(probes) do
  start[e.name] = {}
  for v = 0, vcpus - 1 do start[e.name][v] = guest_calls(e.name, v) end
end

vm:run_for(SECONDS)

local head = string.format("%-16s", "function")
for v = 0, vcpus - 1 do head = head .. string.format(" %12s", "vcpu" .. v) end
print(head .. string.format(" %12s %8s   %s", "total", "missed", "the guest's own count meanwhile"))
for _, e in ipairs(probes) do
  local line = string.format("%-16s", e.name)
  local per, calls = e.p.per_vcpu, {}
  for v = 0, vcpus - 1 do
    line = line .. string.format(" %12d", per[v] or 0)
    local now = guest_calls(e.name, v)
    calls[#calls + 1] = now and tostring(now - start[e.name][v]) or "-"
  end
  print(line .. string.format(" %12d %8d   %s", e.p.hits, e.p.missed, table.concat(calls, " ")))
  expect(e.p.hits > 0, e.name .. " was hit")
end
