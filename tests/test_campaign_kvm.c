// SPDX-License-Identifier: MIT
/*
 * test_campaign_kvm.c - `vmpoke campaign` end to end on the real guest:
 * every example campaign in campaigns/, a handler returning "skip", a
 * handler removing its own probe, a script that errors halfway, SIGINT
 * during a campaign, and the status line only on a terminal.  Every run's
 * report, events and trace are checked (campaign_check.c), and every run
 * must end with the guest's text restored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "campaign_check.h"
#include "testlib.h"

#define K_REPORT	campaign_check_tmp("kvm-campaign.json")
#define K_TRACE		campaign_check_tmp("kvm-campaign.trace.json")
#define K_EVENTS	campaign_check_tmp("kvm-campaign.ndjson")

/*
 * Run a campaign; its exit code.  *report gets the parsed report, whose
 * keys, "restored" and files are checked here.
 */
static int run_campaign(const char *script, const char *extra, json_object **report)
{
	char cmd[4096], why[512], *out = NULL;
	json_object *r, *v;
	int rc;

	unlink(K_REPORT);
	unlink(K_TRACE);
	unlink(K_EVENTS);
	snprintf(cmd, sizeof(cmd), "%s campaign %s %s --quiet --json %s --trace %s --events %s %s",
		 testlib_vmpoke(), script, testlib_image(), K_REPORT, K_TRACE, K_EVENTS,
		 extra ? extra : "");
	rc = testlib_run(cmd, &out);
	r = json_object_from_file(K_REPORT);
	EXPECT_TRUE_MSG(r != NULL, "%s: no report; output:\n%s", script, out);
	if (r) {
		EXPECT_TRUE_MSG(!campaign_check_report(r, why, sizeof(why)), "%s", why);
		EXPECT_TRUE_MSG(json_object_object_get_ex(r, "restored", &v) &&
				json_object_get_boolean(v), "%s: text not restored; output:\n%s",
				script, out);
		json_object_object_get_ex(r, "exit_code", &v);
		EXPECT_EQ_U64(rc, json_object_get_int(v));
	}
	EXPECT_TRUE_MSG(!campaign_check_trace(K_TRACE, why, sizeof(why)), "%s", why);
	EXPECT_TRUE_MSG(!campaign_check_events(K_EVENTS, why, sizeof(why)), "%s", why);
	if (report)
		*report = r;
	else
		json_object_put(r);
	if (rc)
		fprintf(stderr, "\n  %s: exit %d; output:\n%s\n", script, rc, out);
	free(out);
	return rc;
}

static void expect_all_held(json_object *r, size_t min)
{
	char why[512];

	EXPECT_TRUE_MSG(r && !campaign_check_expectations(r, min, why, sizeof(why)), "%s", why);
}

/* A script (text) that must exit 0 with at least min expectations, all held. */
static void script_all_held(const char *lua, size_t min)
{
	json_object *r = NULL;
	char *path;

	if (!testlib_require_kvm())
		return;
	path = campaign_check_script(lua);
	EXPECT_EQ_U64(0, run_campaign(path, NULL, &r));
	expect_all_held(r, min);
	json_object_put(r);
	unlink(path);
	free(path);
}

static void example(const char *name, size_t min_expectations)
{
	char path[256];
	json_object *r = NULL;

	if (!testlib_require_kvm())
		return;
	snprintf(path, sizeof(path), "campaigns/%s", name);
	EXPECT_EQ_U64(0, run_campaign(path, NULL, &r));
	expect_all_held(r, min_expectations);
	json_object_put(r);
}

/*
 * kind "auto" by default: lib_add is optimized (a counting detour, no exit,
 * so no hit events), lib_switch stays INT3 with the named rule in the
 * report (its jump table) and its hits show in the trace.
 */
static void test_campaign_probe_count(void)
{
	json_object *r, *probes, *v;
	bool add = false, sw = false;

	example("probe-count.lua", 5);
	EXPECT_TRUE(campaign_check_trace_has(K_TRACE, "i", "lib_switch"));
	r = json_object_from_file(K_REPORT);
	if (!r || !json_object_object_get_ex(r, "probes", &probes)) {
		EXPECT_TRUE_MSG(false, "no probes in %s", K_REPORT);
		json_object_put(r);
		return;
	}
	for (size_t i = 0; i < json_object_array_length(probes); i++) {
		json_object *p = json_object_array_get_idx(probes, i);
		const char *where, *kind, *why = NULL;

		json_object_object_get_ex(p, "where", &v);
		where = json_object_get_string(v);
		json_object_object_get_ex(p, "kind", &v);
		kind = json_object_get_string(v);
		if (json_object_object_get_ex(p, "optimize_refused", &v) && v)
			why = json_object_get_string(v);
		if (!strcmp(where, "lib_add"))
			add = !strcmp(kind, "optimized") && !why;
		if (!strcmp(where, "lib_switch"))
			sw = !strcmp(kind, "int3") && why && !strcmp(why, "indirect_jump");
	}
	EXPECT_TRUE_MSG(add, "lib_add is not reported optimized");
	EXPECT_TRUE_MSG(sw, "lib_switch is not reported int3 with optimize_refused indirect_jump");
	json_object_put(r);
}

/* opts.kind: auto/optimized/int3; a handler probe is optimized too; bad kinds raise. */
static void test_campaign_probe_kinds(void)
{
	script_all_held(
		"campaign = { vcpus = 2, tasks = 2 }\n"
		"local seen = 0\n"
		"local a = vm:probe('lib_add', nil, {kind = 'optimized'})\n"
		"local m = vm:probe('lib_mul_add', function(ctx)\n"
		"  if ctx.rip == vm:sym('lib_mul_add') then seen = seen + 1 end\n"
		"end)\n"
		"local c = vm:probe('lib_checksum', nil, {kind = 'int3'})\n"
		"local s = vm:probe('lib_switch', nil, {kind = 'optimized'})\n"
		"local ok, err = pcall(vm.probe, vm, 'lib_sum_calls', nil, {kind = 'fast'})\n"
		"expect(not ok and err:find('opts.kind', 1, true), 'bad kind: ' .. tostring(err))\n"
		"vm:run_for(0.5)\n"
		"expect(a.kind == 'optimized' and m.kind == 'optimized', 'optimized: ' ..\n"
		"       a.kind .. ' ' .. m.kind)\n"
		"expect(c.kind == 'int3' and s.kind == 'int3', 'int3: ' .. c.kind .. ' ' .. s.kind)\n"
		"expect(a.hits > 0 and c.hits > 0 and s.hits > 0, 'all counted')\n"
		"-- the guest runs on, so read the counts once m is removed: removal syncs,\n"
		"-- so no vCPU is still inside a hit (one that meets the busy interpreter\n"
		"-- is counted first and turned into a miss after, which a read in between\n"
		"-- would see)\n"
		"m:remove()\n"
		"local h = m.hits\n"
		"expect(h > 0 and seen == h, 'the handler ran at the probe address for every '\n"
		"       .. 'hit: ' .. seen .. ' of ' .. h)\n"
		"expect(vm:stats().check_failures == 0, 'guest checks hold')\n", 6);
}

/* ... and its trace shows the batch with the protocol's phases nested in it */
static void test_campaign_patch_redirect(void)
{
	static const char *const slices[] = { "vm:patch", "prepare", "protocol", "int3",
					      "tails", "heads", "vm:unpatch" };

	example("patch-redirect.lua", 6);
	for (size_t i = 0; i < sizeof(slices) / sizeof(slices[0]); i++)
		EXPECT_TRUE_MSG(campaign_check_trace_has(K_TRACE, "X", slices[i]),
				"no X slice '%s' in the trace", slices[i]);
	EXPECT_TRUE(campaign_check_trace_has(K_TRACE, "C", "guest progress"));
}

static void test_campaign_recursion(void)
{
	example("recursion.lua", 7);
}

static void test_campaign_demo(void)
{
	example("demo.lua", 2);
}

/* Every key both ways under load, the corrupted one refused; keys put back. */
static void test_campaign_static_keys(void)
{
	example("static-keys.lua", 14);
	EXPECT_TRUE(campaign_check_trace_has(K_TRACE, "X", "static_key:enable"));
	EXPECT_TRUE(campaign_check_trace_has(K_TRACE, "X", "static_key:disable"));
}

/* lp_sleep and lp_mix replaced and put back under load, printed per retry. */
static void test_campaign_livepatch(void)
{
	example("livepatch.lua", 7);
	EXPECT_TRUE(campaign_check_trace_has(K_TRACE, "X", "lp:enable"));
	EXPECT_TRUE(campaign_check_trace_has(K_TRACE, "X", "lp:disable"));
}

/* sc_op through every target and NULL; the undeclared target refused. */
static void test_campaign_static_call(void)
{
	example("static-call.lua", 11);
	EXPECT_TRUE(campaign_check_trace_has(K_TRACE, "X", "static_call:update"));
}

/* A static call left retargeted is put back on exit ("restored"). */
static void test_campaign_static_call_api(void)
{
	script_all_held(
		"campaign = { vcpus = 2, tasks = 2 }\n"
		"local cs, by = vm:static_calls(), {}\n"
		"for _, x in ipairs(cs) do by[x.name] = x end\n"
		"expect(#cs == 2 and by.sc_op.current == 'sc_op_add' and by.sc_op.sites == 3\n"
		"       and #by.sc_op.targets == 3 and by.sc_tick.sites == 1, 'calls listed')\n"
		"local t = vm:static_call('sc_tick'):update('sc_tick_b')\n"
		"expect(t.ok and t.sites == 2 and t.stop_the_world == 2, 'CPL0 sc_tick: ' ..\n"
		"       t.stop_the_world .. ' of ' .. t.sites .. ' stop-the-world')\n"
		"local c = vm:static_call('sc_op')\n"
		"local r = c:update('sc_op_xor')\n"
		"expect(r.ok and r.sites == 4 and c.current == 'sc_op_xor', 'retargeted')\n"
		"local ok, err = pcall(vm.static_call, vm, 'nope')\n"
		"expect(not ok and err:find(\"no static call 'nope'\", 1, true), tostring(err))\n"
		"vm:run_for(0.3)\n"
		"expect(vm:stats().check_failures == 0, 'guest checks hold')\n", 5);
}

/*
 * A key left flipped is put back on exit: the report's "restored" covers
 * it (run_campaign checks it).  An unknown key is an error naming it.
 */
static void test_campaign_static_key_api(void)
{
	script_all_held(
		"campaign = { vcpus = 2, tasks = 2 }\n"
		"local ks = vm:static_keys()\n"
		"local byname = {}\n"
		"for _, k in ipairs(ks) do byname[k.name] = k end\n"
		"expect(#ks == 6 and byname.jl_key_256.sites == 256 and\n"
		"       byname.jl_key_true.enabled and not byname.jl_key_false.enabled,\n"
		"       'six keys listed with their sites and state')\n"
		"local k = vm:static_key('jl_key_16')\n"
		"expect(k.name == 'jl_key_16' and k.sites == 16 and not k.enabled, 'k fields')\n"
		"local r = k:enable()\n"
		"expect(r.ok and r.changed and r.sites == 16 and k.enabled, 'enabled')\n"
		"local again = k:enable()\n"
		"expect(again.ok and not again.changed, 'enable twice: no change')\n"
		"local ok, err = pcall(vm.static_key, vm, 'jl_key_nope')\n"
		"expect(not ok and err:find(\"no static key 'jl_key_nope'\", 1, true),\n"
		"       'unknown key named: ' .. tostring(err))\n"
		"vm:run_for(0.3)\n"
		"expect(vm:stats().check_failures == 0, 'guest checks hold')\n", 6);
}

/* lp's numeric key, which must be > 0; then dropped, for the exact comparison. */
static void take_positive(json_object *lp, const char *key)
{
	json_object *v;

	EXPECT_TRUE_MSG(lp && json_object_object_get_ex(lp, key, &v) &&
			json_object_get_double(v) > 0, "livepatch \"%s\" is not > 0", key);
	if (lp)
		json_object_object_del(lp, key);
}

/*
 * The report after a campaign that left a livepatch patched, a key flipped
 * and a call retargeted: all put back by the exit, the livepatch read after its
 * undo's transition ("state": "unpatched", no task pending, its
 * counters those of that transition), the script's own state in
 * "before_restore".
 */
static void test_campaign_report_kinds(void)
{
	static const char lua[] =
		"campaign = { vcpus = 2, tasks = 2, scenario = 'livepatch' }\n"
		"local k = vm:static_key('jl_key_16')\n"
		"expect(k:enable().ok and k.enabled, 'jl_key_16 enabled')\n"
		"expect(vm:static_call('sc_op'):update('sc_op_xor').ok, 'sc_op retargeted')\n"
		"local lp = vm:livepatch({ { old = 'lp_mix', new = 'lp_mix__v2' } },\n"
		"                        { retry_ms = 50 })\n"
		"expect(lp:enable().ok, 'livepatch enabled')\n"
		"for _ = 1, 200 do\n"
		"  if lp.state == 'patched' then break end\n"
		"  vm:run_for(0.1)\n"
		"end\n"
		"expect(lp.state == 'patched', 'every task switched: ' .. lp.state)\n"
		"vm:run_for(0.2)\n"
		"expect(vm:stats().check_failures == 0, 'guest checks hold')\n";
	json_object *r = NULL, *a, *lp;
	char *path, why[1024];

	if (!testlib_require_kvm())
		return;
	path = campaign_check_script(lua);
	EXPECT_EQ_U64(0, run_campaign(path, NULL, &r));
	expect_all_held(r, 5);
	a = r && json_object_object_get_ex(r, "static_keys", &a) ? a : NULL;
	EXPECT_TRUE_MSG(!campaign_check_json(a, "[{\"name\": \"jl_key_16\", \"original\": false,"
					     " \"before_restore\": true, \"enabled\": false,"
					     " \"restored\": true}]", why, sizeof(why)), "%s", why);
	a = r && json_object_object_get_ex(r, "static_calls", &a) ? a : NULL;
	EXPECT_TRUE_MSG(!campaign_check_json(a, "[{\"name\": \"sc_op\", \"original\": \"sc_op_add\","
					     " \"before_restore\": \"sc_op_xor\","
					     " \"current\": \"sc_op_add\", \"restored\": true}]",
					     why, sizeof(why)), "%s", why);
	EXPECT_NULL(campaign_check_at(r, "livepatches", 1));
	lp = campaign_check_at(r, "livepatches", 0);
	/* the whole object, history and counters included, if the undo failed */
	EXPECT_TRUE_MSG(lp && json_object_object_get_ex(lp, "restored", &a) &&
			json_object_get_boolean(a), "livepatch not restored: %s",
			lp ? json_object_to_json_string(lp) : "(none)");
	take_positive(lp, "retries");
	take_positive(lp, "switched");
	take_positive(lp, "syncs");
	take_positive(lp, "us");
	if (lp)
		json_object_object_del(lp, "history");
	EXPECT_TRUE_MSG(!campaign_check_json(lp, "{\"functions\": [{\"old\": \"lp_mix\","
					     " \"new\": \"lp_mix__v2\"}],"
					     " \"before_restore\": \"patched\","
					     " \"state\": \"unpatched\", \"restored\": true,"
					     " \"forced\": false, \"pending\": []}",
					     why, sizeof(why)), "%s", why);
	json_object_put(r);
	unlink(path);
	free(path);
}

/*
 * A handler that returns "skip" emulates lib_add entirely (result in %rax,
 * return to the caller): the guest's checks still hold, and lib_add's own
 * call counter moves only by the hits that were missed (those ran the
 * original), plus at most one call per task that was already inside
 * lib_add when the probe went in.  Without the skip it would move by
 * every hit.
 */
static void test_campaign_skip(void)
{
	static const char lua[] =
		"campaign = { vcpus = 2, tasks = 2 }\n"
		"local function calls()\n"
		"  local a, n = vm:sym('lib_calls_add'), 0\n"
		"  for v = 0, 1 do n = n + string.unpack('<I8', vm:read(a + 8 * v, 8)) end\n"
		"  return n\n"
		"end\n"
		"local p = vm:probe('lib_add', function(ctx)\n"
		"  local r = ctx.regs\n"
		"  r.rax = r.rdi + r.rsi\n"
		"  r.rip = string.unpack('<I8', vm:read(r.rsp, 8))\n"
		"  r.rsp = r.rsp + 8\n"
		"  return 'skip'\n"
		"end)\n"
		"local c0, f0 = calls(), vm:stats().check_failures\n"
		"vm:run_for(1.5)\n"
		"local c1 = calls()\n"
		"local hits, missed = p.hits, p.missed\n"
		"expect(hits > 0, 'the handler ran: ' .. hits)\n"
		"-- slack: a task preempted inside lib_add before the probe went in counts once\n"
		"expect(c1 - c0 <= missed + 4, 'skipped calls did not run lib_add: counter +' ..\n"
		"       (c1 - c0) .. ', missed ' .. missed .. ', hits ' .. hits)\n"
		"expect(vm:stats().check_failures == f0, 'the guest saw correct results')\n";
	script_all_held(lua, 3);
}

/* bpftrace 'kprobe:*': every function placed or refused with a reason; the guest lives. */
static void test_campaign_every_symbol(void)
{
	static const char lua[] =
		"local placed, refused = 0, 0\n"
		"for _, s in ipairs(vm:syms('*')) do\n"
		"  if s.type == 'func' then\n"
		"    local ok, e = pcall(vm.probe, vm, s.name)\n"
		"    if ok then placed = placed + 1\n"
		"    else\n"
		"      refused = refused + 1\n"
		"      expect(e:sub(1, #s.name + 2) == s.name .. ': ' and #e > #s.name + 2,\n"
		"             'a refusal names where and why: ' .. e)\n"
		"    end\n"
		"  end\n"
		"end\n"
		"expect(placed > 0 and refused > 0, placed .. ' placed, ' .. refused .. ' refused')\n"
		"vm:run_for(1)\n"
		"local st = vm:stats()\n"
		"expect(st.guest_faults == 0 and st.iterations > 0, 'the guest never dies of a probe')\n";

	script_all_held(lua, 3);
}

/* A guest that faults (scenario ud): exit 1, unhealthy, a guest_fault event. */
static void test_campaign_guest_fault(void)
{
	static const char lua[] =
		"campaign = { scenario = 'ud' }\n"
		"pcall(vm.probe, vm, 'lib_add')\n"
		"vm:run_for(30)\n";
	json_object *r = NULL, *g, *v;
	char *path, *ev = NULL, cmd[512];

	if (!testlib_require_kvm())
		return;
	path = campaign_check_script(lua);
	EXPECT_EQ(1, run_campaign(path, NULL, &r));
	EXPECT_TRUE(r && json_object_object_get_ex(r, "guest", &g) &&
		    json_object_object_get_ex(g, "healthy", &v) && !json_object_get_boolean(v));
	snprintf(cmd, sizeof(cmd), "grep -c '\"type\":\"guest_fault\"' %s", K_EVENTS);
	testlib_run(cmd, &ev);
	EXPECT_STR_HAS(ev, "1");
	free(ev);
	json_object_put(r);
	unlink(path);
	free(path);
}

/* p:remove() inside the handler: deferred, and the handler runs once. */
static void test_campaign_handler_removes_itself(void)
{
	static const char lua[] =
		"local p, n = nil, 0\n"
		"p = vm:probe('lib_checksum', function(ctx) n = n + 1; p:remove() end)\n"
		"vm:run_for(1)\n"
		"expect(n == 1, 'the handler ran once: ' .. n)\n"
		"expect(p.removed, 'the probe is gone')\n"
		"local h = p.hits\n"
		"vm:run_for(0.3)\n"
		"expect(p.hits == h, 'no hits after the removal')\n";
	script_all_held(lua, 3);
}

/* An error halfway: exit 2 with SCRIPT:LINE:, every probe and patch undone. */
static void test_campaign_error_halfway(void)
{
	static const char lua[] =
		"local jmp = vmpoke.jmp('lib_add', 'lib_mul_add')\n"
		"local len = #vm:disasm('lib_add', 1)[1].bytes\n"
		"local r = vm:patch({ { at = 'lib_add', new = jmp .. vmpoke.nop(len - 5), emulate = jmp } })\n"
		"assert(r.ok)\n"
		"for _, s in ipairs(vm:syms('lib_*')) do\n"
		"  if s.type == 'func' then pcall(vm.probe, vm, s.name, function() end) end\n"
		"end\n"
		"vm:run_for(0.5)\n"
		"error('halfway')\n";
	char *path, line[64];
	json_object *r = NULL, *v, *a;
	size_t placed = 0;

	if (!testlib_require_kvm())
		return;
	path = campaign_check_script(lua);
	EXPECT_EQ_U64(2, run_campaign(path, NULL, &r));
	snprintf(line, sizeof(line), "%s:9: halfway", path);
	EXPECT_TRUE(r && json_object_object_get_ex(r, "error", &v) &&
		       !strcmp(json_object_get_string(v), line));
	EXPECT_TRUE(r && json_object_object_get_ex(r, "probes", &a));
	for (size_t i = 0; r && i < json_object_array_length(a); i++)
		placed += json_object_object_get_ex(json_object_array_get_idx(a, i), "refused", &v) &&
			  v == NULL;
	EXPECT_TRUE_MSG(placed >= 3, "%zu probes placed before the error", placed);
	EXPECT_TRUE(r && json_object_object_get_ex(r, "patches", &a) &&
		       json_object_array_length(a) == 1 &&
		       json_object_object_get_ex(json_object_array_get_idx(a, 0), "undone", &v) &&
		       json_object_get_boolean(v));
	json_object_put(r);
	unlink(path);
	free(path);
}

/* SIGINT while run_for waits: exit 4, report written, text restored. */
static void test_campaign_sigint(void)
{
	static const char lua[] =
		"vm:probe('lib_add', function() end)\n"
		"vm:probe('lib_switch')\n"
		"local jmp = vmpoke.jmp('lib_checksum', 'lib_add')\n"
		"local len = #vm:disasm('lib_checksum', 1)[1].bytes\n"
		"assert(vm:patch({ { at = 'lib_checksum', new = jmp .. string.rep('\\xcc', len - 5) } }).ok)\n"
		"vmpoke.log('ready')\n"
		"vm:run_for(600)\n";
	char cmd[4096], *path, *out = NULL;
	json_object *r, *v;
	int rc;

	if (!testlib_require_kvm())
		return;
	path = campaign_check_script(lua);
	unlink(K_REPORT);
	unlink(K_EVENTS);
	/* wait (bounded) for "ready" in the events file, then interrupt */
	snprintf(cmd, sizeof(cmd),
		 "%s campaign %s %s --quiet --json %s --events %s & pid=$!; "
		 "for i in $(seq 600); do grep -q ready %s 2>/dev/null && break; sleep 0.1; done; "
		 "kill -INT $pid; wait $pid",
		 testlib_vmpoke(), path, testlib_image(), K_REPORT, K_EVENTS, K_EVENTS);
	rc = testlib_run(cmd, &out);
	EXPECT_TRUE_MSG(rc == 4, "exit %d, want 4; output:\n%s", rc, out);
	r = json_object_from_file(K_REPORT);
	EXPECT_TRUE_MSG(r != NULL, "no report after SIGINT");
	EXPECT_TRUE(r && json_object_object_get_ex(r, "restored", &v) &&
		       json_object_get_boolean(v));
	EXPECT_TRUE(r && json_object_object_get_ex(r, "exit_code", &v) &&
		       json_object_get_int(v) == 4);
	json_object_put(r);
	free(out);
	unlink(path);
	free(path);
}

/* A run_for over 3 s shows a status line on a terminal, and none otherwise. */
static void test_campaign_status_line(void)
{
	static const char lua[] = "vm:run_for(3.5)\n";
	char cmd[4096], *path, *out = NULL;
	int rc;

	if (!testlib_require_kvm())
		return;
	path = campaign_check_script(lua);
	snprintf(cmd, sizeof(cmd), "script -qec '%s campaign %s %s --quiet' /dev/null",
		 testlib_vmpoke(), path, testlib_image());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(0, rc);
	EXPECT_TRUE_MSG(out && strstr(out, "\r\033[Kcampaign: run_for"),
			"no status line on a terminal:\n%s", out);
	free(out);
	snprintf(cmd, sizeof(cmd), "%s campaign %s %s --quiet", testlib_vmpoke(), path,
		 testlib_image());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(0, rc);
	EXPECT_TRUE_MSG(out && !strstr(out, "\033[K"), "a status line without a terminal:\n%s",
			out);
	free(out);
	unlink(path);
	free(path);
}

TEST_SUITE(campaign_kvm, "campaign_kvm", true,
	   TEST(test_campaign_probe_count), TEST(test_campaign_probe_kinds),
	   TEST(test_campaign_patch_redirect),
	   TEST(test_campaign_recursion),
	   TEST(test_campaign_demo),
	   TEST(test_campaign_static_keys),
	   TEST(test_campaign_static_key_api),
	   TEST(test_campaign_static_call), TEST(test_campaign_livepatch),
	   TEST(test_campaign_static_call_api),
	   TEST(test_campaign_report_kinds),
	   TEST(test_campaign_skip),
	   TEST(test_campaign_every_symbol),
	   TEST(test_campaign_guest_fault),
	   TEST(test_campaign_handler_removes_itself),
	   TEST(test_campaign_error_halfway),
	   TEST(test_campaign_sigint),
	   TEST(test_campaign_status_line))
