-- patch-redirect.lua: redirect one guest function to another with a JMP,
-- live, and expect the guest's own checks to see the new behaviour.
--
-- The guest's tasks call lib_add(x, 0x1234) and check the result is
-- x + 0x1234.  We write `jmp lib_mul_add` over lib_add's first bytes (one
-- batch through the INT3/sync protocol), so lib_add now returns
-- x * 0x1234 + c * scale: the tasks' checks fail, and count it.  Then we
-- put lib_add back and expect the checks to hold again.
--
--   vmpoke campaign campaigns/patch-redirect.lua [IMAGE] [--json R]

campaign = { vcpus = 2, tasks = 2 }

-- A JMP is 5 bytes, and a patch must end on an instruction boundary: the
-- rest of the last instruction it covers is padded with INT3 (never run:
-- the JMP leaves first).
local function redirect(from, to)
  local len = 0
  for _, i in ipairs(vm:disasm(from, 5)) do
    if len >= 5 then break end
    len = len + #i.bytes
  end
  return vmpoke.jmp(from, to) .. string.rep("\xcc", len - 5)
end

vm:run_for(0.5)
local before = vm:stats()
expect(before.iterations > 0 and before.check_failures == 0,
       "the guest runs and its checks hold before the patch")

local jmp = redirect("lib_add", "lib_mul_add")
local r = vm:patch({ { at = "lib_add", new = jmp } })
expect(r.ok, "lib_add redirected to lib_mul_add (" .. r.syncs .. " syncs, " ..
       string.format("%.0f", r.us) .. " us)")
for _, x in ipairs(r.refused) do vmpoke.log("refused: %s: %s", vm:symbolize(x.at), x.reason) end
expect(vm:read("lib_add", #jmp) == jmp, "lib_add starts with the JMP")

vm:run_for(1)
local during = vm:stats()
expect(during.check_failures > before.check_failures,
       "the guest's checks see the new behaviour (" ..
       (during.check_failures - before.check_failures) .. " failures)")

local u = vm:unpatch(r)
expect(u.ok, "lib_add restored")
vm:run_for(0.3)        -- calls that were inside lib_mul_add finish
local settled = vm:stats()
vm:run_for(1)
local after = vm:stats()
expect(after.check_failures == settled.check_failures,
       "the guest's checks hold again once lib_add is back")
expect(after.iterations > settled.iterations, "the guest kept running")
vmpoke.log("check failures: %d before, %d during the redirect, %d after",
           before.check_failures, during.check_failures, after.check_failures)
