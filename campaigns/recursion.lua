-- recursion.lua: the recursion and deadlock cases of seeds 001 and 003.
--
-- Seed 001 (a tracer probing the code that runs it): probes on the guest's
-- trap-entry text are refused, with a reason.  A handler that would send
-- the vCPU straight back onto its own probe ("skip" to the probe address)
-- is stopped with an error instead of looping.
--
-- Seed 003 (text_poke_bp waiting for a CPU that waits for it): the Lua
-- interpreter is single-threaded.  A hit that arrives while the script is
-- busy (here: inside vm:patch()/vm:unpatch(), waiting for every vCPU to
-- acknowledge a sync) does not wait for it: it is counted as `missed` and
-- the original instruction runs.  The patch loop below therefore always
-- finishes, and the missed counts show how many hits took that path.
--
--   vmpoke campaign campaigns/recursion.lua [IMAGE] [--json R]

campaign = { vcpus = 2, tasks = 2 }

-- seed 001: the trap path itself cannot be probed
for _, name in ipairs({ "guest_bp_entry", "guest_bp_handler", "guest_timer_entry" }) do
  if vm:sym(name) then
    local ok, err = pcall(vm.probe, vm, name)
    expect(not ok, name .. " is refused: " .. tostring(err))
  end
end

-- seed 003: probes with Lua handlers, hit while the script patches
local calls = 0
local outer = vm:probe("lib_sum_calls", function(ctx) calls = calls + 1 end)
local inner = vm:probe("lib_add", function(ctx) calls = calls + 1 end)

-- a NOP5 the torture sites offer: patch it to "jmp next" and back, 20 times
local nop5
for _, i in ipairs(vm:disasm("site_nop5_a", 8)) do
  if #i.bytes == 5 and i.text:match("^nop") then nop5 = i.addr break end
end
expect(nop5 ~= nil, "found a NOP5 to patch")
local applied = 0
for _ = 1, 20 do
  local r = vm:patch({ { at = nop5, new = vmpoke.jmp(nop5, nop5 + 5) } })
  if r.ok and vm:unpatch(r).ok then applied = applied + 1 end
end
expect(applied == 20, "20 patch/unpatch rounds while hits arrive: " .. applied .. " done")
expect(inner.missed + outer.missed > 0, "hits during the patches were missed, not waited for")

vm:run_for(1)
expect(calls > 0 and calls <= inner.hits + outer.hits,
       "while the script idles in run_for, handlers run (" .. calls .. " calls)")

-- seed 001, the handler side: back onto its own probe would loop
local loop = vm:probe("lib_mul_add", function(ctx)
  ctx.regs.rip = ctx.rip
  return "skip"
end)
local ok, err = pcall(vm.run_for, vm, 0.5)
expect(not ok and err:find("would loop", 1, true), "a self-looping handler is stopped: " .. tostring(err))
loop:remove()

print(string.format("%-16s %10s %10s", "probe", "hits", "missed"))
for _, p in ipairs({ outer, inner, loop }) do
  print(string.format("%-16s %10d %10d", p.where, p.hits, p.missed))
end
