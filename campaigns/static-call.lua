-- static-call.lua: retarget the guest's static call sc_op from outside
-- while its tasks call it through every site and check each result
-- against the function the key names.
--
-- sc_op has a trampoline (__SCT__sc_op: JMP to the function, then the
-- 0f b9 cc signature), a key (__SCK__sc_op), two direct CALL sites and a
-- tail-call (JMP) site.  An update rewrites the trampoline and every site
-- in one batch through the INT3/sync protocol (a CPL3 task that hits a
-- site's INT3 has the NEW call emulated) and writes key->func with it.
-- NULL turns the CALL sites into NOP5 and the trampoline and the tail
-- call into RET.
--
--   vmpoke campaign campaigns/static-call.lua [IMAGE] [--json R]

campaign = { vcpus = 2, tasks = 2 }

vm:run_for(0.3)
local before = vm:stats()
expect(before.iterations > 0 and before.check_failures == 0,
       "the guest runs and its checks hold before any update")

for _, c in ipairs(vm:static_calls()) do
  vmpoke.log("%s: current %s, %d sites, targets %s", c.name, tostring(c.current),
             c.sites, table.concat(c.targets, ", "))
end

local c = vm:static_call("sc_op")
for round = 1, 2 do
  for _, target in ipairs({ "sc_op_mul", "sc_op_xor", false, "sc_op_add" }) do
    local r = c:update(target or nil)
    expect(r.ok and c.current == (target or nil),
           string.format("sc_op -> %s: %d sites, %d stop-the-world, %d syncs, %.0f us",
                         tostring(target or "NULL"), r.sites, r.stop_the_world,
                         r.syncs, r.us))
    vm:run_for(0.05)
  end
end

local ok, err = pcall(function() return c:update("lib_add") end)
local r = ok and err or nil
expect(r and not r.ok and r.error:find("not a target of sc_op", 1, true),
       "an undeclared target is refused: " .. tostring(r and r.error or err))

vm:run_for(0.5)
local after = vm:stats()
expect(after.check_failures == 0, "the guest's checks held over 8 updates (" ..
       (after.iterations - before.iterations) .. " task iterations)")
