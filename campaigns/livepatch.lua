-- livepatch.lua: replace lp_sleep and lp_mix by lp_sleep__v2 and lp_mix__v2
-- with livepatch's per-task consistency model, from outside the guest,
-- while every task calls them and checks each result against its own
-- patch_state (guest/livepatch.c).
--
-- enable() points each old function's fentry NOP5 at a redirect stub that
-- sends a task to the new version once its patch_state says so.  Then, on
-- every retry, a task that is not on a vCPU and whose saved stack walks
-- reliably (frame pointers) with no frame in lp_sleep or lp_mix switches.
-- The guest's sleeper task naps inside lp_sleep half of the time: it is the
-- straggler, reported with its blocking frame, until it leaves.  When every
-- task has switched, the entries become direct JMPs to the new versions and
-- the stubs are freed after a grace period.  disable() goes back the same way.
--
--   vmpoke campaign campaigns/livepatch.lua [IMAGE] [--json R]

campaign = { vcpus = 2, tasks = 2, scenario = "livepatch" }

vm:run_for(0.3)
local before = vm:stats()
expect(before.iterations > 0 and before.check_failures == 0,
       "the guest runs and its checks hold before the patch")

for _, s in ipairs(vm:syms("lp_*__v*")) do
  vmpoke.log("replacement %s at 0x%x (%d bytes)", s.name, s.addr, s.size)
end

local lp = vm:livepatch({ { old = "lp_sleep", new = "lp_sleep__v2" },
                          { old = "lp_mix", new = "lp_mix__v2" } }, { retry_ms = 100 })

-- Print each retry once: tasks switched, still pending, and the stragglers.
local shown = 0
local sleeper_frames = 0
local function transition(want)
  for _ = 1, 120 do
    local h = lp.history
    if #h > shown then
      for i = shown + 1, #h do
        vmpoke.log("  retry %d at %.2f s: %d switched, %d pending", h[i].retry, h[i].t,
                   h[i].switched, h[i].pending)
      end
      shown = #h
      for _, p in ipairs(lp.pending) do
        if p.reason == "sleeping on function" then
          vmpoke.log("    task %d (vCPU %d): sleeping on function %s, frame %s", p.task,
                     p.vcpu, p["function"], p.return_address)
          if p["function"] == "lp_sleep" then sleeper_frames = sleeper_frames + 1 end
        else
          vmpoke.log("    task %d (vCPU %d): %s: %s", p.task, p.vcpu, p.reason, p.why)
        end
      end
    end
    if lp.state == want then return true end
    vm:run_for(0.25)
  end
  return lp.state == want
end

local r = lp:enable()
expect(r.ok, string.format("enable: %d functions, %d syncs, %.0f us, state %s, %d pending",
                           r.sites, r.syncs, r.us, r.state, r.pending))
expect(transition("patched"), "every task switched to the new versions (" ..
       lp.retries .. " retries, state " .. lp.state .. ")")
vmpoke.log("stragglers seen sleeping in lp_sleep: %d", sleeper_frames)
vm:run_for(0.5)

shown = 0
r = lp:disable()
expect(r.ok, "disable: state " .. r.state)
expect(transition("unpatched"), "every task switched back (" .. lp.retries ..
       " retries, state " .. lp.state .. ")")

local bad = vm:livepatch({ { old = "lib_add", new = "lib_mul_add" } })
r = bad:enable()
expect(not r.ok and r.error:find("unexpected op at lib_add", 1, true),
       "a function without the fentry NOP5 is refused: " .. tostring(r.error))

vm:run_for(0.5)
local after = vm:stats()
expect(after.check_failures == 0, "the guest's checks held through both transitions (" ..
       (after.iterations - before.iterations) .. " task iterations)")
