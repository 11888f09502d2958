// SPDX-License-Identifier: MIT
/*
 * test_campaign_lua.c - the campaign Lua API against the fake backend
 * (no KVM): every function with good and bad arguments, the report, the
 * events and trace files, handlers, deferred removal, hits while the
 * interpreter is busy, the handler instruction bound, exit codes, and the
 * undo on every way out.  The scripts check themselves with expect(); the
 * C side checks that every expectation held and that there were enough.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "campaign_check.h"
#include "campaign_fake.h"
#include "testlib.h"

#define REPORT	campaign_check_tmp("campaign.json")
#define TRACE	campaign_check_tmp("campaign.trace.json")
#define EVENTS	campaign_check_tmp("campaign.ndjson")

/* Run, load the report, check its keys and that >= min expectations held. */
static json_object *run_ok(const char *lua, size_t min, int want_rc, struct fake_be **f)
{
	char why[512];
	json_object *r;
	int rc;

	unlink(REPORT);
	rc = campaign_check_run_fake(lua, REPORT, TRACE, EVENTS, f);
	EXPECT_EQ_U64(want_rc, rc);
	r = json_object_from_file(REPORT);
	EXPECT_TRUE_MSG(r != NULL, "no report written");
	if (!r)
		return NULL;
	EXPECT_TRUE_MSG(!campaign_check_report(r, why, sizeof(why)), "%s", why);
	EXPECT_TRUE_MSG(!campaign_check_expectations(r, min, why, sizeof(why)), "%s", why);
	return r;
}

static bool report_bool(json_object *r, const char *key)
{
	json_object *v;

	return json_object_object_get_ex(r, key, &v) && json_object_get_boolean(v);
}

/* got equals the JSON text want (every key, value and type). */
static void expect_json(json_object *got, const char *want)
{
	char why[1024];

	EXPECT_TRUE_MSG(!campaign_check_json(got, want, why, sizeof(why)), "%s", why);
}

/* A Lua helper every script starts with: bad(pattern, f, args...) */
#define LUA_BAD								\
	"local function bad(pat, f, ...)\n"				\
	"  local ok, e = pcall(f, ...)\n"				\
	"  expect(not ok and type(e) == 'string' and e:find(pat, 1, true) ~= nil,\n" \
	"         'want error \"' .. pat .. '\", got ' .. tostring(e))\n"	\
	"end\n"

/* Run with exit 0; the report says restored, and the fake agrees. */
static void run_restored(const char *lua, size_t min)
{
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, min, 0, &f);

	EXPECT_TRUE(report_bool(r, "restored"));
	json_object_put(r);
	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
}

static void test_symbols_and_memory(void)
{
	static const char lua[] = LUA_BAD
		"expect(vm:sym('lib_add') == 0x1000, 'sym')\n"
		"expect(vm:sym('nosuch') == nil, 'sym nil')\n"
		"bad('string expected', vm.sym, vm)\n"
		"bad('vmpoke.vm expected', vm.sym, 'lib_add')\n"
		"expect(vm:addr('lib_add+0x1a') == 0x101a, 'addr hex')\n"
		"expect(vm:addr('lib_add+4') == 0x1004, 'addr dec')\n"
		"expect(vm:addr('0x1234') == 0x1234, 'addr number')\n"
		"bad(\"unknown symbol 'nosuch' in 'nosuch+0x10'\", vm.addr, vm, 'nosuch+0x10')\n"
		"bad(\"bad offset 'zz' in 'lib_add+zz'\", vm.addr, vm, 'lib_add+zz')\n"
		"bad(\"past the end of 'lib_add'\", vm.addr, vm, 'lib_add+0x100')\n"
		"bad('missing symbol name', vm.addr, vm, '+4')\n"
		"bad('string expected', vm.addr, vm, {})\n"
		"expect(vm:symbolize(0x1004) == 'lib_add+0x4', 'symbolize off')\n"
		"expect(vm:symbolize(0x1000) == 'lib_add', 'symbolize 0')\n"
		"expect(vm:symbolize(0x9000) == '0x9000', 'symbolize none')\n"
		"bad('want an integer', vm.symbolize, vm, 'x')\n"
		"bad('want an integer', vm.symbolize, vm)\n"
		"local s = vm:syms('lib_*')\n"
		"expect(#s == 5 and s[1].name == 'lib_add' and s[1].addr == 0x1000 and s[1].size == 0x20, 'syms')\n"
		"expect(#vm:syms('a_*') == 0, 'syms: labels are neither functions nor objects')\n"
		"expect(#vm:syms() == 5, 'syms default glob')\n"
		"bad('string expected', vm.syms, vm, {})\n"
		"expect(vm:read('lib_add', 5) == '\\x48\\x8d\\x04\\x37\\xc3', 'read')\n"
		"expect(vm:read(0x1000, 0) == '', 'read 0')\n"
		"bad('out of range', vm.read, vm, 'lib_add', -1)\n"
		"bad('out of range', vm.read, vm, 'lib_add', 1 << 21)\n"
		"bad('want an integer', vm.read, vm, 'lib_add', 'x')\n"
		"bad('want an integer', vm.read, vm, 'lib_add', 1.5)\n"
		"bad('not mapped', vm.read, vm, 0x9000, 4)\n"
		"bad('want an integer address', vm.read, vm, true, 1)\n"
		"bad(\"unknown symbol 'nope'\", vm.read, vm, 'nope', 1)\n"
		"local d = vm:disasm('lib_add', 2)\n"
		"expect(#d == 2 and d[1].addr == 0x1000 and d[1].bytes == '\\x48\\x8d\\x04\\x37', 'disasm bytes')\n"
		"expect(d[1].text == 'leaq (%rdi, %rsi), %rax', 'disasm AT&T text: ' .. d[1].text)\n"
		"expect(d[2].addr == 0x1004 and d[2].text:match('^ret'), 'disasm ret: ' .. d[2].text)\n"
		"bad('out of range', vm.disasm, vm, 'lib_add', 0)\n"
		"bad('out of range', vm.disasm, vm, 'lib_add', 5000)\n"
		"bad('not mapped', vm.disasm, vm, 0x9000, 1)\n"
		"bad('want an integer', vm.disasm, vm, 'lib_add')\n"
		"expect(tostring(vm) == 'vm (booted)', 'tostring')\n";
	json_object *r = run_ok(lua, 38, 0, NULL);

	if (r)
		EXPECT_TRUE(report_bool(r, "restored"));
	json_object_put(r);
}

static void test_encoders_and_patch(void)
{
	static const char lua[] = LUA_BAD
		"expect(vmpoke.jmp(0x1000, 0x1006) == '\\xe9\\x01\\x00\\x00\\x00', 'jmp')\n"
		"expect(vmpoke.jmp(0x1010, 0x1000) == '\\xe9\\xeb\\xff\\xff\\xff', 'jmp back')\n"
		"expect(vmpoke.call('lib_add', 'lib_mul') == '\\xe8\\x1b\\x00\\x00\\x00', 'call by symbol')\n"
		"expect(vmpoke.nop(5) == '\\x0f\\x1f\\x44\\x00\\x00', 'nop5')\n"
		"expect(vmpoke.nop(1) == '\\x90' and #vmpoke.nop(16) == 16, 'nop lengths')\n"
		"bad('out of rel32 reach', vmpoke.jmp, 0, 1 << 40)\n"
		"bad(\"unknown symbol 'nosuch'\", vmpoke.jmp, 'nosuch', 1)\n"
		"bad('want an integer address', vmpoke.call, {}, 1)\n"
		"bad('out of range', vmpoke.nop, 0)\n"
		"bad('out of range', vmpoke.nop, 17)\n"
		"bad('want an integer', vmpoke.nop, 'x')\n"
		"bad('table expected', vm.patch, vm)\n"
		"bad('want a list of 1..4096 sites', vm.patch, vm, {})\n"
		"bad('site 1: want a table', vm.patch, vm, {5})\n"
		"bad(\"site 1: missing 'at'\", vm.patch, vm, {{new='\\x90'}})\n"
		"bad('site 1: new: want a byte string', vm.patch, vm, {{at='lib_add'}})\n"
		"bad('site 1: new is 0 bytes', vm.patch, vm, {{at='lib_add', new=''}})\n"
		"bad('site 1: new is 17 bytes', vm.patch, vm, {{at='lib_add', new=string.rep('\\x90', 17)}})\n"
		"bad('site 1: old is 2 bytes, new is 1', vm.patch, vm, {{at='lib_add', new='\\x90', old='\\x90\\x90'}})\n"
		"bad(\"site: unknown key 'bogus'\", vm.patch, vm, {{at='lib_add', new='\\x90', bogus=1}})\n"
		"bad(\"options: unknown key 'kep'\", vm.patch, vm, {{at='lib_add', new='\\x90'}}, {kep=true})\n"
		"bad(\"unknown symbol 'nosuch'\", vm.patch, vm, {{at='nosuch', new='\\x90'}})\n"
		"local r = vm:patch({{at=0x9000, new='\\x90'}})\n"
		"expect(r.ok == false and #r.refused == 1 and r.refused[1].at == 0x9000 and\n"
		"       r.refused[1].reason:find('not mapped'), 'a refusal is a result, not an error')\n"
		"bad('was not applied', vm.unpatch, vm, r)\n"
		"local old = vm:read('lib_sum', 5)\n"
		"local p = vm:patch({{at='lib_sum', new=vmpoke.jmp('lib_sum', 'lib_add'), old=old}})\n"
		"expect(p.ok and p.syncs == 3 and type(p.us) == 'number' and #p.refused == 0, 'patch ok')\n"
		"expect(vm:read('lib_sum', 5) == vmpoke.jmp('lib_sum', 'lib_add'), 'patched bytes')\n"
		"local u = vm:unpatch(p)\n"
		"expect(u.ok and vm:read('lib_sum', 5) == old, 'unpatch restores')\n"
		"bad('already undone', vm.unpatch, vm, p)\n"
		"bad('not a result of vm:patch', vm.unpatch, vm, {})\n"
		"bad('table expected', vm.unpatch, vm)\n"
		"local m = vm:patch({{at='lib_mul', new='\\x90', old='\\x91'}})\n"
		"expect(not m.ok and m.refused[1].reason == 'old bytes differ', 'old mismatch refused')\n"
		"-- left applied: the exit must undo it\n"
		"local left = vm:patch({{at='lib_mul', new=vmpoke.nop(3)}})\n"
		"expect(left.ok, 'left applied')\n";
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, 30, 0, &f), *a, *v;

	if (r) {
		EXPECT_TRUE(report_bool(r, "restored"));
		EXPECT_TRUE(json_object_object_get_ex(r, "patches", &a));
		EXPECT_EQ_U64(4, json_object_array_length(a));
		json_object_object_get_ex(json_object_array_get_idx(a, 0), "refused", &v);
		EXPECT_EQ_U64(1, json_object_array_length(v));
	}
	EXPECT_TRUE(f && fake_be_pristine(f));
	fake_be_free(f);
	json_object_put(r);
}

static void test_keep_survives_exit(void)
{
	static const char lua[] =
		"local r = vm:patch({{at='lib_sum', new=vmpoke.jmp('lib_sum', 'lib_add')}}, {keep=true})\n"
		"expect(r.ok, 'kept batch applied')\n";
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, 1, 0, &f);

	if (r)	/* keep=true sites are not counted against "restored" */
		EXPECT_TRUE(report_bool(r, "restored"));
	EXPECT_TRUE(f && !fake_be_pristine(f));
	fake_be_free(f);
	json_object_put(r);
}

static void test_probes(void)
{
	static const char lua[] = LUA_BAD
		"bad('want an integer address or \"sym+off\"', vm.probe, vm)\n"
		"bad('want a handler function or nil', vm.probe, vm, 'lib_add', 5)\n"
		"bad('table expected', vm.probe, vm, 'lib_add', nil, 5)\n"
		"bad('opts.max_hits 0 is out of range', vm.probe, vm, 'lib_add', nil, {max_hits=0})\n"
		"bad(\"unknown key 'maxhits'\", vm.probe, vm, 'lib_add', nil, {maxhits=1})\n"
		"local ok, e = pcall(vm.probe, vm, 'lib_add+1')\n"
		"expect(not ok and e == 'lib_add+1: not_insn_boundary', 'refusal: where, colon, reason: ' .. tostring(e))\n"
		"ok, e = pcall(vm.probe, vm, 4097)\n"
		"expect(not ok and e:sub(1, 6) == '4097: ', 'refusal of an integer where: ' .. tostring(e))\n"
		"ok, e = pcall(vm.probe, vm, 'nosuch')\n"
		"expect(not ok and e:sub(1, 8) == 'nosuch: ', 'refusal of an unknown symbol: ' .. tostring(e))\n"
		"local seen, vcpus, rdi, sp = 0, {}, 0, nil\n"
		"local p = vm:probe('lib_add', function(ctx)\n"
		"  seen = seen + 1; vcpus[ctx.vcpu] = true\n"
		"  rdi = rdi + ctx.regs.rdi\n"
		"  assert(ctx.rip == 0x1000 and ctx.regs.rip == 0x1000 and ctx.task >= 0)\n"
		"  assert(ctx.regs.rflags and ctx.regs.r15 and ctx.regs.rsp)\n"
		"  ctx.regs.rax = 7\n"
		"  if seen == 2 then ctx.regs.rip = 0x1004; return 'skip' end\n"
		"end)\n"
		"expect(p.kind == 'int3' and p.at == 0x1000 and p.where == 'lib_add', 'probe fields')\n"
		"expect(tostring(p):find('lib_add'), 'probe tostring')\n"
		"expect(p.nosuch == nil, 'unknown probe field is nil')\n"
		"local counted = vm:probe('lib_mul', nil, {max_hits=2})\n"
		"vm:run_for(0.12)\n"
		"expect(seen > 0 and seen == p.hits, 'handler ran once per hit: ' .. seen .. ' ' .. p.hits)\n"
		"expect(vcpus[0] and vcpus[1], 'hits on both vCPUs')\n"
		"expect(p.per_vcpu[0] > 0 and p.per_vcpu[1] > 0, 'per_vcpu')\n"
		"expect(counted.hits == 2 and counted.removed, 'max_hits removed the probe')\n"
		"-- the fake hits every probe once inside each patch: the interpreter is busy\n"
		"local before = p.missed\n"
		"vm:patch({{at='lib_sum', new=vmpoke.nop(5)}})\n"
		"expect(p.missed == before + 1, 'a hit while the script waits in vm:patch is missed')\n"
		"expect(p:remove() == true and p:remove() == false, 'remove, then again')\n"
		"local h = p.hits\n"
		"vm:run_for(0.06)\n"
		"expect(p.hits == h, 'no hits after remove')\n"
		"bad('vmpoke.probe expected', p.remove, {})\n";
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, 19, 0, &f), *a, *v;

	if (r) {
		EXPECT_TRUE(json_object_object_get_ex(r, "probes", &a));
		/* 3 refused + lib_add + lib_mul */
		EXPECT_EQ_U64(5, json_object_array_length(a));
		json_object_object_get_ex(json_object_array_get_idx(a, 0), "refused", &v);
		EXPECT_STREQ(json_object_get_string(v), "not_insn_boundary");
	}
	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
	json_object_put(r);
}

/*
 * Found by fuzz_campaign: the fake took a second probe at a probed address
 * (and a patch over one), saved the first probe's INT3 as "the original"
 * and put it back on undo.  The real engine refuses both ("live_site").
 */
static void test_probe_over_probe_refused(void)
{
	static const char lua[] =
		"local p = vm:probe('lib_add')\n"
		"local ok, e = pcall(vm.probe, vm, 'lib_add')\n"
		"expect(not ok and e == 'lib_add: live_site', 'second probe: ' .. tostring(e))\n"
		"local b = vm:patch({{at='lib_add', new=vmpoke.nop(4)}})\n"
		"expect(b == nil or not b.ok, 'a patch over a live probe is refused')\n"
		"-- found by fuzz_campaign: the fake took two sites over the same bytes\n"
		"b = vm:patch({{at=0x2c61, new=vmpoke.nop(5)}, {at=0x2c63, new=vmpoke.nop(2)}})\n"
		"expect(not b.ok and b.refused[1].reason == 'overlaps a site of the same batch',\n"
		"       'overlapping sites of one batch are refused')\n";
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, 3, 0, &f);

	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
	json_object_put(r);
}

static void test_handler_rules(void)
{
	static const char lua[] = LUA_BAD
		"local p, calls, errs = nil, 0, {}\n"
		"p = vm:probe('lib_add', function(ctx)\n"
		"  calls = calls + 1\n"
		"  for _, f in ipairs({'patch', 'probe', 'run_for', 'unpatch'}) do\n"
		"    local ok, e = pcall(vm[f], vm, {{at='lib_sum', new='\\x90'}})\n"
		"    errs[f] = e\n"
		"  end\n"
		"  p:remove()  -- deferred until the handler returns\n"
		"end)\n"
		"vm:run_for(0.12)\n"
		"for _, f in ipairs({'patch', 'probe', 'run_for', 'unpatch'}) do\n"
		"  expect(errs[f] and errs[f]:find('vm:' .. f .. ' cannot be called from a probe handler', 1, true),\n"
		"         f .. ' from a handler: ' .. tostring(errs[f]))\n"
		"end\n"
		"expect(calls == 1, 'the handler that removed its probe ran once: ' .. calls)\n"
		"expect(p.removed, 'deferred remove done by the time run_for returns')\n"
		"-- a looping handler is cut off, and run_for raises its error\n"
		"local q = vm:probe('lib_mul', function() while true do end end)\n"
		"local ok, e = pcall(vm.run_for, vm, 0.1)\n"
		"expect(not ok and e:find('ran past 200000 Lua instructions', 1, true), 'loop bound: ' .. tostring(e))\n"
		"q:remove()\n"
		"-- a handler returning something else than nothing or 'skip'\n"
		"local w = vm:probe('lib_sum', function() return 'skp' end)\n"
		"ok, e = pcall(vm.run_for, vm, 0.1)\n"
		"expect(not ok and e:find('returned \"skp\"', 1, true), 'bad return: ' .. tostring(e))\n"
		"w:remove()\n"
		"local z = vm:probe('lib_add+4', function(ctx) ctx.regs.rax = 'x' end)\n"
		"ok, e = pcall(vm.run_for, vm, 0.1)\n"
		"expect(not ok and e:find('ctx.regs.rax', 1, true), 'bad register: ' .. tostring(e))\n"
		"z:remove()\n"
		"-- a handler that sends the vCPU back onto its own probe never loops\n"
		"local l = vm:probe('lib_sum', function(ctx) ctx.regs.rip = ctx.rip; return 'skip' end)\n"
		"ok, e = pcall(vm.run_for, vm, 0.1)\n"
		"expect(not ok and e:find('that would loop', 1, true), 'self loop: ' .. tostring(e))\n"
		"local s = vm:syms('lib_*')\n"
		"expect(s[1].type == 'func' and s[5].type == 'object', 'syms type')\n";
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, 10, 0, &f);

	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
	json_object_put(r);
}

static void test_run_stats_expect_log(void)
{
	static const char lua[] = LUA_BAD
		"bad('want seconds', vm.run_for, vm, -1)\n"
		"bad('want seconds', vm.run_for, vm, 'x')\n"
		"bad('want seconds', vm.run_for, vm)\n"
		"vm:run_for(0.06)\n"
		"local s = vm:stats()\n"
		"expect(s.iterations > 0 and s.check_failures == 0 and s.guest_faults == 0, 'stats')\n"
		"expect(#s.tasks == 2 and s.tasks[2].vcpu == 1 and s.tasks[2].task == 8 and\n"
		"       s.tasks[2].iterations > 0 and s.tasks[2].check_failures == 0, 'stats tasks')\n"
		"bad('want a message string', expect, true, 5)\n"
		"bad('want expect(cond, message)', expect)\n"
		"expect(expect(1 == 1, 'returns its verdict') == true, 'expect returns')\n"
		"bad('string expected', vmpoke.log)\n"
		"bad('number expected, got string', vmpoke.log, '%d', 'x')\n"
		"vmpoke.log('hello %s %d', 'world', 42)\n"
		"bad('os.exit() is not available in a campaign', os.exit, 0)\n"
		"expect(debug.sethook == nil, 'the count hook cannot be removed')\n"
		"expect(type(vmpoke.version) == 'string', 'version')\n";
	json_object *r = run_ok(lua, 12, 0, NULL);
	char why[256];

	json_object_put(r);
	EXPECT_TRUE_MSG(!campaign_check_events(EVENTS, why, sizeof(why)), "%s", why);
	EXPECT_TRUE_MSG(!campaign_check_trace(TRACE, why, sizeof(why)), "%s", why);
}

/*
 * vm:livepatch on the fake backend (campaign_fake.h): arguments, the
 * result and object fields, a straggler's frame, the history, reversal and
 * force; a forced patch cannot be put back, so "restored" is false.
 */
static void test_livepatch_api(void)
{
	static const char lua[] = LUA_BAD
		"bad('want 1..16 {old=, new=} pairs, got 0', vm.livepatch, vm, {})\n"
		"bad('table expected', vm.livepatch, vm, 'lib_sum')\n"
		"bad('entry 1 is a string', vm.livepatch, vm, { 'lib_sum' })\n"
		"bad('entry 1 wants old= and new=', vm.livepatch, vm, { { old = 'lib_sum' } })\n"
		"bad('retry_ms wants an integer 1..60000', vm.livepatch, vm,\n"
		"    { { old = 'lib_sum', new = 'lib_add' } }, { retry_ms = 0 })\n"
		"bad(\"vm:livepatch: 'nosuch' -> 'lib_add': no such function\", vm.livepatch, vm,\n"
		"    { { old = 'nosuch', new = 'lib_add' } })\n"
		"local nop = vm:livepatch({ { old = 'lib_add', new = 'lib_mul' } })\n"
		"local r = nop:enable()\n"
		"expect(not r.ok and r.error == 'unexpected op at lib_add' and r.state == 'unpatched',\n"
		"       'no NOP5: refused, not raised')\n"
		"local lp = vm:livepatch({ { old = 'lib_sum', new = 'lib_mul' } }, { retry_ms = 10 })\n"
		"expect(lp.state == 'unpatched' and #lp.pending == 0 and not lp.forced, 'fresh')\n"
		"r = lp:enable()\n"
		"expect(r.ok and r.sites == 1 and r.state == 'patching' and r.pending == 1, 'enable')\n"
		"local p = lp.pending[1]\n"
		"expect(p.task == 1 and p.vcpu == 0 and p.reason == 'sleeping on function' and\n"
		"       p['function'] == 'lib_sum' and p.return_address == 'lib_sum+0x3' and\n"
		"       p.addr == 0x1043 and p.why == 'lib_sum+0x3', 'the straggler and its frame')\n"
		"vm:run_for(0.01)\n"
		"expect(lp.state == 'patched' and #lp.pending == 0 and lp.retries == 2, 'patched')\n"
		"local h = lp.history\n"
		"expect(#h == 2 and h[1].retry == 0 and h[1].pending == 1 and h[1].switched == 0 and\n"
		"       h[2].retry == 1 and h[2].pending == 0 and h[2].switched == 1 and\n"
		"       type(h[2].t) == 'number', 'history')\n"
		"r = lp:disable()\n"
		"expect(r.ok and lp.state == 'unpatching', 'disable')\n"
		"r = lp:enable()\n"
		"expect(r.ok and lp.state == 'patching', 'reversed mid-way')\n"
		"r = lp:force()\n"
		"expect(r.ok and lp.state == 'patched' and lp.forced, 'forced')\n"
		"r = lp:disable()\n"
		"expect(not r.ok and r.error:find('forced', 1, true), 'a forced patch stays')\n"
		"r = lp:force()\n"
		"expect(not r.ok and r.error == 'no transition to force', 'nothing to force')\n"
		"expect(lp.nosuch == nil, 'unknown field is nil')\n"
		"local pr = vm:probe('lib_add', function(ctx) local _ = lp.state end)\n"
		"bad('livepatch() fields cannot be called from a probe handler', vm.run_for, vm, 0.01)\n"
		"pr:remove()\n";
	json_object *r = run_ok(lua, 15, 0, NULL), *lp;
	char why[256];

	EXPECT_FALSE(report_bool(r, "restored"));
	/* the refused one never moved; the forced one stays, and says so */
	expect_json(campaign_check_at(r, "livepatches", 0),
		    "{\"functions\": [{\"old\": \"lib_add\", \"new\": \"lib_mul\"}],"
		    " \"before_restore\": \"unpatched\", \"state\": \"unpatched\","
		    " \"restored\": true, \"forced\": false, \"retries\": 0, \"switched\": 0,"
		    " \"pending\": [], \"history\": [], \"syncs\": 0, \"us\": 0.0}");
	lp = campaign_check_at(r, "livepatches", 1);
	EXPECT_TRUE(report_bool(lp, "forced") && !report_bool(lp, "restored"));
	EXPECT_TRUE(lp && json_object_object_get_ex(lp, "state", &lp) &&
		    !strcmp(json_object_get_string(lp), "patched"));
	EXPECT_NULL(campaign_check_at(r, "livepatches", 2));
	json_object_put(r);
	EXPECT_TRUE_MSG(!campaign_check_events(EVENTS, why, sizeof(why)), "%s", why);
	EXPECT_TRUE(campaign_check_trace_has(TRACE, "X", "lp:force"));
}

/*
 * Static keys and the static call of the fake backend (campaign_fake.h):
 * listing, flips and updates, the engine's refusals (a site not in its
 * state's form, a probe on a site, a target not listed), and every flip
 * and update put back on exit.
 */
static void test_static_kinds_api(void)
{
	static const char lua[] = LUA_BAD
		"local ks = vm:static_keys()\n"
		"expect(#ks == 2 and ks[1].name == 'fake_key' and not ks[1].enabled and\n"
		"       ks[1].sites == 2 and ks[2].enabled, 'keys listed')\n"
		"bad(\"no static key 'nosuch'\", vm.static_key, vm, 'nosuch')\n"
		"local k = vm:static_key('fake_key')\n"
		"expect(vm:read(0x1800, 5) == '\\x0f\\x1f\\x44\\x00\\x00', 'off: NOP5')\n"
		"local r = k:enable()\n"
		"expect(r.ok and r.changed and r.sites == 2 and k.enabled, 'enabled')\n"
		"expect(vm:read(0x1808, 1) == '\\xe9', 'on: JMP')\n"
		"r = k:enable()\n"
		"expect(r.ok and not r.changed, 'already on')\n"
		"bad('bad argument #1', k.disable, vm)\n"
		"local b = vm:patch({ { at = 0x1800, new = vmpoke.nop(5) } })\n"
		"r = k:disable()\n"
		"expect(not r.ok and r.error == 'unexpected op at 0x1800' and k.enabled,\n"
		"       'a site not in its form refuses the flip')\n"
		"vm:unpatch(b)\n"
		"local p = vm:probe(0x1808)\n"
		"r = k:disable()\n"
		"expect(not r.ok and r.error:find('live_site', 1, true), 'probe on a site')\n"
		"p:remove()\n"
		"local cs = vm:static_calls()\n"
		"expect(#cs == 1 and cs[1].name == 'fake_call' and cs[1].current == 'lib_add' and\n"
		"       #cs[1].targets == 2 and cs[1].sites == 1, 'calls listed')\n"
		"local c = vm:static_call('fake_call')\n"
		"r = c:update('lib_sum')\n"
		"expect(not r.ok and r.error:find('is not a target of fake_call', 1, true) and\n"
		"       c.current == 'lib_add', 'not a target')\n"
		"r = c:update('lib_mul')\n"
		"expect(r.ok and r.sites == 1 and r.stop_the_world == 0 and c.current == 'lib_mul',\n"
		"       'updated')\n"
		"r = c:update(nil)\n"
		"expect(r.ok and c.current == nil and vm:read(0x1880, 1) == '\\xc3', 'NULL')\n"
		"bad('want a function name or nil, got number', c.update, c, 5)\n";

	run_restored(lua, 14);
}

/*
 * The report's "static_keys" and "static_calls": each one the script
 * changed, with its first value, the script's last ("before_restore") and
 * the value read back after the exit's undo.  A key the undo cannot put
 * back (a kept batch sits on its site) reads "enabled": true and
 * "restored": false, as the top-level "restored" does.
 */
static void test_report_kinds(void)
{
	static const char lua[] =
		"local k = vm:static_key('fake_key')\n"
		"expect(k:enable().ok, 'fake_key on')\n"
		"local on = vm:static_key('fake_key_on')\n"
		"expect(on:disable().ok and on:enable().ok, 'fake_key_on off and on again')\n"
		"local c = vm:static_call('fake_call')\n"
		"expect(c:update('lib_mul').ok and c:update(nil).ok, 'fake_call to lib_mul, NULL')\n";
	static const char stuck[] =
		"expect(vm:static_key('fake_key'):enable().ok, 'on')\n"
		"expect(vm:patch({ { at = 0x1800, new = vmpoke.nop(5) } }, { keep = true }).ok,\n"
		"       'a kept NOP5 on its first site')\n";
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, 3, 0, &f);

	EXPECT_TRUE(report_bool(r, "restored"));
	EXPECT_TRUE(f && fake_be_pristine(f));
	fake_be_free(f);
	if (r) {
		json_object *a;

		json_object_object_get_ex(r, "static_keys", &a);
		expect_json(a, "[{\"name\": \"fake_key\", \"original\": false,"
			    " \"before_restore\": true, \"enabled\": false, \"restored\": true},"
			    " {\"name\": \"fake_key_on\", \"original\": true,"
			    " \"before_restore\": true, \"enabled\": true, \"restored\": true}]");
		json_object_object_get_ex(r, "static_calls", &a);
		expect_json(a, "[{\"name\": \"fake_call\", \"original\": \"lib_add\","
			    " \"before_restore\": null, \"current\": \"lib_add\","
			    " \"restored\": true}]");
		json_object_object_get_ex(r, "livepatches", &a);
		expect_json(a, "[]");
	}
	json_object_put(r);

	r = run_ok(stuck, 2, 0, NULL);
	EXPECT_FALSE(report_bool(r, "restored"));
	expect_json(campaign_check_at(r, "static_keys", 0),
		    "{\"name\": \"fake_key\", \"original\": false, \"before_restore\": true,"
		    " \"enabled\": true, \"restored\": false}");
	json_object_put(r);
}

/*
 * The report's "livepatches", read after the exit's undo: one left patched
 * is unpatched by then (its counters those of the undo's transition, the
 * script's state in "before_restore"); one whose transition cannot finish
 * stays in it, with its straggler in "pending" as lp.pending names it.
 */
static void test_report_livepatches(void)
{
	static const char lua[] =
		"local lp = vm:livepatch({ { old = 'lib_sum', new = 'lib_mul' } }, { retry_ms = 10 })\n"
		"expect(lp:enable().ok, 'enabled')\n"
		"vm:run_for(0.01)\n"
		"expect(lp.state == 'patched', 'patched')\n";
	static const char stuck[] =
		"local lp = vm:livepatch({ { old = 'lib_sum', new = 'lib_mul' },\n"
		"                          { old = 'lib_nop', new = 'lib_add' } })\n"
		"expect(lp:enable().ok and lp.state == 'patching', 'in transition')\n";
	struct fake_be *f = fake_be_new();
	json_object *r = run_ok(lua, 2, 0, NULL), *lp, *v;
	char why[512];
	int rc;

	EXPECT_TRUE(report_bool(r, "restored"));
	expect_json(campaign_check_at(r, "livepatches", 0),
		    "{\"functions\": [{\"old\": \"lib_sum\", \"new\": \"lib_mul\"}],"
		    " \"before_restore\": \"patched\", \"state\": \"unpatched\","
		    " \"restored\": true, \"forced\": false, \"retries\": 2, \"switched\": 1,"
		    " \"pending\": [], \"history\": ["
		    "{\"retry\": 0, \"t\": 0.0, \"switched\": 0, \"pending\": 1},"
		    " {\"retry\": 1, \"t\": 0.01, \"switched\": 1, \"pending\": 0}],"
		    " \"syncs\": 6, \"us\": 5.0}");
	json_object_put(r);

	fake_be_set_lp_stuck(f, true);
	unlink(REPORT);
	rc = campaign_check_run_on(f, stuck, REPORT, NULL, NULL, 0);
	EXPECT_EQ_U64(0, rc);
	fake_be_free(f);
	r = json_object_from_file(REPORT);
	EXPECT_TRUE_MSG(r && !campaign_check_report(r, why, sizeof(why)), "%s", why);
	EXPECT_FALSE(report_bool(r, "restored"));
	lp = campaign_check_at(r, "livepatches", 0);
	EXPECT_FALSE(report_bool(lp, "restored"));
	EXPECT_TRUE(lp && json_object_object_get_ex(lp, "state", &v) &&
		    !strcmp(json_object_get_string(v), "unpatching"));
	EXPECT_TRUE(lp && json_object_object_get_ex(lp, "before_restore", &v) &&
		    !strcmp(json_object_get_string(v), "patching"));
	expect_json(lp && json_object_object_get_ex(lp, "functions", &v) ? v : NULL,
		    "[{\"old\": \"lib_sum\", \"new\": \"lib_mul\"},"
		    " {\"old\": \"lib_nop\", \"new\": \"lib_add\"}]");
	expect_json(lp && json_object_object_get_ex(lp, "pending", &v) ? v : NULL,
		    "[{\"task\": 1, \"vcpu\": 0, \"reason\": \"sleeping on function\","
		    " \"function\": \"lib_sum\", \"return_address\": \"lib_sum+0x3\","
		    " \"addr\": 4163, \"why\": \"lib_sum+0x3\"}]");
	json_object_put(r);
}

/*
 * Found by fuzz_campaign: unpatching a batch while a later batch over the
 * same bytes is still applied put the first batch's original back under
 * the second; the exit's undo (last first) then restored the second's
 * "original" - the first batch's new bytes - and the text stayed patched.
 */
static void test_unpatch_under_later_batch(void)
{
	static const char lua[] = LUA_BAD
		"local b1 = vm:patch({ { at = 0x2e62, new = vmpoke.nop(5) } })\n"
		"local b2 = vm:patch({ { at = 0x2e64, new = vmpoke.nop(2) } })\n"
		"bad('0x2e62: under a later batch still applied (unpatch that first)',\n"
		"    vm.unpatch, vm, b1)\n"
		"expect(vm:unpatch(b2).ok and vm:unpatch(b1).ok, 'last first is fine')\n"
		"b1 = vm:patch({ { at = 0x2e62, new = vmpoke.nop(5) } })\n"
		"b2 = vm:patch({ { at = 0x2e70, new = vmpoke.nop(2) } })\n"
		"expect(vm:unpatch(b1).ok, 'no overlap: any order')\n";

	run_restored(lua, 3);
}

/*
 * The exit undid livepatches last first: one still enabled was disabled
 * while an older one was in transition, which the engine refuses ("another
 * livepatch is in transition"), and it stayed applied.
 */
static void test_livepatch_undo_in_transition(void)
{
	static const char lua[] =
		"local a = vm:livepatch({ { old = 'lib_nop', new = 'lib_add' } })\n"
		"local b = vm:livepatch({ { old = 'lib_sum', new = 'lib_mul' } })\n"
		"expect(b:enable().ok, 'b enabled')\n"
		"vm:run_for(0.01)\n"
		"expect(b.state == 'patched', 'b patched')\n"
		"local r = a:enable()\n"
		"expect(r.ok and a.state == 'patching', 'a in transition')\n"
		"r = vm:livepatch({ { old = 'lib_sum', new = 'lib_add' } }):enable()\n"
		"expect(not r.ok and r.error == 'another livepatch is in transition', 'one at a time')\n";
	struct fake_be *f = NULL;
	json_object *r = run_ok(lua, 4, 0, &f);

	EXPECT_TRUE(report_bool(r, "restored"));
	json_object_put(r);
	EXPECT_TRUE(f && fake_be_live_patches(f, true) == 0);
	fake_be_free(f);
}

static void test_config_table(void)
{
	static const char lua[] = LUA_BAD
		"campaign = { vcpus = 0 }\n"
		"bad('campaign.vcpus: want an integer in 1..64, got 0', vm.sym, vm, 'x')\n"
		"campaign = { vcpus = 3, tasks = 'x' }\n"
		"bad('campaign.tasks: want an integer in 1..8, got x', vm.sym, vm, 'x')\n"
		"campaign = { scenario = 'nosuch' }\n"
		"bad(\"campaign.scenario: unknown scenario 'nosuch'\", vm.sym, vm, 'x')\n"
		"campaign = 5\n"
		"bad('campaign: want a table, got number', vm.sym, vm, 'x')\n"
		"campaign = { vcpus = 3, tasks = 4, hz = 100, iterations = 10 }\n"
		"expect(vm:sym('lib_add') == 0x1000, 'boots with the fixed table')\n"
		"campaign.vcpus = 1  -- too late: the guest is booted\n";
	json_object *r = run_ok(lua, 5, 0, NULL), *g, *v;

	if (r) {
		EXPECT_TRUE(json_object_object_get_ex(r, "guest", &g));
		EXPECT_TRUE(json_object_object_get_ex(g, "vcpus", &v));
		EXPECT_EQ_U64(3, json_object_get_int(v));
		EXPECT_TRUE(json_object_object_get_ex(g, "tasks", &v));
		EXPECT_EQ_U64(4, json_object_get_int(v));
	}
	json_object_put(r);
}

/* Script errors: exit 2, "SCRIPT:LINE:", and everything undone first. */
static void test_exit_codes(void)
{
	struct fake_be *f = NULL;
	json_object *r, *v;
	int rc;

	rc = campaign_check_run_fake("local x = = 1\n", REPORT, NULL, NULL, NULL);
	EXPECT_EQ_U64(2, rc);
	r = json_object_from_file(REPORT);
	EXPECT_TRUE(r && json_object_object_get_ex(r, "error", &v) &&
		       strstr(json_object_get_string(v), ".lua:1:"));
	json_object_put(r);

	rc = campaign_check_run_fake("vm:probe('lib_add')\n"
				     "vm:patch({{at='lib_sum', new=vmpoke.nop(5)}})\n"
				     "error('halfway')\n", REPORT, NULL, NULL, &f);
	EXPECT_EQ_U64(2, rc);
	r = json_object_from_file(REPORT);
	EXPECT_TRUE(r && json_object_object_get_ex(r, "error", &v) &&
		       strstr(json_object_get_string(v), ".lua:3: halfway"));
	EXPECT_TRUE(r && report_bool(r, "restored"));
	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
	json_object_put(r);

	/* a probe on a patched site: the original is the patch's old bytes */
	rc = campaign_check_run_fake("vm:patch({{at='lib_sum', new=vmpoke.jmp('lib_sum', 'lib_add')}})\n"
				     "vm:probe('lib_sum')\n"
				     "vm:patch({{at='lib_sum+1', new='\\x90'}})\n"
				     "error('halfway')\n", REPORT, NULL, NULL, &f);
	EXPECT_EQ_U64(2, rc);
	r = json_object_from_file(REPORT);
	EXPECT_TRUE(r && report_bool(r, "restored"));
	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
	json_object_put(r);

	rc = campaign_check_run_fake("expect(false, 'no')\nexpect(true, 'yes')\n", REPORT,
				     NULL, NULL, NULL);
	EXPECT_EQ_U64(1, rc);
	rc = campaign_check_run_fake("error({})\n", NULL, NULL, NULL, NULL);
	EXPECT_EQ_U64(2, rc);
	/* nothing booted: nothing to restore, still a report */
	rc = campaign_check_run_fake("local a = 1\n", REPORT, NULL, NULL, NULL);
	EXPECT_EQ_U64(0, rc);
}

static void *signal_later(void *arg)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	(void)arg;
	nanosleep(&ts, NULL);
	campaign_signal(SIGINT);
	return NULL;
}

/* A signal while the script loops: exit 4, undone, report written. */
static void test_signal(void)
{
	struct fake_be *f = NULL;
	json_object *r;
	pthread_t t;
	int rc;

	unlink(REPORT);
	pthread_create(&t, NULL, signal_later, NULL);
	rc = campaign_check_run_fake("vm:probe('lib_add')\n"
				     "vm:patch({{at='lib_sum', new=vmpoke.nop(5)}})\n"
				     "while true do vm:read('lib_add', 1) end\n",
				     REPORT, NULL, NULL, &f);
	pthread_join(t, NULL);
	EXPECT_EQ_U64(4, rc);
	r = json_object_from_file(REPORT);
	EXPECT_TRUE(r && report_bool(r, "restored"));
	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
	json_object_put(r);
}

/* --timeout while the script loops: exit 1, undone, report written. */
static void test_timeout(void)
{
	struct fake_be *f = NULL;
	json_object *r, *v;
	int rc;

	unlink(REPORT);
	rc = campaign_check_run_fake_timeout("vm:probe('lib_add')\n"
					     "vm:patch({{at='lib_sum', new=vmpoke.nop(5)}})\n"
					     "while true do end\n", REPORT, NULL, NULL, 1, &f);
	EXPECT_EQ_U64(1, rc);
	r = json_object_from_file(REPORT);
	EXPECT_TRUE(r && report_bool(r, "restored"));
	EXPECT_TRUE(r && json_object_object_get_ex(r, "exit_code", &v) &&
		       json_object_get_int(v) == 1);
	EXPECT_TRUE(f && fake_be_pristine(f) && fake_be_live_probes(f) == 0);
	fake_be_free(f);
	json_object_put(r);
}

/* bench probe's Lua handler path: the same hand-off, ctx and register copy. */
static void test_bench_handler(void)
{
	struct kvm_regs regs = { .rdi = 41, .rip = 0x1000, .rsp = 0x8000 };
	struct campaign_hit h = { 1, 8, &regs };
	struct campaign_bench *b;
	char msg[256];

	b = campaign_bench_new("return function(ctx) ctx.regs.rax = ctx.regs.rdi + ctx.vcpu end",
			       msg, sizeof(msg));
	EXPECT_NOT_NULL_FATAL(b);
	EXPECT_EQ_U64(CAMPAIGN_RESUME, campaign_bench_hit(b, &h));
	EXPECT_EQ_U64(42, regs.rax);
	EXPECT_FALSE(campaign_bench_failed(b, msg, sizeof(msg)));
	campaign_bench_free(b);

	b = campaign_bench_new("return function(ctx) ctx.regs.rip = 0x2000; return 'skip' end",
			       msg, sizeof(msg));
	EXPECT_NOT_NULL_FATAL(b);
	EXPECT_EQ_U64(CAMPAIGN_SKIP, campaign_bench_hit(b, &h));
	EXPECT_EQ_U64(0x2000, regs.rip);
	campaign_bench_free(b);

	b = campaign_bench_new("return function(ctx) error('x') end", msg, sizeof(msg));
	EXPECT_NOT_NULL_FATAL(b);
	campaign_bench_hit(b, &h);
	EXPECT_TRUE(campaign_bench_failed(b, msg, sizeof(msg)));
	campaign_bench_free(b);

	EXPECT_NULL(campaign_bench_new("return 5", msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "does not return a function");
}

TEST_SUITE(campaign_lua, "campaign_lua", false,
	   TEST(test_symbols_and_memory),
	   TEST(test_encoders_and_patch),
	   TEST(test_keep_survives_exit),
	   TEST(test_probes),
	   TEST(test_probe_over_probe_refused),
	   TEST(test_handler_rules),
	   TEST(test_run_stats_expect_log),
	   TEST(test_livepatch_api),
	   TEST(test_static_kinds_api),
	   TEST(test_report_kinds),
	   TEST(test_report_livepatches),
	   TEST(test_unpatch_under_later_batch),
	   TEST(test_livepatch_undo_in_transition),
	   TEST(test_config_table),
	   TEST(test_exit_codes),
	   TEST(test_signal),
	   TEST(test_timeout),
	   TEST(test_bench_handler))
