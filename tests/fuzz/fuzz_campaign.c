// SPDX-License-Identifier: MIT
/*
 * fuzz_campaign.c - target fuzz_campaign: the campaign Lua API's argument
 * handling, called with fuzzed values, against the no-KVM backend of the
 * unit tests (tests/campaign_fake.c).
 *
 * The input is not Lua text (the Lua parser is not ours): it drives a
 * generator that writes a script of API calls - vm:sym/addr/symbolize/
 * syms/read/disasm/patch/unpatch/probe/run_for/stats, probe fields and
 * p:remove(), vmpoke.jmp/call/nop/log, expect(), the `campaign` table,
 * and the kernel's own patch kinds: vm:static_keys/static_key and
 * k:enable/disable, vm:static_calls/static_call and c:update,
 * vm:livepatch and lp:enable/disable/force and its fields, vm:probe's
 * opts.kind - each with fuzzed arguments: integers at the edges, floats,
 * NaN, byte strings, symbol expressions ("lib_add+0x1a", "nosuch+zz"),
 * nested and malformed tables, handlers that call the API themselves,
 * wrong selves, objects already disabled, forced or never made.
 * Every statement runs under pcall, so one refusal does not end the run.
 * The script runs through campaign_run() exactly as `vmpoke campaign`
 * runs it, with the events and trace written (to /dev/null) and the
 * report to a memfd, read back.
 *
 * After the run: a documented exit code, no probe left live, no livepatch
 * left applied (but a forced one), and the fake guest's memory, keys and
 * static call exactly as they were (every patch, probe, flip and update
 * undone), and the report's "restored" saying so, unless the script asked
 * for a batch to be kept.
 *
 * Saved inputs keep their meaning: a choice among n takes one byte mod n,
 * and the bytes past the last whole multiple of n (252..255 for the 18
 * statements, 240..255 for the 20 in a handler, 250..255 for the 10 kinds
 * of value) only added bias before.  Those bytes now pick the newer API;
 * every other byte means what it did, and a script differs from its old
 * self only from the first statement such a byte picks (and in one more
 * line of locals).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>
#include <sys/mman.h>
#include <unistd.h>

#include "campaign.h"
#include "fuzz.h"
#include "vmm.h"
#include "../campaign_fake.h"
#include "../../patcher/cli/cli.h"

#define T		"fuzz_campaign"
#define GEN_MAX		(48u << 10)
#define GEN_OPS		48
#define GEN_DEPTH	3

struct gen {
	struct fuzz_in in;
	char buf[GEN_MAX + 1024];
	size_t n;
	unsigned int depth;
	bool keep;		/* a "keep" option was written: changes may stay */
};

static void emit(struct gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct gen *g, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (g->n >= GEN_MAX)
		return;		/* the caller stops adding statements */
	va_start(ap, fmt);
	n = vsnprintf(g->buf + g->n, sizeof(g->buf) - g->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		g->n += (size_t)n < sizeof(g->buf) - g->n ? (size_t)n : sizeof(g->buf) - g->n - 1;
}

static unsigned int pick(struct gen *g, unsigned int n)
{
	return (unsigned int)(fuzz_take(&g->in, 1) % n);
}

/*
 * A choice among n that leaves bytes >= 256 - 256 % n (the uneven tail)
 * to the newer API: returns n for them.
 */
static unsigned int pick_old(struct gen *g, unsigned int n)
{
	unsigned int b = (unsigned int)fuzz_take(&g->in, 1);

	return b >= 256 - 256 % n ? n : b % n;
}

static const char *one_of(struct gen *g, const char *const *list, unsigned int n)
{
	return list[pick(g, n)];
}

#define ONE_OF(g, list)	one_of(g, list, sizeof(list) / sizeof(list[0]))

static void gen_value(struct gen *g);

static void gen_int(struct gen *g)
{
	static const char *const edges[] = {
		"math.maxinteger", "math.mininteger", "-1", "0", "1", "16", "17",
		"0x7fffffff", "0x80000000", "0x100000000", "(1 << 21)", "(1 << 40)",
	};

	switch (pick(g, 5)) {
	case 0:
		emit(g, "%u", pick(g, 256));
		break;
	case 1:	/* Lua 5.4 hex integer literals wrap: any 64-bit pattern */
		emit(g, "0x%llx", (unsigned long long)fuzz_take(&g->in, 8));
		break;
	case 2:	/* in and around the fake guest's memory */
		emit(g, "0x%llx", 0xf00ull + fuzz_take(&g->in, 2) % 0x2200);
		break;
	case 3:
		emit(g, "-%llu", (unsigned long long)fuzz_take(&g->in, 2));
		break;
	default:
		emit(g, "%s", ONE_OF(g, edges));
	}
}

static void gen_float(struct gen *g)
{
	static const char *const floats[] = {
		"0.5", "1.0", "-0.0", "1e300", "-1e300", "(0/0)", "math.huge",
		"-math.huge", "4096.0", "0x1p63", "2^53",
	};

	emit(g, "%s", ONE_OF(g, floats));
}

/* Any bytes, each as a decimal escape so the literal is always valid Lua. */
static void gen_string(struct gen *g, unsigned int max)
{
	unsigned int len = pick(g, max + 1);

	emit(g, "\"");
	while (len--)
		emit(g, "\\%03u", (unsigned int)fuzz_take(&g->in, 1));
	emit(g, "\"");
}

static void gen_symexpr(struct gen *g)
{
	static const char *const names[] = {
		"lib_add", "lib_mul", "lib_sum", "lib_calls_add", "a_label", "nosuch",
		"", "lib_", "lib_*", "*", "0x1004", "0x",
	};
	static const char *const tails[] = {
		"", "+4", "+0x1a", "+0x1f", "+0x20", "+0x100", "-4", "+zz", "+0x", "+",
		"+0x10000000000000000", "+18446744073709551615", "+-1", "++1", " +4",
	};

	/* One pick per statement: argument order is unspecified in C. */
	const char *name = ONE_OF(g, names);

	emit(g, "\"%s%s\"", name, ONE_OF(g, tails));
}

static void gen_addr(struct gen *g)
{
	switch (pick(g, 4)) {
	case 0:
	case 1:
		gen_int(g);
		break;
	case 2:
		gen_symexpr(g);
		break;
	default:
		gen_value(g);
	}
}

/* What vm:patch() wants in new/old/emulate, mostly. */
static void gen_bytes(struct gen *g)
{
	switch (pick(g, 6)) {
	case 0:
		emit(g, "vmpoke.nop(");
		gen_int(g);
		emit(g, ")");
		break;
	case 1:
		emit(g, "vmpoke.jmp(");
		gen_addr(g);
		emit(g, ", ");
		gen_addr(g);
		emit(g, ")");
		break;
	case 2:
		emit(g, "vmpoke.call(");
		gen_addr(g);
		emit(g, ", ");
		gen_addr(g);
		emit(g, ")");
		break;
	case 3:
		emit(g, "vm:read(");
		gen_addr(g);
		emit(g, ", ");
		gen_int(g);
		emit(g, ")");
		break;
	case 4:
		gen_value(g);
		break;
	default:
		gen_string(g, 18);
	}
}

static void gen_site(struct gen *g)
{
	static const char *const keys[] = { "at", "new", "old", "emulate" };
	unsigned int fields = pick(g, 16);

	emit(g, "{");
	for (unsigned int i = 0; i < 4; i++) {
		if (!(fields & (1u << i)) && i > 1)
			continue;
		if (!(fields & (1u << i)) && pick(g, 4) == 0)
			continue;	/* a required field missing */
		emit(g, "%s = ", keys[i]);
		if (i == 0)
			gen_addr(g);
		else
			gen_bytes(g);
		emit(g, ", ");
	}
	if (pick(g, 8) == 0) {
		emit(g, "surprise = ");
		gen_value(g);
	}
	emit(g, "}");
}

static void gen_table(struct gen *g)
{
	static const char *const keys[] = {
		"at", "new", "old", "emulate", "keep", "max_hits", "vcpus", "tasks",
		"hz", "iterations", "scenario", "rip", "rsp", "hits",
	};
	unsigned int n = pick(g, 5);

	emit(g, "{");
	while (n--) {
		switch (pick(g, 4)) {
		case 0:
			break;		/* positional */
		case 1:
			emit(g, "[");
			gen_value(g);
			emit(g, "] = ");
			break;
		default: {
			const char *key = ONE_OF(g, keys);

			g->keep |= !strcmp(key, "keep");
			emit(g, "%s = ", key);
		}
		}
		gen_value(g);
		emit(g, ", ");
	}
	emit(g, "}");
}

static void gen_handler(struct gen *g);

/* The newer API's objects and names, as values: wrong selves, wrong arguments. */
static void gen_kind_value(struct gen *g)
{
	static const char *const objs[] = {
		"K[1]", "K[2]", "C[1]", "L[1]", "L[2]", "'fake_key'", "'fake_call'",
		"vm:static_keys()", "vm:static_calls()", "L[1] and L[1].pending",
		"L[1] and L[1].history", "K[1] and K[1].enable",
	};

	emit(g, "%s", ONE_OF(g, objs));
}

static void gen_value(struct gen *g)
{
	static const char *const objs[] = {
		"nil", "true", "false", "vm", "P[1]", "P[2]", "B[1]", "B[2]", "vmpoke",
		"print", "setmetatable({}, {__tostring = function() error('ts') end})",
	};

	if (g->depth >= GEN_DEPTH) {
		gen_int(g);
		return;
	}
	g->depth++;
	switch (pick_old(g, 10)) {
	case 10:
		gen_kind_value(g);
		break;
	case 0:
		emit(g, "%s", ONE_OF(g, objs));
		break;
	case 1:
	case 2:
		gen_int(g);
		break;
	case 3:
		gen_float(g);
		break;
	case 4:
		gen_string(g, 20);
		break;
	case 5:
		gen_symexpr(g);
		break;
	case 6:
		gen_table(g);
		break;
	case 7:
		gen_site(g);
		break;
	case 8:
		gen_bytes(g);
		break;
	default:
		gen_handler(g);
	}
	g->depth--;
}

/* run_for waits in real time against the fake: only short valid waits. */
static void gen_seconds(struct gen *g)
{
	static const char *const secs[] = {
		"0", "0.0002", "-1", "(0/0)", "math.huge", "1e9", "604801", "'0'",
		"nil", "{}", "-0.0", "math.mininteger",
	};

	emit(g, "%s", ONE_OF(g, secs));
}

static void gen_opts(struct gen *g)
{
	switch (pick(g, 4)) {
	case 0:
		break;
	case 1:
		g->keep = true;
		emit(g, ", {keep = ");
		gen_value(g);
		emit(g, ", max_hits = ");
		gen_value(g);
		emit(g, "}");
		break;
	default:
		emit(g, ", ");
		gen_value(g);
	}
}

static void gen_kind_call(struct gen *g);

/* One API call, as a statement (the caller wraps it in pcall). */
static void gen_call(struct gen *g, bool in_handler)
{
	static const char *const fields[] = {
		"hits", "missed", "per_vcpu", "kind", "at", "where", "removed",
		"remove", "nosuch", "1",
	};
	static const char *const regs[] = {
		"rip", "rsp", "rax", "rflags", "r15", "nosuch",
	};
	unsigned int op = pick_old(g, in_handler ? 20 : 18);

	switch (op) {
	case 18:
		if (!in_handler) {
			gen_kind_call(g);
			break;
		}
		emit(g, "ctx.regs.%s = ", ONE_OF(g, regs));
		gen_value(g);
		break;
	case 20: gen_kind_call(g); break;
	case 0: emit(g, "vm:sym("); gen_value(g); emit(g, ")"); break;
	case 1: emit(g, "vm:addr("); gen_addr(g); emit(g, ")"); break;
	case 2: emit(g, "vm:symbolize("); gen_addr(g); emit(g, ")"); break;
	case 3: emit(g, "vm:syms("); if (pick(g, 2)) gen_value(g); emit(g, ")"); break;
	case 4: emit(g, "vm:read("); gen_addr(g); emit(g, ", "); gen_int(g); emit(g, ")"); break;
	case 5: emit(g, "vm:disasm("); gen_addr(g); emit(g, ", "); gen_int(g); emit(g, ")"); break;
	case 6:
		emit(g, "B[#B + 1] = vm:patch({");
		for (unsigned int n = pick(g, 4); n; n--) {
			gen_site(g);
			emit(g, ", ");
		}
		emit(g, "}");
		gen_opts(g);
		emit(g, ")");
		break;
	case 7: emit(g, "B[#B + 1] = vm:patch("); gen_value(g); emit(g, ")"); break;
	case 8: emit(g, "vm:unpatch(B[%u] or ", pick(g, 3) + 1); gen_value(g); emit(g, ")"); break;
	case 9:
		emit(g, "P[#P + 1] = vm:probe(");
		gen_addr(g);
		emit(g, ", ");
		if (pick(g, 4))
			gen_handler(g);
		else
			gen_value(g);
		gen_opts(g);
		emit(g, ")");
		break;
	case 10: emit(g, "P[%u]:remove()", pick(g, 3) + 1); break;
	case 11:
		op = pick(g, 3) + 1;
		emit(g, "local _ = P[%u].%s", op, ONE_OF(g, fields));
		break;
	case 12: emit(g, "vm:run_for("); gen_seconds(g); emit(g, ")"); break;
	case 13: emit(g, "local s = vm:stats() local _ = s.tasks[1].iterations"); break;
	case 14:
		emit(g, "vmpoke.%s(", pick(g, 2) ? "jmp" : "call");
		gen_addr(g);
		emit(g, ", ");
		gen_addr(g);
		emit(g, ")");
		break;
	case 15: emit(g, "vmpoke.nop("); gen_value(g); emit(g, ")"); break;
	case 16:
		emit(g, "vmpoke.log(");
		gen_value(g);
		emit(g, ", ");
		gen_value(g);
		emit(g, ")");
		break;
	case 17:
		/* A method with the wrong self, or none. */
		emit(g, "vm.%s(", pick(g, 2) ? "read" : "probe");
		gen_value(g);
		emit(g, ", ");
		gen_addr(g);
		emit(g, ")");
		break;
	default: emit(g, "return "); gen_value(g); break;
	}
}

static void gen_handler(struct gen *g)
{
	unsigned int n = pick(g, 4);

	emit(g, "function(ctx) ");
	while (n--) {
		emit(g, "pcall(function() ");
		gen_call(g, true);
		emit(g, " end) ");
	}
	switch (pick(g, 4)) {
	case 0: emit(g, "return 'skip' "); break;
	case 1: emit(g, "ctx.regs.rip = ctx.rip + 1 "); break;
	case 2: emit(g, "return "); gen_value(g); break;
	default: break;
	}
	emit(g, " end");
}

/* A static key, static call or function name: real ones mostly. */
static void gen_kind_name(struct gen *g, const char *const *real, unsigned int n)
{
	static const char *const bad[] = {
		"nosuch", "", "fake_key\\0x", "lib_sum", "__SCT__fake_call",
	};

	switch (pick(g, 6)) {
	case 0:
		emit(g, "'%s'", ONE_OF(g, bad));
		break;
	case 1:
		gen_value(g);
		break;
	default:
		emit(g, "'%s'", one_of(g, real, n));
	}
}

static void gen_key_name(struct gen *g)
{
	static const char *const keys[] = { "fake_key", "fake_key_on" };

	gen_kind_name(g, keys, 2);
}

static void gen_func_name(struct gen *g)
{
	static const char *const funcs[] = {
		"lib_sum", "lib_add", "lib_mul", "lib_nop", "lib_calls_add", "a_label", "lib_sum+4",
	};

	gen_kind_name(g, funcs, sizeof(funcs) / sizeof(funcs[0]));
}

/* vm:livepatch's list: {old=, new=} pairs, some broken, sometimes too many. */
static void gen_lp_list(struct gen *g)
{
	unsigned int n = pick(g, 4);

	if (pick(g, 8) == 0) {
		gen_value(g);
		return;
	}
	if (pick(g, 16) == 0)
		n = 17;
	emit(g, "{");
	while (n--) {
		switch (pick(g, 8)) {
		case 0:
			gen_value(g);
			break;
		case 1:
			emit(g, "{old = ");
			gen_func_name(g);
			emit(g, "}");
			break;
		default:
			emit(g, "{old = ");
			gen_func_name(g);
			emit(g, ", new = ");
			gen_func_name(g);
			emit(g, "}");
		}
		emit(g, ", ");
	}
	emit(g, "}");
	switch (pick(g, 4)) {
	case 0:
		emit(g, ", {retry_ms = ");
		gen_int(g);
		emit(g, "}");
		break;
	case 1:
		emit(g, ", ");
		gen_value(g);
		break;
	default:
		break;
	}
}

/* vm:probe's opts with a kind: the three names, or anything. */
static void gen_probe_kind(struct gen *g)
{
	static const char *const kinds[] = { "'auto'", "'optimized'", "'int3'" };

	emit(g, "{kind = ");
	if (pick(g, 4))
		emit(g, "%s", ONE_OF(g, kinds));
	else
		gen_value(g);
	if (pick(g, 2)) {
		emit(g, ", max_hits = ");
		gen_int(g);
	}
	emit(g, "}");
}

/*
 * One call of the newer API: static keys, static calls, livepatch, probe
 * kinds.  K, C and L hold what the script made, so that later statements
 * call methods on objects already flipped, disabled, forced or never made
 * (nil), with wrong selves and from handlers.
 */
static void gen_kind_call(struct gen *g)
{
	static const char *const key_fields[] = {
		"name", "enabled", "sites", "nosuch", "enable", "1",
	};
	static const char *const call_fields[] = {
		"name", "current", "targets", "sites", "update", "nosuch",
	};
	static const char *const lp_fields[] = {
		"state", "pending", "history", "forced", "retries", "switched", "nosuch",
	};
	static const char *const lp_ops[] = { "enable", "disable", "force" };
	unsigned int i;

	switch (pick(g, 14)) {
	case 0:
		emit(g, "for _, k in ipairs(vm:static_keys()) do local _ = k.name .. k.sites end");
		break;
	case 1:
		emit(g, "K[#K + 1] = vm:static_key(");
		gen_key_name(g);
		emit(g, ")");
		break;
	case 2:
		emit(g, "local r = K[%u]:%s() local _ = r.ok", pick(g, 3) + 1,
		     pick(g, 2) ? "enable" : "disable");
		break;
	case 3:
		i = pick(g, 3) + 1;
		if (pick(g, 2))
			emit(g, "local _ = K[%u].%s", i, ONE_OF(g, key_fields));
		else {
			emit(g, "K[%u].%s(", i, pick(g, 2) ? "enable" : "disable");
			gen_value(g);
			emit(g, ")");
		}
		break;
	case 4:
		emit(g, "for _, c in ipairs(vm:static_calls()) do local _ = #c.targets end");
		break;
	case 5:
		emit(g, "C[#C + 1] = vm:static_call(");
		if (pick(g, 4))
			emit(g, "'fake_call'");
		else
			gen_kind_name(g, (const char *const[]){ "fake_call" }, 1);
		emit(g, ")");
		break;
	case 6:
		emit(g, "local r = C[%u]:update(", pick(g, 2) + 1);
		switch (pick(g, 4)) {
		case 0:
			break;		/* nil: NULL */
		case 1:
			gen_addr(g);
			break;
		default:
			gen_func_name(g);
		}
		emit(g, ") local _ = r.stop_the_world");
		break;
	case 7:
		i = pick(g, 2) + 1;
		if (pick(g, 2))
			emit(g, "local _ = C[%u].%s", i, ONE_OF(g, call_fields));
		else {
			emit(g, "C[%u].update(", i);
			gen_value(g);
			emit(g, ", 'lib_mul')");
		}
		break;
	case 8:
		emit(g, "L[#L + 1] = vm:livepatch(");
		gen_lp_list(g);
		emit(g, ")");
		break;
	case 9:
		emit(g, "local r = L[%u]:%s() local _ = r.state .. r.pending", pick(g, 3) + 1,
		     ONE_OF(g, lp_ops));
		break;
	case 10:
		i = pick(g, 3) + 1;
		if (pick(g, 2))
			emit(g, "local _ = L[%u].%s", i, ONE_OF(g, lp_fields));
		else
			emit(g, "for _, p in ipairs(L[%u].%s) do local _ = p.why or p.t end", i,
			     pick(g, 2) ? "pending" : "history");
		break;
	case 11:
		/* wrong selves: the methods of one kind on another, or on anything */
		emit(g, "%s(", ONE_OF(g, ((const char *const[]){
			"L[1].enable", "L[1].force", "vm.livepatch", "vm.static_key",
			"vm.static_call", "vm.static_keys", "C[1].update", "K[1].disable" })));
		gen_value(g);
		emit(g, ", ");
		gen_value(g);
		emit(g, ")");
		break;
	case 12:
		emit(g, "P[#P + 1] = vm:probe(");
		gen_addr(g);
		emit(g, ", ");
		if (pick(g, 2))
			gen_handler(g);
		else
			emit(g, "nil");
		emit(g, ", ");
		gen_probe_kind(g);
		emit(g, ")");
		break;
	default:
		emit(g, "vm:run_for(0.0002)");
	}
}

/* A config field: mostly a valid value, so that most scripts boot. */
static void gen_cfg(struct gen *g, const char *key, unsigned int valid_max)
{
	emit(g, "%s = ", key);
	if (pick(g, 4))
		emit(g, "%u", 1 + pick(g, valid_max));
	else
		gen_value(g);
	emit(g, ", ");
}

static void gen_script(struct gen *g)
{
	emit(g, "local P, B = {}, {}\n");
	emit(g, "local K, C, L = {}, {}, {}\n");
	if (pick(g, 2)) {
		emit(g, "campaign = { ");
		gen_cfg(g, "vcpus", 4);
		gen_cfg(g, "tasks", 3);
		gen_cfg(g, "hz", 1000);
		gen_cfg(g, "iterations", 100);
		emit(g, "scenario = %s }\n", pick(g, 4) ? "'hot'" : "'nosuch'");
	}
	for (unsigned int i = 0; i < GEN_OPS && g->in.left && g->n < GEN_MAX; i++) {
		emit(g, "pcall(function() ");
		gen_call(g, false);
		emit(g, " end)\n");
	}
	/* Sometimes end with an error, so the undo runs on that path too. */
	if (pick(g, 4) == 0)
		emit(g, "error('end of fuzzed script')\n");
}

/*
 * The report goes to a memfd of its own, emptied before each run (so a run
 * that writes none is not judged by the last one's), to be read back.
 */
static char report_path[64];

static void report_reset(void)
{
	static int fd = -1;

	if (fd < 0) {
		fd = memfd_create("vmpoke-fuzz-report", MFD_CLOEXEC);
		snprintf(report_path, sizeof(report_path), "/proc/self/fd/%d", fd);
	}
	if (fd < 0 || ftruncate(fd, 0))
		fuzz_fail(T, "cannot create the report's memfd");
}

/* The report's "restored", or -1 if there is no report to read. */
static int report_restored(void)
{
	json_object *r = json_object_from_file(report_path), *v;
	int ret = -1;

	if (r && json_object_object_get_ex(r, "restored", &v))
		ret = json_object_get_boolean(v);
	json_object_put(r);
	return ret;
}

int fuzz_campaign_one(const uint8_t *data, size_t size)
{
	static struct gen g;
	struct campaign_opts o;
	struct fake_be *f;
	char path[64];
	int rc, restored;

	g.n = 0;
	g.depth = 0;
	g.keep = false;
	g.in = (struct fuzz_in){ data, size };
	gen_script(&g);
	fuzz_file(T, g.buf, g.n, path, sizeof(path));
	/* To read what a crashing input runs: VMPOKE_FUZZ_SHOW=1 TARGET FILE */
	if (getenv("VMPOKE_FUZZ_SHOW"))
		fprintf(stderr, "--- script ---\n%.*s--- end ---\n", (int)g.n, g.buf);

	memset(&o, 0, sizeof(o));
	o.script = path;
	o.image = "fake.img";
	o.scenario = -1;
	o.quiet = true;
	o.handler_insn_limit = 100000;
	o.scenario_parse = cli_scenario_parse;
	o.sink = &campaign_files;
	o.events = o.trace = "/dev/null";
	report_reset();
	o.json = report_path;
	f = fake_be_new();
	if (!f)
		fuzz_fail(T, "out of memory");
	rc = campaign_run(&o, &fake_ops, f);
	FUZZ_CHECK(T, rc >= VMPOKE_EXIT_OK && rc <= VMPOKE_EXIT_SIGNAL,
		   "exit code %d", rc);
	FUZZ_CHECK(T, !fake_be_live_probes(f), "%u probes left in the guest",
		   fake_be_live_probes(f));
	FUZZ_CHECK(T, !fake_be_live_patches(f, false), "%u livepatches left applied",
		   fake_be_live_patches(f, false));
	/* vm:patch(..., {keep = true}) leaves its bytes on purpose. */
	FUZZ_CHECK(T, g.keep || fake_be_pristine(f), "the guest's memory was not restored");
	/* The report says so, and says no where a forced livepatch stays. */
	restored = report_restored();
	FUZZ_CHECK(T, g.keep || restored < 0 || restored == !fake_be_live_patches(f, true),
		   "the report says restored: %s", restored ? "true" : "false");
	fake_be_free(f);
	return 0;
}
