-- demo.lua: what `make run` shows: boot the guest, probe a library
-- function, patch another live, and report.
--
--   vmpoke campaign campaigns/demo.lua [IMAGE] --json report.json --trace trace.json

campaign = { vcpus = 2, tasks = 3 }

local seen = {}
local p = vm:probe("lib_checksum", function(ctx) seen[ctx.vcpu] = (seen[ctx.vcpu] or 0) + 1 end)
local counted = vm:probe("lib_sum_calls")
vm:run_for(1)
vmpoke.log("lib_checksum: %d hits (%d missed), lib_sum_calls: %d hits", p.hits, p.missed, counted.hits)
vmpoke.log("lib_checksum's Lua handler ran %d times on vCPU 0, %d on vCPU 1", seen[0] or 0, seen[1] or 0)
expect(p.hits > 0 and counted.hits > 0, "both probes fire")

-- lib_add's first instruction is longer than a JMP: write JMP + NOPs (whole
-- instructions) and let a vCPU that traps meanwhile emulate the JMP
local jmp = vmpoke.jmp("lib_add", "lib_mul_add")
local first = vm:disasm("lib_add", 1)[1]
local r = vm:patch({ { at = "lib_add", new = jmp .. vmpoke.nop(#first.bytes - 5), emulate = jmp } })
vmpoke.log("redirected lib_add -> lib_mul_add: ok=%s, %d syncs, %.0f us", tostring(r.ok), r.syncs, r.us)
local before = vm:stats().check_failures
vm:run_for(1)
expect(vm:stats().check_failures > before, "the guest's checks notice the redirect")
-- the probes and the patch are undone on exit: the report says "restored"
