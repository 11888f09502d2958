// SPDX-License-Identifier: MIT
/*
 * campaign_lua.c - the campaign Lua API (the contract in README.md):
 * the `vm` object, the `vmpoke` table, `expect`, and probe objects.
 *
 * Every function checks every argument and raises an error that names
 * the function and the argument: scripts are user input.  The first use of
 * `vm` boots the guest with the global `campaign` table as it stands then.
 *
 * Calls from inside a probe handler: vm:patch(), vm:unpatch(), vm:probe()
 * and vm:run_for() raise an error there (each waits for every vCPU, and the
 * handler runs on one of them); p:remove() is deferred: the probe stops
 * calling its handler at once and is removed when the handler has returned
 * and the script's vm:run_for() next takes the interpreter back (within
 * one 50 ms slice).
 */
#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_internal.h"
#include "symtab.h"
#include "vmm.h"

#define VM_MT		"vmpoke.vm"
#define PROBE_MT	"vmpoke.probe"
#define MAX_READ	(1u << 20)
#define MAX_DISASM	4096
#define MAX_SITES	4096
#define MAX_RUN_FOR_S	(7.0 * 24 * 3600)

struct lua_probe {
	struct campaign_probe *cp;
};

/*
 * luaL_error() with printf formats (lua_pushfstring() knows no %zu or
 * PRIu64): "SCRIPT:LINE: message", the line of the calling Lua code.
 */
static int fail(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(lua_State *L, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	luaL_where(L, 1);
	lua_pushstring(L, buf);
	lua_concat(L, 2);
	return lua_error(L);
}

static struct campaign *lua_campaign(lua_State *L)
{
	return *(struct campaign **)lua_getextraspace(L);
}

/* --- the instruction-count hook ------------------------------------------ */

void campaign_lua_hook(lua_State *L, lua_Debug *ar)
{
	struct campaign *c = lua_campaign(L);

	(void)ar;
	if (c->in_handler) {
		c->handler_insns += CAMPAIGN_HOOK_EVERY;
		if (c->handler_insns > c->insn_limit)
			fail(L, "probe handler ran past %" PRIu64 " Lua instructions "
				   "(a loop?); it is disabled", c->insn_limit);
		return;
	}
	if (campaign_stopping())
		fail(L, "%s", campaign_signalled() ? "interrupted by a signal"
							 : "campaign timed out");
}

/* --- argument helpers ----------------------------------------------------- */

static struct campaign *vm_self(lua_State *L)
{
	luaL_checkudata(L, 1, VM_MT);
	return lua_campaign(L);
}

static void not_in_handler(lua_State *L, struct campaign *c, const char *fn)
{
	if (c->in_handler)
		fail(L, "vm:%s cannot be called from a probe handler: it waits for "
			   "every vCPU, and the handler runs on one of them (call it after "
			   "vm:run_for returns)", fn);
}

void campaign_lua_not_in_handler(lua_State *L, struct campaign *c, const char *fn)
{
	not_in_handler(L, c, fn);
}

/* campaign.<key> as an unsigned integer in [lo, hi], if present. */
static void cfg_uint(lua_State *L, const char *key, uint64_t lo, uint64_t hi, uint64_t *out)
{
	lua_Integer v;
	int isnum;

	if (lua_getfield(L, -1, key) != LUA_TNIL) {
		v = lua_tointegerx(L, -1, &isnum);
		if (!isnum || v < 0 || (uint64_t)v < lo || (uint64_t)v > hi)
			fail(L, "campaign.%s: want an integer in %" PRIu64 "..%" PRIu64
				   ", got %s", key, lo, hi, luaL_tolstring(L, -1, NULL));
		*out = (uint64_t)v;
	}
	lua_pop(L, 1);
}

/* The global `campaign` table as it stands now, then the CLI's overrides. */
static void vm_read_config(lua_State *L, struct campaign *c)
{
	const struct campaign_opts *o = c->o;
	struct campaign_boot_cfg *cfg = &c->cfg;
	uint64_t v;
	int t;

	cfg->image = o->image;
	cfg->vcpus = 2;
	cfg->tasks = 2;
	cfg->hz = 1000;
	cfg->iterations = 0;
	cfg->scenario = VMPOKE_SCN_HOT;
	cfg->quiet = o->quiet;
	t = lua_getglobal(L, "campaign");
	if (t == LUA_TTABLE) {
		v = cfg->vcpus;
		cfg_uint(L, "vcpus", 1, VMPOKE_MAX_VCPUS, &v);
		cfg->vcpus = (unsigned int)v;
		v = cfg->tasks;
		cfg_uint(L, "tasks", 1, VMPOKE_MAX_TASKS, &v);
		cfg->tasks = (unsigned int)v;
		v = cfg->hz;
		cfg_uint(L, "hz", 0, 5000, &v);
		cfg->hz = (unsigned int)v;
		cfg_uint(L, "iterations", 0, INT64_MAX, &cfg->iterations);
		if (lua_getfield(L, -1, "scenario") != LUA_TNIL) {
			const char *s = lua_tostring(L, -1);
			int scn = s && c->o->scenario_parse ? c->o->scenario_parse(s) : -1;

			if (scn < 0)
				fail(L, "campaign.scenario: unknown scenario '%s'",
					   luaL_tolstring(L, -1, NULL));
			cfg->scenario = (enum vmpoke_scenario)scn;
		}
		lua_pop(L, 1);
	} else if (t != LUA_TNIL) {
		fail(L, "campaign: want a table, got %s", luaL_typename(L, -1));
	}
	lua_pop(L, 1);
	if (o->vcpus)
		cfg->vcpus = o->vcpus;
	if (o->tasks)
		cfg->tasks = o->tasks;
	if (o->scenario >= 0)
		cfg->scenario = (enum vmpoke_scenario)o->scenario;
}

/* The first use of `vm` boots the guest. */
static struct campaign *vm_boot(lua_State *L, struct campaign *c)
{
	char msg[512];

	if (c->booted)
		return c;
	if (c->in_handler)
		fail(L, "the guest is not booted");
	vm_read_config(L, c);
	if (campaign_boot(c, msg, sizeof(msg)))
		fail(L, "cannot boot the guest: %s", msg);
	return c;
}

static struct campaign *vm_ready(lua_State *L)
{
	return vm_boot(L, vm_self(L));
}

struct campaign *campaign_lua_vm(lua_State *L)
{
	return vm_ready(L);
}

struct campaign *campaign_lua_booted(lua_State *L)
{
	return vm_boot(L, lua_campaign(L));
}

/* `where`: an integer address, or "sym" / "sym+off" / "0x..." */
static uint64_t check_where(lua_State *L, struct campaign *c, int idx, const char *fn)
{
	const struct symtab *st;
	char msg[384];
	uint64_t a;

	if (lua_type(L, idx) == LUA_TNUMBER) {
		lua_Integer v;

		if (!lua_isinteger(L, idx) && !lua_numbertointeger(lua_tonumber(L, idx), &v))
			fail(L, "%s: address %s is not an integer", fn,
				   lua_tostring(L, idx));
		return (uint64_t)lua_tointeger(L, idx);
	}
	if (lua_type(L, idx) != LUA_TSTRING)
		fail(L, "%s: bad argument #%d (want an integer address or "
			   "\"sym+off\", got %s)", fn, idx - 1, luaL_typename(L, idx));
	st = c->ops->symtab(c->be);
	if (campaign_parse_where(st, lua_tostring(L, idx), &a, msg, sizeof(msg)))
		fail(L, "%s: %s", fn, msg);
	return a;
}

static lua_Integer check_int(lua_State *L, int idx, const char *fn, const char *what,
			     lua_Integer lo, lua_Integer hi)
{
	lua_Integer v;
	int isnum;

	v = lua_tointegerx(L, idx, &isnum);
	if (!isnum || lua_type(L, idx) != LUA_TNUMBER)
		fail(L, "%s: %s: want an integer, got %s", fn, what,
			   lua_isnoneornil(L, idx) ? "nothing" : luaL_tolstring(L, idx, NULL));
	if (v < lo || v > hi)
		fail(L, "%s: %s %" PRId64 " is out of range (%" PRId64 "..%" PRId64 ")",
			   fn, what, (int64_t)v, (int64_t)lo, (int64_t)hi);
	return v;
}

/* Every key of the table at idx must be one of keys (NULL-terminated). */
static void check_keys(lua_State *L, int idx, const char *fn, const char *what,
		       const char *const *keys)
{
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx)) {
		bool ok = false;

		lua_pop(L, 1);
		if (lua_type(L, -1) == LUA_TSTRING)
			for (const char *const *k = keys; *k; k++)
				ok |= !strcmp(*k, lua_tostring(L, -1));
		if (!ok) {
			lua_pushvalue(L, -1);
			fail(L, "%s: %s: unknown key '%s'", fn, what,
				   luaL_tolstring(L, -1, NULL));
		}
	}
}

/* --- symbols --------------------------------------------------------------- */

static int vm_sym(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	const struct sym *s;

	s = symtab_find(c->ops->symtab(c->be), luaL_checkstring(L, 2));
	if (s)
		lua_pushinteger(L, (lua_Integer)s->addr);
	else
		lua_pushnil(L);
	return 1;
}

static int vm_addr(lua_State *L)
{
	struct campaign *c = vm_ready(L);

	luaL_checkstring(L, 2);
	lua_pushinteger(L, (lua_Integer)check_where(L, c, 2, "vm:addr"));
	return 1;
}

static int vm_symbolize(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	char buf[320];

	campaign_symbolize(c->ops->symtab(c->be),
			   (uint64_t)check_int(L, 2, "vm:symbolize", "address", INT64_MIN,
					       INT64_MAX), buf, sizeof(buf));
	lua_pushstring(L, buf);
	return 1;
}

static int vm_syms(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	const char *glob = luaL_optstring(L, 2, "*");
	const struct symtab *st = c->ops->symtab(c->be);
	size_t n = st ? symtab_count(st) : 0;
	lua_Integer k = 0;

	lua_newtable(L);
	for (size_t i = 0; i < n; i++) {
		const struct sym *s = symtab_at(st, i);

		if (!campaign_sym_listed(s->type) || fnmatch(glob, s->name, 0))
			continue;
		lua_createtable(L, 0, 4);
		lua_pushstring(L, s->name);
		lua_setfield(L, -2, "name");
		lua_pushstring(L, s->type == 'T' || s->type == 't' ? "func" : "object");
		lua_setfield(L, -2, "type");
		lua_pushinteger(L, (lua_Integer)s->addr);
		lua_setfield(L, -2, "addr");
		lua_pushinteger(L, (lua_Integer)s->size);
		lua_setfield(L, -2, "size");
		lua_rawseti(L, -2, ++k);
	}
	return 1;
}

/* --- memory and code -------------------------------------------------------- */

static int vm_read(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	uint64_t a = check_where(L, c, 2, "vm:read");
	size_t n = (size_t)check_int(L, 3, "vm:read", "length", 0, MAX_READ);
	luaL_Buffer b;
	char *p;

	p = luaL_buffinitsize(L, &b, n ? n : 1);
	if (n && c->ops->read(c->be, a, p, n))
		fail(L, "vm:read: %zu bytes at 0x%" PRIx64 " are not mapped", n, a);
	luaL_pushresultsize(&b, n);
	return 1;
}

/* Read up to 16 bytes at a, fewer where the mapping ends; bytes read. */
static size_t read_upto(struct campaign *c, uint64_t a, uint8_t *buf)
{
	for (size_t n = 16; n; n--)
		if (!c->ops->read(c->be, a, buf, n))
			return n;
	return 0;
}

static int vm_disasm(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	uint64_t a = check_where(L, c, 2, "vm:disasm");
	lua_Integer count = check_int(L, 3, "vm:disasm", "count", 1, MAX_DISASM);
	uint8_t code[16];
	char text[160];

	lua_createtable(L, (int)count, 0);
	for (lua_Integer i = 1; i <= count; i++) {
		size_t got = read_upto(c, a, code), len;

		if (!got) {
			if (i == 1)
				fail(L, "vm:disasm: 0x%" PRIx64 " is not mapped", a);
			break;
		}
		len = campaign_disasm_one(code, got, a, text, sizeof(text));
		if (!len) {
			len = 1;
			snprintf(text, sizeof(text), "(bad)");
		}
		lua_createtable(L, 0, 3);
		lua_pushinteger(L, (lua_Integer)a);
		lua_setfield(L, -2, "addr");
		lua_pushlstring(L, (const char *)code, len);
		lua_setfield(L, -2, "bytes");
		lua_pushstring(L, text);
		lua_setfield(L, -2, "text");
		lua_rawseti(L, -2, i);
		a += len;
	}
	return 1;
}

/* --- patches ------------------------------------------------------------------ */

static void site_bytes(lua_State *L, const char *key, int i, uint8_t *out, uint8_t *len,
		       bool required)
{
	size_t n;
	const char *s;

	if (lua_getfield(L, -1, key) == LUA_TNIL && !required) {
		lua_pop(L, 1);
		return;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		fail(L, "vm:patch: site %d: %s: want a byte string, got %s", i, key,
			   luaL_typename(L, -1));
	s = lua_tolstring(L, -1, &n);
	if (n < 1 || n > CAMPAIGN_MAX_SITE)
		fail(L, "vm:patch: site %d: %s is %zu bytes (want 1..%d)", i, key, n,
			   CAMPAIGN_MAX_SITE);
	memcpy(out, s, n);
	*len = (uint8_t)n;
	lua_pop(L, 1);
}

static void patch_result(lua_State *L, struct campaign *c, struct campaign_batch *b)
{
	const struct symtab *st = c->ops->symtab(c->be);
	char where[320];
	lua_Integer k = 0;

	lua_createtable(L, 0, 4);
	lua_pushboolean(L, b->applied);
	lua_setfield(L, -2, "ok");
	lua_pushinteger(L, (lua_Integer)b->syncs);
	lua_setfield(L, -2, "syncs");
	lua_pushnumber(L, b->us);
	lua_setfield(L, -2, "us");
	lua_newtable(L);
	for (size_t i = 0; i < b->n; i++) {
		const char *why = b->sites[i].refused[0] ? b->sites[i].refused : NULL;

		if (!why && !b->applied && b->error[0])
			why = b->error;
		if (!why)
			continue;
		lua_createtable(L, 0, 2);
		lua_pushinteger(L, (lua_Integer)b->sites[i].at);
		lua_setfield(L, -2, "at");
		lua_pushstring(L, why);
		lua_setfield(L, -2, "reason");
		campaign_symbolize(st, b->sites[i].at, where, sizeof(where));
		lua_pushstring(L, where);
		lua_setfield(L, -2, "where");
		lua_rawseti(L, -2, ++k);
	}
	lua_setfield(L, -2, "refused");
	/* result table -> batch, for vm:unpatch (weak keys) */
	lua_getfield(L, LUA_REGISTRYINDEX, "vmpoke.batches");
	lua_pushvalue(L, -2);
	lua_pushlightuserdata(L, b);
	lua_rawset(L, -3);
	lua_pop(L, 1);
}

static void patch_event(struct campaign *c, const char *phase, size_t n, bool ok,
			uint64_t syncs, double us, const char *error)
{
	struct campaign_kv ev[] = {
		KV_S("phase", phase), KV_U("sites", n), KV_B("ok", ok), KV_U("syncs", syncs),
		KV_D("us", us), KV_S("error", error && *error ? error : NULL),
	};

	campaign_event(c, "patch_phase", ev, KVN(ev));
}

/* The batch as the outer X slice; the backend's phases nest inside it. */
static void patch_slice(struct campaign *c, const char *name, uint64_t t0, size_t n, bool ok)
{
	struct campaign_kv kv[] = { KV_U("sites", n), KV_B("ok", ok) };

	campaign_trace_slice(c, name, "patch", t0, campaign_now_ns(), kv, KVN(kv));
}

static int vm_patch(lua_State *L)
{
	static const char *const site_keys[] = { "at", "new", "old", "emulate", NULL };
	static const char *const opt_keys[] = { "keep", NULL };
	struct campaign *c = vm_ready(L);
	struct campaign_patch_out out;
	struct campaign_site *sites;
	struct campaign_batch *b;
	uint64_t t0;
	lua_Integer n;

	not_in_handler(L, c, "patch");
	luaL_checktype(L, 2, LUA_TTABLE);
	n = (lua_Integer)lua_rawlen(L, 2);
	if (n < 1 || n > MAX_SITES)
		fail(L, "vm:patch: want a list of 1..%d sites {at=, new=, old=?, "
			   "emulate=?}, got %d", MAX_SITES, (int)n);
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		check_keys(L, 3, "vm:patch", "options", opt_keys);
	}
	/* parse into GC-owned memory: a bad argument raises and leaks nothing */
	sites = lua_newuserdatauv(L, (size_t)n * sizeof(*sites), 0);
	memset(sites, 0, (size_t)n * sizeof(*sites));
	for (lua_Integer i = 1; i <= n; i++) {
		struct campaign_site *s = &sites[i - 1];
		uint8_t oldlen = 0;

		if (lua_rawgeti(L, 2, i) != LUA_TTABLE)
			fail(L, "vm:patch: site %d: want a table {at=, new=}, got %s",
			     (int)i, luaL_typename(L, -1));
		check_keys(L, -1, "vm:patch", "site", site_keys);
		lua_getfield(L, -1, "at");
		if (lua_isnil(L, -1))
			fail(L, "vm:patch: site %d: missing 'at'", (int)i);
		s->at = check_where(L, c, lua_gettop(L), "vm:patch");
		lua_pop(L, 1);
		site_bytes(L, "new", (int)i, s->new_bytes, &s->len, true);
		site_bytes(L, "old", (int)i, s->old, &oldlen, false);
		if (oldlen && oldlen != s->len)
			fail(L, "vm:patch: site %d: old is %d bytes, new is %d", (int)i,
			     oldlen, s->len);
		s->has_old = oldlen;
		site_bytes(L, "emulate", (int)i, s->emulate, &s->emulate_len, false);
		lua_pop(L, 1);
	}
	b = calloc(1, sizeof(*b));
	if (b)
		b->sites = malloc((size_t)n * sizeof(*b->sites));
	if (!b || !b->sites || campaign_add_batch(c, b)) {
		if (b)
			free(b->sites);
		free(b);
		return fail(L, "vm:patch: out of memory");
	}
	memcpy(b->sites, sites, (size_t)n * sizeof(*sites));
	lua_pop(L, 1);
	b->n = (size_t)n;
	if (!lua_isnoneornil(L, 3)) {
		lua_getfield(L, 3, "keep");
		b->keep = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	memset(&out, 0, sizeof(out));
	t0 = campaign_now_ns();
	if (c->ops->patch(c->be, b->sites, b->n, &out) && !out.error[0])
		snprintf(out.error, sizeof(out.error), "the patch engine failed");
	patch_slice(c, "vm:patch", t0, b->n, out.ok);
	b->applied = out.ok;
	b->syncs = out.syncs;
	b->us = out.us;
	snprintf(b->error, sizeof(b->error), "%s", out.error);
	for (size_t i = 0; i < b->n; i++)
		b->nr_refused += b->sites[i].refused[0] != 0;
	patch_event(c, "apply", b->n, b->applied, b->syncs, b->us, b->error);
	patch_result(L, c, b);
	return 1;
}

static int vm_unpatch(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	struct campaign_patch_out out;
	struct campaign_batch *b;
	uint64_t t0;

	not_in_handler(L, c, "unpatch");
	luaL_checktype(L, 2, LUA_TTABLE);
	lua_getfield(L, LUA_REGISTRYINDEX, "vmpoke.batches");
	lua_pushvalue(L, 2);
	lua_rawget(L, -2);
	b = lua_touserdata(L, -1);
	lua_pop(L, 2);
	if (!b)
		return fail(L, "vm:unpatch: the argument is not a result of vm:patch");
	if (!b->applied)
		return fail(L, "vm:unpatch: that batch was not applied");
	if (b->undone)
		return fail(L, "vm:unpatch: that batch was already undone");
	for (size_t k = 0; k < b->n; k++)
		if (campaign_covered_later(c, b->sites[k].at, b->sites[k].len, b->seq))
			return fail(L, "vm:unpatch: 0x%" PRIx64 ": under a later batch still "
				    "applied (unpatch that first)", b->sites[k].at);
	memset(&out, 0, sizeof(out));
	t0 = campaign_now_ns();
	if (c->ops->unpatch(c->be, b->sites, b->n, &out) && !out.error[0])
		snprintf(out.error, sizeof(out.error), "the patch engine failed");
	patch_slice(c, "vm:unpatch", t0, b->n, out.ok);
	b->undone = out.ok;
	lua_createtable(L, 0, 4);
	lua_pushboolean(L, out.ok);
	lua_setfield(L, -2, "ok");
	lua_pushinteger(L, (lua_Integer)out.syncs);
	lua_setfield(L, -2, "syncs");
	lua_pushnumber(L, out.us);
	lua_setfield(L, -2, "us");
	lua_newtable(L);
	if (!out.ok) {
		lua_createtable(L, 0, 2);
		lua_pushinteger(L, (lua_Integer)b->sites[0].at);
		lua_setfield(L, -2, "at");
		lua_pushstring(L, out.error[0] ? out.error : "refused");
		lua_setfield(L, -2, "reason");
		lua_rawseti(L, -2, 1);
	}
	lua_setfield(L, -2, "refused");
	patch_event(c, "undo", b->n, out.ok, out.syncs, out.us, out.error);
	return 1;
}

/* --- probes ----------------------------------------------------------------------- */

static struct campaign_probe *probe_self(lua_State *L)
{
	return ((struct lua_probe *)luaL_checkudata(L, 1, PROBE_MT))->cp;
}

static void push_counts(lua_State *L, const struct campaign_counts *cnt, unsigned int nr)
{
	lua_createtable(L, (int)nr, 0);
	for (unsigned int i = 0; i < nr && i < VMPOKE_MAX_VCPUS; i++) {
		lua_pushinteger(L, (lua_Integer)cnt->per_vcpu[i]);
		lua_rawseti(L, -2, (lua_Integer)i);	/* per_vcpu[vcpu id] */
	}
}

static int probe_remove_l(lua_State *L)
{
	struct campaign_probe *cp = probe_self(L);
	struct campaign *c = cp->c;
	char msg[256];

	if (c->in_handler) {		/* deferred: see the header comment */
		atomic_store(&cp->remove_req, true);
		atomic_store(&c->service, true);
		lua_pushboolean(L, !cp->removed);
		return 1;
	}
	if (cp->removed || !cp->h) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (campaign_probe_remove(c, cp, msg, sizeof(msg)))
		return fail(L, "p:remove: %s: %s", cp->where, msg);
	lua_pushboolean(L, 1);
	return 1;
}

static int probe_index(lua_State *L)
{
	struct campaign_probe *cp = probe_self(L);
	const char *k = luaL_checkstring(L, 2);
	struct campaign_counts cnt;

	if (!strcmp(k, "hits") || !strcmp(k, "missed") || !strcmp(k, "per_vcpu")) {
		if (cp->c->in_handler)	/* counters are atomics in the engine */
			cp->c->ops->probe_counts(cp->c->be, cp->h, &cnt);
		else
			campaign_probe_refresh(cp->c, cp, &cnt);
		if (!strcmp(k, "per_vcpu"))
			push_counts(L, &cnt, cp->c->cfg.vcpus);
		else
			lua_pushinteger(L, (lua_Integer)(k[0] == 'h' ? cnt.hits : cnt.missed));
	} else if (!strcmp(k, "kind")) {
		lua_pushstring(L, cp->kind);
	} else if (!strcmp(k, "at")) {
		lua_pushinteger(L, (lua_Integer)cp->addr);
	} else if (!strcmp(k, "where")) {
		lua_pushstring(L, cp->where);
	} else if (!strcmp(k, "removed")) {
		if (!cp->c->in_handler) {
			campaign_probe_refresh(cp->c, cp, &cnt);
			lua_pushboolean(L, cp->removed);
		} else {
			lua_pushboolean(L, cp->removed || atomic_load(&cp->remove_req));
		}
	} else if (!strcmp(k, "remove")) {
		lua_pushcfunction(L, probe_remove_l);
	} else {
		lua_pushnil(L);
	}
	return 1;
}

static int probe_tostring(lua_State *L)
{
	struct campaign_probe *cp = probe_self(L);

	lua_pushfstring(L, "probe %s (%s)", cp->where, cp->kind);
	return 1;
}

/* A refusal: "<where as given>: <reason>", with no position prefix. */
static int probe_refuse(lua_State *L, struct campaign *c, const char *where,
			const char *reason, uint64_t addr)
{
	struct campaign_probe *cp = calloc(1, sizeof(*cp));

	if (cp) {
		cp->c = c;
		cp->handler_ref = LUA_NOREF;
		cp->addr = addr;
		cp->kind = "int3";
		snprintf(cp->where, sizeof(cp->where), "%s", where);
		snprintf(cp->refused, sizeof(cp->refused), "%s", reason);
		if (campaign_add_probe(c, cp))
			free(cp);
	}
	{
		struct campaign_kv ev[] = {
			KV_S("action", "refused"), KV_S("where", where), KV_S("reason", reason),
		};

		campaign_event(c, "probe", ev, KVN(ev));
	}
	lua_pushfstring(L, "%s: %s", where, reason);
	return lua_error(L);
}

static int vm_probe(lua_State *L)
{
	static const char *const opt_keys[] = { "max_hits", "kind", NULL };
	static const char *const kinds[] = { "auto", "optimized", "int3", NULL };
	struct campaign *c = vm_ready(L);
	const char *want = "auto";
	const struct symtab *st;
	struct campaign_probe *cp;
	struct lua_probe *lp;
	char where[128], msg[CAMPAIGN_REASON_LEN], reason[CAMPAIGN_REASON_LEN];
	uint64_t max_hits = 0, addr = 0;
	const char *kind = "int3";

	not_in_handler(L, c, "probe");
	if (lua_type(L, 2) != LUA_TNUMBER && lua_type(L, 2) != LUA_TSTRING)
		return fail(L, "vm:probe: bad argument #1 (want an integer address or "
				  "\"sym+off\", got %s)", luaL_typename(L, 2));
	snprintf(where, sizeof(where), "%s", luaL_tolstring(L, 2, NULL));
	lua_pop(L, 1);
	if (!lua_isnoneornil(L, 3) && !lua_isfunction(L, 3))
		return fail(L, "vm:probe: bad argument #2 (want a handler function or "
				  "nil, got %s)", luaL_typename(L, 3));
	if (!lua_isnoneornil(L, 4)) {
		luaL_checktype(L, 4, LUA_TTABLE);
		check_keys(L, 4, "vm:probe", "options", opt_keys);
		if (lua_getfield(L, 4, "max_hits") != LUA_TNIL)
			max_hits = (uint64_t)check_int(L, -1, "vm:probe", "opts.max_hits", 1,
						       INT64_MAX);
		lua_pop(L, 1);
		if (lua_getfield(L, 4, "kind") != LUA_TNIL) {
			const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";

			want = NULL;
			for (size_t i = 0; kinds[i]; i++)
				if (!strcmp(k, kinds[i]))
					want = kinds[i];
			if (!want)
				return fail(L, "vm:probe: opts.kind: want \"auto\", "
					    "\"optimized\" or \"int3\", got %s",
					    luaL_tolstring(L, -1, NULL));
		}
		lua_pop(L, 1);
	}
	if (lua_type(L, 2) == LUA_TNUMBER) {
		addr = check_where(L, c, 2, "vm:probe");
	} else {
		st = c->ops->symtab(c->be);
		if (campaign_parse_where(st, lua_tostring(L, 2), &addr, msg, sizeof(msg)))
			return probe_refuse(L, c, where, msg, 0);
	}
	cp = calloc(1, sizeof(*cp));
	if (!cp || campaign_add_probe(c, cp)) {
		free(cp);
		return fail(L, "vm:probe: out of memory");
	}
	cp->c = c;
	cp->addr = addr;
	cp->max_hits = max_hits;
	cp->kind = "int3";
	cp->want_kind = want;
	snprintf(cp->where, sizeof(cp->where), "%s", where);
	cp->have_orig = !c->ops->read(c->be, addr, &cp->orig, 1);
	cp->handler_ref = LUA_NOREF;
	if (lua_isfunction(L, 3)) {
		/* handlers run on c->hL; the registry is shared by every thread */
		lua_pushvalue(L, 3);
		cp->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
		cp->has_handler = true;
	}
	reason[0] = msg[0] = 0;
	cp->h = c->ops->probe_add(c->be, addr, max_hits, cp, &kind, reason, sizeof(reason));
	if (!cp->h) {
		/* drop the entry probe_refuse() re-adds */
		c->nr_probes--;
		luaL_unref(L, LUA_REGISTRYINDEX, cp->handler_ref);
		free(cp);
		return probe_refuse(L, c, where, reason[0] ? reason : "refused", addr);
	}
	cp->kind = kind;
	{
		struct campaign_kv ev[] = {
			KV_S("action", "placed"), KV_S("where", where), KV_U("addr", addr),
			KV_S("kind", kind),
		};

		campaign_event(c, "probe", ev, KVN(ev));
	}
	lp = lua_newuserdatauv(L, sizeof(*lp), 0);
	lp->cp = cp;
	luaL_setmetatable(L, PROBE_MT);
	return 1;
}

/* --- running ------------------------------------------------------------------------ */

static int vm_run_for(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	char msg[600];
	lua_Number s;
	int isnum;

	not_in_handler(L, c, "run_for");
	s = lua_tonumberx(L, 2, &isnum);
	if (!isnum || lua_type(L, 2) != LUA_TNUMBER || !(s >= 0) || s > MAX_RUN_FOR_S)
		return fail(L, "vm:run_for: want seconds in 0..%.0f, got %s",
				  MAX_RUN_FOR_S, luaL_tolstring(L, 2, NULL));
	if (campaign_run_for(c, s, msg, sizeof(msg))) {
		/* a handler's own error already carries its script:line */
		lua_pushstring(L, msg);
		return lua_error(L);
	}
	return 0;
}

static void push_stats(lua_State *L, const struct campaign_guest_stats *st)
{
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, (lua_Integer)st->iterations);
	lua_setfield(L, -2, "iterations");
	lua_pushinteger(L, (lua_Integer)st->check_failures);
	lua_setfield(L, -2, "check_failures");
	lua_pushinteger(L, (lua_Integer)st->guest_faults);
	lua_setfield(L, -2, "guest_faults");
	lua_createtable(L, (int)st->nr_tasks, 0);
	for (unsigned int i = 0; i < st->nr_tasks; i++) {
		lua_createtable(L, 0, 4);
		lua_pushinteger(L, st->tasks[i].vcpu);
		lua_setfield(L, -2, "vcpu");
		lua_pushinteger(L, st->tasks[i].task);
		lua_setfield(L, -2, "task");
		lua_pushinteger(L, (lua_Integer)st->tasks[i].iterations);
		lua_setfield(L, -2, "iterations");
		lua_pushinteger(L, (lua_Integer)st->tasks[i].check_failures);
		lua_setfield(L, -2, "check_failures");
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "tasks");
}

static int vm_stats(lua_State *L)
{
	struct campaign *c = vm_ready(L);
	struct campaign_guest_stats *st = malloc(sizeof(*st));

	if (!st)
		return fail(L, "vm:stats: out of memory");
	if (c->ops->stats(c->be, st)) {
		free(st);
		return fail(L, "vm:stats: cannot read the guest's task table");
	}
	if (!c->in_handler) {
		c->stats = *st;
		c->have_stats = true;
	}
	push_stats(L, st);
	free(st);
	return 1;
}

/* --- vmpoke.*, expect ---------------------------------------------------------------- */

static uint64_t enc_where(lua_State *L, int idx, const char *fn)
{
	struct campaign *c = lua_campaign(L);
	char msg[384];
	uint64_t a;

	if (lua_type(L, idx) == LUA_TNUMBER)
		return (uint64_t)check_int(L, idx, fn, "address", INT64_MIN, INT64_MAX);
	if (lua_type(L, idx) != LUA_TSTRING)
		fail(L, "%s: bad argument #%d (want an integer address or \"sym+off\", "
			   "got %s)", fn, idx, luaL_typename(L, idx));
	vm_boot(L, c);		/* a symbol needs the image: a use of vm */
	if (campaign_parse_where(c->ops->symtab(c->be), lua_tostring(L, idx), &a, msg,
				 sizeof(msg)))
		fail(L, "%s: %s", fn, msg);
	return a;
}

static int enc_rel32(lua_State *L, uint8_t op, const char *fn)
{
	uint64_t from, to;
	uint8_t out[5];
	char msg[160];

	from = enc_where(L, 1, fn);
	to = enc_where(L, 2, fn);
	if (campaign_encode_rel32(op, from, to, out, msg, sizeof(msg)))
		return fail(L, "%s: %s", fn, msg);
	lua_pushlstring(L, (const char *)out, sizeof(out));
	return 1;
}

static int vmpoke_jmp(lua_State *L)
{
	return enc_rel32(L, 0xe9, "vmpoke.jmp");
}

static int vmpoke_call(lua_State *L)
{
	return enc_rel32(L, 0xe8, "vmpoke.call");
}

static int vmpoke_nop(lua_State *L)
{
	lua_Integer n = check_int(L, 1, "vmpoke.nop", "length", 1, CAMPAIGN_MAX_SITE);
	uint8_t out[CAMPAIGN_MAX_SITE];
	char msg[96];

	if (campaign_encode_nop((unsigned int)n, out, msg, sizeof(msg)))
		return fail(L, "vmpoke.nop: %s", msg);
	lua_pushlstring(L, (const char *)out, (size_t)n);
	return 1;
}

static int vmpoke_log(lua_State *L)
{
	struct campaign *c = lua_campaign(L);
	const char *s;

	luaL_checkstring(L, 1);
	lua_pushvalue(L, lua_upvalueindex(1));	/* string.format */
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	s = lua_tostring(L, -1);
	fprintf(stdout, "%s\n", s);
	fflush(stdout);
	{
		struct campaign_kv ev[] = { KV_S("message", s) };

		campaign_event(c, "log", ev, KVN(ev));
	}
	return 0;
}

static int caller_line(lua_State *L)
{
	lua_Debug ar;

	if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar))
		return ar.currentline;
	return 0;
}

static int lua_expect(lua_State *L)
{
	struct campaign *c = lua_campaign(L);
	int line = caller_line(L);
	bool ok = lua_toboolean(L, 1);
	char dflt[48];
	const char *msg;

	if (lua_gettop(L) < 1)
		return fail(L, "expect: want expect(cond, message)");
	if (lua_isnoneornil(L, 2)) {
		snprintf(dflt, sizeof(dflt), "expectation at line %d", line);
		msg = dflt;
	} else if (lua_type(L, 2) == LUA_TSTRING) {
		msg = lua_tostring(L, 2);
	} else {
		return fail(L, "expect: bad argument #2 (want a message string, got %s)",
				  luaL_typename(L, 2));
	}
	if (campaign_add_expect(c, msg, ok, line))
		return fail(L, "expect: out of memory");
	if (!ok)
		fprintf(stderr, "%s:%d: expectation failed: %s\n", c->script_name, line, msg);
	{
		struct campaign_kv ev[] = {
			KV_S("message", msg), KV_B("ok", ok), KV_I("line", line),
		};

		campaign_event(c, "expect", ev, KVN(ev));
	}
	lua_pushboolean(L, ok);
	return 1;
}

/* --- probe handlers (on a vCPU thread that holds the interpreter) ------------------- */

static const char *const reg_names[] = {
	"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
};

static __u64 *reg_field(struct kvm_regs *r, size_t i)
{
	__u64 *f[] = {
		&r->rax, &r->rbx, &r->rcx, &r->rdx, &r->rsi, &r->rdi, &r->rbp, &r->rsp,
		&r->r8, &r->r9, &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15,
		&r->rip, &r->rflags,
	};

	return f[i];
}

#define NR_REGS (sizeof(reg_names) / sizeof(reg_names[0]))

static int handler_call(lua_State *L)
{
	struct campaign_hit *h = lua_touserdata(L, 1);
	struct kvm_regs *r = h->regs;
	int isnum;

	lua_pushvalue(L, 2);	/* the handler */
	lua_createtable(L, 0, 4);
	lua_pushinteger(L, h->vcpu);
	lua_setfield(L, -2, "vcpu");
	lua_pushinteger(L, h->task);
	lua_setfield(L, -2, "task");
	lua_pushinteger(L, (lua_Integer)r->rip);
	lua_setfield(L, -2, "rip");
	lua_createtable(L, 0, NR_REGS);
	for (size_t i = 0; i < NR_REGS; i++) {
		lua_pushinteger(L, (lua_Integer)*reg_field(r, i));
		lua_setfield(L, -2, reg_names[i]);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "regs");
	lua_insert(L, 3);	/* regs below the function and ctx */
	lua_call(L, 1, 1);
	for (size_t i = 0; i < NR_REGS; i++) {
		lua_Integer v;

		lua_getfield(L, 3, reg_names[i]);
		v = lua_tointegerx(L, -1, &isnum);
		if (!isnum || lua_type(L, -1) != LUA_TNUMBER)
			return fail(L, "probe handler: ctx.regs.%s = %s is not an integer",
					  reg_names[i], luaL_tolstring(L, -1, NULL));
		*reg_field(r, i) = (__u64)v;
		lua_pop(L, 1);
	}
	if (lua_type(L, -1) == LUA_TSTRING) {
		if (strcmp(lua_tostring(L, -1), "skip"))
			return fail(L, "probe handler returned \"%s\" (want nothing or "
					  "\"skip\")", lua_tostring(L, -1));
		lua_pushinteger(L, CAMPAIGN_SKIP);
	} else {
		lua_pushinteger(L, CAMPAIGN_RESUME);
	}
	return 1;
}

enum campaign_verdict campaign_lua_handler(struct campaign *c, struct campaign_probe *cp,
					   struct campaign_hit *h)
{
	lua_State *L = c->hL;
	struct kvm_regs saved = *h->regs;
	enum campaign_verdict v = CAMPAIGN_RESUME;
	int top = lua_gettop(L);
	bool failed;

	c->in_handler = true;
	c->handler_insns = 0;
	lua_pushcfunction(L, handler_call);
	lua_pushlightuserdata(L, h);
	lua_rawgeti(L, LUA_REGISTRYINDEX, cp->handler_ref);
	failed = lua_pcall(L, 2, 1, 0) != LUA_OK;
	if (!failed) {
		v = (enum campaign_verdict)lua_tointeger(L, -1);
		/* resuming on our own INT3 would hit it again, for ever */
		failed = v == CAMPAIGN_SKIP && h->regs->rip == cp->addr;
		if (failed)
			lua_pushfstring(L, "probe handler at %s returned \"skip\" to the probe's "
					"own address: that would loop; the original instruction "
					"ran instead", cp->where);
	}
	if (failed) {
		const char *e = lua_tostring(L, -1);

		v = CAMPAIGN_RESUME;
		*h->regs = saved;	/* a failed handler changes nothing */
		atomic_store(&cp->handler_off, true);
		if (!atomic_load(&c->handler_failed)) {
			snprintf(c->handler_error, sizeof(c->handler_error), "%s",
				 e ? e : "probe handler raised a non-string error");
			atomic_store(&c->handler_failed, true);
		}
	}
	lua_settop(L, top);
	c->in_handler = false;
	return v;
}

/* --- the state ------------------------------------------------------------------------ */

static const luaL_Reg vm_methods[] = {
	{ "sym", vm_sym },
	{ "addr", vm_addr },
	{ "symbolize", vm_symbolize },
	{ "syms", vm_syms },
	{ "read", vm_read },
	{ "disasm", vm_disasm },
	{ "patch", vm_patch },
	{ "unpatch", vm_unpatch },
	{ "probe", vm_probe },
	{ "run_for", vm_run_for },
	{ "stats", vm_stats },
	{ "static_keys", campaign_lua_static_keys },
	{ "static_key", campaign_lua_static_key },
	{ "static_calls", campaign_lua_static_calls },
	{ "static_call", campaign_lua_static_call },
	{ "livepatch", campaign_lua_livepatch },
	{ NULL, NULL },
};

static const luaL_Reg vmpoke_funcs[] = {
	{ "jmp", vmpoke_jmp },
	{ "call", vmpoke_call },
	{ "nop", vmpoke_nop },
	{ NULL, NULL },
};

/* os.exit() would leave the process without undoing anything. */
static int lua_no_exit(lua_State *L)
{
	return fail(L, "os.exit() is not available in a campaign: it would skip undoing "
		    "the probes and patches (return from the script, or call error())");
}

static int vm_tostring(lua_State *L)
{
	struct campaign *c = vm_self(L);

	lua_pushfstring(L, "vm (%s)", c->booted ? "booted" : "not booted");
	return 1;
}

/* A metatable named name: __index is the value on top (popped), locked. */
static void lua_class(lua_State *L, const char *name, lua_CFunction tostring)
{
	luaL_newmetatable(L, name);
	lua_insert(L, -2);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushstring(L, name);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

lua_State *campaign_lua_new(struct campaign *c)
{
	lua_State *L = luaL_newstate();

	if (!L)
		return NULL;
	*(struct campaign **)lua_getextraspace(L) = c;
	luaL_openlibs(L);
	/* the undo on exit and the instruction-count hook must stay in place */
	lua_getglobal(L, "os");
	lua_pushcfunction(L, lua_no_exit);
	lua_setfield(L, -2, "exit");
	lua_pop(L, 1);
	lua_getglobal(L, "debug");
	lua_pushnil(L);
	lua_setfield(L, -2, "sethook");
	lua_pop(L, 1);

	/* the vm object */
	luaL_newlib(L, vm_methods);
	lua_class(L, VM_MT, vm_tostring);
	lua_newuserdatauv(L, 1, 0);
	luaL_setmetatable(L, VM_MT);
	lua_setglobal(L, "vm");

	/* probe objects */
	lua_pushcfunction(L, probe_index);
	lua_class(L, PROBE_MT, probe_tostring);

	/* vmpoke.* */
	luaL_newlib(L, vmpoke_funcs);
	lua_getglobal(L, "string");
	lua_getfield(L, -1, "format");
	lua_remove(L, -2);
	lua_pushcclosure(L, vmpoke_log, 1);
	lua_setfield(L, -2, "log");
	lua_pushliteral(L, VMPOKE_VERSION);
	lua_setfield(L, -2, "version");
	lua_setglobal(L, "vmpoke");
	lua_register(L, "expect", lua_expect);

	/* vm:patch results -> batches, weak keys */
	lua_newtable(L);
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "k");
	lua_setfield(L, -2, "__mode");
	lua_setmetatable(L, -2);
	lua_setfield(L, LUA_REGISTRYINDEX, "vmpoke.batches");

	lua_sethook(L, campaign_lua_hook, LUA_MASKCOUNT, CAMPAIGN_HOOK_EVERY);
	c->hL = lua_newthread(L);	/* inherits the hook */
	lua_setfield(L, LUA_REGISTRYINDEX, "vmpoke.handler_thread");
	return L;
}
