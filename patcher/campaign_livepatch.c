// SPDX-License-Identifier: MIT
/*
 * campaign_livepatch.c - livepatch in the campaign Lua API
 * (include/livepatch.h):
 *
 *   vm:livepatch{ {old=, new=}, ... }  -> lp  (optional 2nd table: {retry_ms=})
 *   lp:enable(), lp:disable(), lp:force()
 *                     -> {ok=, sites=, state=, pending=, syncs=, us=, error=?}
 *   lp.state          "unpatched" | "patching" | "patched" | "unpatching"
 *   lp.pending        { {task=, vcpu=, reason=, ["function"]=, return_address=,
 *                        addr=, why=}... }: the tasks not yet switched
 *   lp.forced, lp.retries, lp.switched
 *   lp.history        { {retry=, t=, switched=, pending=}... } of the transition
 *
 * enable() and disable() make the first attempt at once; the rest happen
 * while the script waits in vm:run_for(), one retry per retry_ms (1 s).
 * On exit every livepatch is disabled and its transition waited for; a
 * forced one cannot be, and "restored" is false then.  The --json report's
 * "livepatches" reads each after that, and keeps the state the script left.
 */
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_internal.h"

#define LP_MT		"vmpoke.livepatch"
#define LP_UNDO_SLICES	400	/* of 50 ms: how long exit waits for a transition */

static void *lp_handle(lua_State *L, int idx)
{
	return *(void **)luaL_checkudata(L, idx, LP_MT);
}

static void lp_info(struct campaign *c, void *h, struct klp_info *in)
{
	memset(in, 0, sizeof(*in));
	c->ops->livepatch_info(c->be, h, in);
}

static void lp_int(lua_State *L, const char *key, lua_Integer v)
{
	lua_pushinteger(L, v);
	lua_setfield(L, -2, key);
}

static void lp_str(lua_State *L, const char *key, const char *v)
{
	lua_pushstring(L, v);
	lua_setfield(L, -2, key);
}

static void lp_push_pending(lua_State *L, struct campaign *c, const struct klp_info *in)
{
	char buf[128];

	lua_createtable(L, (int)in->nr_pending, 0);
	for (size_t i = 0; i < in->nr_pending; i++) {
		const struct klp_straggler *s = &in->pending[i];

		lua_createtable(L, 0, 7);
		lp_int(L, "task", s->task);
		lp_int(L, "vcpu", s->vcpu);
		lp_str(L, "reason", s->reason);
		if (s->func[0])
			lp_str(L, "function", s->func);
		if (s->addr) {
			campaign_symbolize(c->ops->symtab(c->be), s->addr, buf, sizeof(buf));
			lp_str(L, "return_address", buf);
			lp_int(L, "addr", (lua_Integer)s->addr);
		}
		lp_str(L, "why", s->detail);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

static void lp_push_history(lua_State *L, const struct klp_info *in)
{
	lua_createtable(L, (int)in->nr_history, 0);
	for (size_t i = 0; i < in->nr_history; i++) {
		lua_createtable(L, 0, 4);
		lp_int(L, "retry", in->history[i].retry);
		lua_pushnumber(L, in->history[i].t_s);
		lua_setfield(L, -2, "t");
		lp_int(L, "switched", in->history[i].switched);
		lp_int(L, "pending", in->history[i].pending);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

static int lp_op(lua_State *L, char op, const char *fn)
{
	struct campaign *c = campaign_lua_booted(L);
	void *h = lp_handle(L, 1);
	struct campaign_patch_out out;
	uint64_t t0 = campaign_now_ns();
	struct klp_info in;
	int ret;

	campaign_lua_not_in_handler(L, c, op == 'e' ? "livepatch():enable" : op == 'd' ?
				    "livepatch():disable" : "livepatch():force");
	memset(&out, 0, sizeof(out));
	ret = c->ops->livepatch_op(c->be, h, op, &out);
	if (ret && !out.error[0])
		snprintf(out.error, sizeof(out.error), "%s: the engine failed", fn);
	if (ret)
		out.ok = false;
	lp_info(c, h, &in);
	lua_getiuservalue(L, 1, 1);
	{
		char o[2] = { op, 0 };
		struct campaign_kv own[] = { KV_S("op", o), KV_S("state", klp_state_name(in.state)),
					     KV_U("pending", in.nr_pending) };

		campaign_kind_done(L, c, "livepatch", fn, t0, own, KVN(own), &out,
				   (size_t)lua_tointeger(L, -1));
	}
	lp_str(L, "state", klp_state_name(in.state));
	lp_int(L, "pending", (lua_Integer)in.nr_pending);
	return 1;
}

static int lp_enable(lua_State *L)
{
	return lp_op(L, 'e', "lp:enable");
}

static int lp_disable(lua_State *L)
{
	return lp_op(L, 'd', "lp:disable");
}

static int lp_force(lua_State *L)
{
	return lp_op(L, 'f', "lp:force");
}

static int lp_index(lua_State *L)
{
	struct campaign *c = campaign_lua_booted(L);
	void *h = lp_handle(L, 1);
	const char *field = luaL_checkstring(L, 2);
	static const struct { const char *name; lua_CFunction fn; } methods[] = {
		{ "enable", lp_enable }, { "disable", lp_disable }, { "force", lp_force },
	};
	struct klp_info in;

	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (!strcmp(field, methods[i].name)) {
			lua_pushcfunction(L, methods[i].fn);
			return 1;
		}
	/* the controller retries transitions while handlers run: no torn reads */
	campaign_lua_not_in_handler(L, c, "livepatch() fields");
	lp_info(c, h, &in);
	if (!strcmp(field, "state"))
		lua_pushstring(L, klp_state_name(in.state));
	else if (!strcmp(field, "pending"))
		lp_push_pending(L, c, &in);
	else if (!strcmp(field, "history"))
		lp_push_history(L, &in);
	else if (!strcmp(field, "forced"))
		lua_pushboolean(L, in.forced);
	else if (!strcmp(field, "retries"))
		lua_pushinteger(L, in.retries);
	else if (!strcmp(field, "switched"))
		lua_pushinteger(L, in.switched);
	else
		lua_pushnil(L);
	return 1;
}

/* {old=, new=} number i of the list at idx; the strings stay on the stack. */
static void lp_pair(lua_State *L, int idx, size_t i, struct klp_func_spec *f)
{
	luaL_checkstack(L, 3, "vm:livepatch");
	if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TTABLE)
		luaL_error(L, "vm:livepatch: entry %d is a %s, want {old=, new=}", (int)i + 1,
			   luaL_typename(L, -1));
	if (lua_getfield(L, -1, "old") != LUA_TSTRING || lua_getfield(L, -2, "new") != LUA_TSTRING)
		luaL_error(L, "vm:livepatch: entry %d wants old= and new= function names",
			   (int)i + 1);
	f->old = lua_tostring(L, -2);
	f->new = lua_tostring(L, -1);
}

int campaign_lua_livepatch(lua_State *L)
{
	struct campaign *c = campaign_lua_vm(L);
	struct klp_func_spec f[KLP_MAX_FUNCS];
	struct campaign_livepatch *nl, *lp;
	lua_Integer retry = 0;
	void *h = NULL;
	char msg[384];
	size_t n;

	luaL_checktype(L, 2, LUA_TTABLE);
	n = lua_rawlen(L, 2);
	if (!n || n > KLP_MAX_FUNCS)
		return luaL_error(L, "vm:livepatch: want 1..%d {old=, new=} pairs, got %d",
				  KLP_MAX_FUNCS, (int)n);
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		if (lua_getfield(L, 3, "retry_ms") != LUA_TNIL) {
			retry = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
			if (retry < 1 || retry > 60000)
				return luaL_error(L, "vm:livepatch: retry_ms wants an integer "
						  "1..60000");
		}
		lua_pop(L, 1);
	}
	for (size_t i = 0; i < n; i++)
		lp_pair(L, 2, i, &f[i]);
	if (!c->ops->livepatch_new)
		return luaL_error(L, "vm:livepatch: this backend has no livepatch");
	campaign_lua_not_in_handler(L, c, "vm:livepatch");
	/* room first: a handle the campaign cannot keep could never be undone */
	nl = realloc(c->livepatches, (c->nr_livepatches + 1) * sizeof(*nl));
	if (!nl)
		return luaL_error(L, "vm:livepatch: out of memory");
	c->livepatches = nl;
	if (c->ops->livepatch_new(c->be, f, n, (unsigned int)retry, &h, msg, sizeof(msg)))
		return luaL_error(L, "vm:livepatch: %s", msg);
	lp = &c->livepatches[c->nr_livepatches++];
	memset(lp, 0, sizeof(*lp));
	lp->h = h;
	/* the names for the report; one that cannot be kept reads as null there */
	for (lp->n = n; n--;) {
		lp->old[n] = strdup(f[n].old);
		lp->new[n] = strdup(f[n].new);
	}
	*(void **)lua_newuserdatauv(L, sizeof(void *), 1) = h;
	lua_pushinteger(L, (lua_Integer)lp->n);
	lua_setiuservalue(L, -2, 1);
	if (luaL_newmetatable(L, LP_MT)) {
		lua_pushcfunction(L, lp_index);
		lua_setfield(L, -2, "__index");
	}
	lua_setmetatable(L, -2);
	return 1;
}

/* Disable one and wait for its transition (retrying at once each slice). */
static bool lp_undo_one(struct campaign *c, void *h)
{
	struct campaign_patch_out out;
	struct klp_info in;

	lp_info(c, h, &in);
	if (in.state == KLP_UNPATCHED)
		return true;
	if (in.forced) {
		fprintf(stderr, "vmpoke campaign: a forced livepatch can never be removed\n");
		return false;
	}
	memset(&out, 0, sizeof(out));
	if (c->ops->livepatch_op(c->be, h, 'd', &out) || !out.ok) {
		fprintf(stderr, "vmpoke campaign: cannot disable a livepatch: %s\n",
			out.error[0] ? out.error : "refused");
		return false;
	}
	for (int i = 0; i < LP_UNDO_SLICES; i++) {
		lp_info(c, h, &in);
		if (in.state == KLP_UNPATCHED)
			return true;
		c->ops->run(c->be, 50);
		c->ops->livepatch_op(c->be, h, 't', &out);
	}
	fprintf(stderr, "vmpoke campaign: a livepatch is still %s with %zu tasks pending "
		"after %u retries", klp_state_name(in.state), in.nr_pending, in.retries);
	if (in.nr_pending)
		fprintf(stderr, " (the first: task %u on vCPU %u, %s: %s)", in.pending[0].task,
			in.pending[0].vcpu, in.pending[0].reason, in.pending[0].detail);
	fputc('\n', stderr);
	return false;
}

static bool lp_moving(struct campaign *c, void *h)
{
	struct klp_info in;

	lp_info(c, h, &in);
	return in.state == KLP_PATCHING || in.state == KLP_UNPATCHING;
}

/*
 * The one in transition first: the engine starts no other transition (a
 * disable included) while one runs, so last-first alone left a patch
 * applied when an older one was still moving.
 */
bool campaign_livepatch_undo(struct campaign *c)
{
	struct campaign_livepatch *lp = c->livepatches;
	size_t n = c->nr_livepatches;
	struct klp_info in;
	bool ok = true;

	/* what the script left, for the report (which is written after this) */
	for (size_t i = 0; i < n; i++) {
		lp_info(c, lp[i].h, &in);
		lp[i].before_restore = in.state;
	}
	for (size_t i = n; i--;)
		if (lp_moving(c, lp[i].h) && !lp_undo_one(c, lp[i].h))
			ok = false;
	for (size_t i = n; i--;)
		if (!lp_undo_one(c, lp[i].h))
			ok = false;
	return ok;
}

void campaign_livepatch_free(struct campaign *c)
{
	for (size_t i = 0; i < c->nr_livepatches; i++)
		for (size_t k = 0; k < c->livepatches[i].n; k++) {
			free(c->livepatches[i].old[k]);
			free(c->livepatches[i].new[k]);
		}
	free(c->livepatches);
}
