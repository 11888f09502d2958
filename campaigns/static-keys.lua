-- static-keys.lua: flip the guest's static keys (jump labels) from outside
-- while its tasks run every site and check it against the key.
--
-- The guest's __jump_table is in the kernel's x86-64 format; each key's
-- sites (NOP5/JMP32 and NOP2/JMP8) are rewritten in one batch through the
-- INT3/sync protocol, with key->enabled written in the same batch, so the
-- tasks' checks (exact, seqlock-fair while a flip is in flight) must hold
-- throughout.  A key whose site the guest corrupted at boot is refused
-- with "unexpected op", naming the site, and nothing is written.
--
--   vmpoke campaign campaigns/static-keys.lua [IMAGE] [--json R]

campaign = { vcpus = 2, tasks = 2 }

vm:run_for(0.3)
local before = vm:stats()
expect(before.iterations > 0 and before.check_failures == 0,
       "the guest runs and its checks hold before any flip")

for _, k in ipairs(vm:static_keys()) do
  vmpoke.log("%-16s enabled=%-5s sites=%d", k.name, tostring(k.enabled), k.sites)
end

-- every healthy key both ways, twice, with the guest running in between
local flips = 0
for round = 1, 2 do
  for _, name in ipairs({ "jl_key_false", "jl_key_true", "jl_key_one",
                          "jl_key_16", "jl_key_256" }) do
    local k = vm:static_key(name)
    local was = k.enabled
    local r = was and k:disable() or k:enable()
    expect(r.ok and r.changed and k.enabled == not was,
           string.format("%s %s: %d sites, %d syncs, %.0f us", name,
                         was and "disabled" or "enabled", r.sites, r.syncs, r.us))
    flips = flips + 1
    vm:run_for(0.05)
  end
end

-- the key whose site the guest corrupted: refused whole, nothing written
local bad = vm:static_key("jl_key_corrupt")
local site = vm:read("jl_corrupt_fn", 5)
local r = bad:enable()
expect(not r.ok and r.error:find("unexpected op", 1, true) ~= nil,
       "jl_key_corrupt refused: " .. tostring(r.error))
expect(vm:read("jl_corrupt_fn", 5) == site and not bad.enabled,
       "nothing written for jl_key_corrupt")

vm:run_for(0.5)
local after = vm:stats()
expect(after.check_failures == 0, "the guest's checks held over " .. flips ..
       " flips (" .. (after.iterations - before.iterations) .. " task iterations)")
-- keys the script flipped are put back on exit (the report's "restored")
