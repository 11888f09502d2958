// SPDX-License-Identifier: MIT
/*
 * campaign_scall.c - static calls in the campaign Lua API:
 *
 *   vm:static_calls()     -> { {name=, current=, targets={...}, sites=}, ... }
 *   vm:static_call(name)  -> c, with c.name, c.current, c.targets, c.sites,
 *   c:update(target|nil)  -> {ok=, sites=, stop_the_world=, syncs=, us=, error=}
 *
 * current and targets are symbol names (current nil for NULL).  An update
 * rewrites the trampoline and every site in one batch; the sites in
 * kernel text go stop-the-world where the host cannot trap a CPL0 INT3,
 * and stop_the_world counts them.  Every call the script updated is put
 * back to its first target on exit.
 */
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_internal.h"
#include "symtab.h"

#define SCALL_MT	"vmpoke.static_call"

static struct campaign_static_call *calls_get(lua_State *L, struct campaign *c,
					      const char *fn, size_t *n)
{
	struct campaign_static_call *sc = NULL;
	char msg[256];

	if (!c->ops->static_calls)
		luaL_error(L, "%s: this backend has no static calls", fn);
	if (c->ops->static_calls(c->be, &sc, n, msg, sizeof(msg)))
		luaL_error(L, "%s: %s", fn, msg);
	return sc;
}

static void push_func(lua_State *L, struct campaign *c, uint64_t addr)
{
	char buf[128];

	if (!addr) {
		lua_pushnil(L);
		return;
	}
	campaign_symbolize(c->ops->symtab(c->be), addr, buf, sizeof(buf));
	lua_pushstring(L, buf);
}

static void call_fields(lua_State *L, struct campaign *c, const struct campaign_static_call *sc)
{
	lua_pushstring(L, sc->name);
	lua_setfield(L, -2, "name");
	push_func(L, c, sc->current);
	lua_setfield(L, -2, "current");
	lua_createtable(L, (int)sc->nr_targets, 0);
	for (size_t i = 0; i < sc->nr_targets; i++) {
		push_func(L, c, sc->targets[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "targets");
	lua_pushinteger(L, (lua_Integer)sc->sites);
	lua_setfield(L, -2, "sites");
}

int campaign_lua_static_calls(lua_State *L)
{
	struct campaign *c = campaign_lua_vm(L);
	struct campaign_static_call *sc;
	size_t n = 0;

	sc = calls_get(L, c, "vm:static_calls", &n);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_createtable(L, 0, 4);
		call_fields(L, c, &sc[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	free(sc);
	return 1;
}

/* The call named name now, or a Lua error. */
static struct campaign_static_call call_now(lua_State *L, struct campaign *c, const char *fn,
					    const char *name)
{
	struct campaign_static_call *sc, one = { 0 };	/* luaL_error() does not return */
	size_t n = 0;

	sc = calls_get(L, c, fn, &n);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(sc[i].name, name)) {
			one = sc[i];
			free(sc);
			return one;
		}
	free(sc);
	luaL_error(L, "%s: no static call '%s' (no trampoline " VMPOKE_SC_TRAMP_PREFIX
		   "%s; vm:static_calls() lists them)", fn, name, name);
	return one;	/* not reached */
}

static int scall_update(lua_State *L)
{
	struct campaign *c = campaign_lua_booted(L);
	struct campaign_static_call before;
	struct campaign_patch_out out;
	uint64_t t0 = campaign_now_ns(), target = 0;
	size_t sites = 0, stw = 0;
	const char *name;
	char msg[384];
	int ret;

	luaL_checkudata(L, 1, SCALL_MT);
	campaign_lua_not_in_handler(L, c, "static_call():update");
	lua_getiuservalue(L, 1, 1);
	name = lua_tostring(L, -1);
	if (!lua_isnoneornil(L, 2)) {
		if (lua_type(L, 2) != LUA_TSTRING)
			return luaL_error(L, "c:update: want a function name or nil, got %s",
					  luaL_typename(L, 2));
		if (campaign_parse_where(c->ops->symtab(c->be), lua_tostring(L, 2), &target,
					 msg, sizeof(msg)))
			return luaL_error(L, "c:update: %s", msg);
	}
	before = call_now(L, c, "c:update", name);
	memset(&out, 0, sizeof(out));
	ret = c->ops->static_call_update(c->be, name, target, &sites, &stw, &out);
	if (ret && !out.error[0])
		snprintf(out.error, sizeof(out.error), "%s: the patch engine failed", name);
	if (ret)
		out.ok = false;
	if (out.ok && campaign_track(c, CAMPAIGN_KIND_CALL, name, before.current, target))
		return luaL_error(L, "c:update: out of memory");
	{
		struct campaign_kv own[] = { KV_S("call", name), KV_U("target", target),
					     KV_U("sites", sites), KV_U("stop_the_world", stw) };

		campaign_kind_done(L, c, "static_call", "static_call:update", t0, own, KVN(own),
				   &out, sites);
	}
	lua_pushinteger(L, (lua_Integer)stw);
	lua_setfield(L, -2, "stop_the_world");
	return 1;
}

/* c.name, and c.current, c.targets, c.sites read from the guest now. */
static int scall_index(lua_State *L)
{
	struct campaign *c = campaign_lua_booted(L);
	const char *field = luaL_checkstring(L, 2);
	struct campaign_static_call sc;
	const char *name;

	if (!strcmp(field, "update")) {
		lua_pushcfunction(L, scall_update);
		return 1;
	}
	lua_getiuservalue(L, 1, 1);
	name = lua_tostring(L, -1);
	if (!strcmp(field, "name"))
		return 1;
	if (strcmp(field, "current") && strcmp(field, "targets") && strcmp(field, "sites")) {
		lua_pushnil(L);
		return 1;
	}
	sc = call_now(L, c, "static_call", name);
	lua_createtable(L, 0, 4);
	call_fields(L, c, &sc);
	lua_getfield(L, -1, field);
	return 1;
}

int campaign_lua_static_call(lua_State *L)
{
	struct campaign *c = campaign_lua_vm(L);
	const char *name = luaL_checkstring(L, 2);

	call_now(L, c, "vm:static_call", name);
	campaign_push_kind_object(L, name, SCALL_MT, scall_index);
	return 1;
}
