// SPDX-License-Identifier: MIT
/*
 * campaign_kinds.c - the kernel's own patch kinds in the campaign Lua API:
 *
 *   vm:static_keys()        -> { {name=, enabled=, sites=}, ... }
 *   vm:static_key(name)     -> k, with k.name, k.enabled, k.sites,
 *   k:enable(), k:disable() -> {ok=, changed=, sites=, syncs=, us=, error=}
 *
 * A flip is static_key_enable()/disable() from outside: every site of the
 * key in one batch, refused whole ("unexpected op at SITE") when a site is
 * not in the form the key's state implies.  Every key the script flipped is
 * put back on exit, after probes and patches (they may sit on its sites).
 */
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_internal.h"

#define KEY_MT	"vmpoke.static_key"

static struct campaign_static_key *keys_get(lua_State *L, struct campaign *c,
					    const char *fn, size_t *n)
{
	struct campaign_static_key *k = NULL;
	char msg[256];

	if (!c->ops->static_keys)
		luaL_error(L, "%s: this backend has no static keys", fn);
	if (c->ops->static_keys(c->be, &k, n, msg, sizeof(msg)))
		luaL_error(L, "%s: %s", fn, msg);
	return k;
}

static void key_fields(lua_State *L, const struct campaign_static_key *k)
{
	lua_pushstring(L, k->name);
	lua_setfield(L, -2, "name");
	lua_pushboolean(L, k->enabled);
	lua_setfield(L, -2, "enabled");
	lua_pushinteger(L, (lua_Integer)k->sites);
	lua_setfield(L, -2, "sites");
}

int campaign_lua_static_keys(lua_State *L)
{
	struct campaign *c = campaign_lua_vm(L);
	struct campaign_static_key *k;
	size_t n = 0;

	k = keys_get(L, c, "vm:static_keys", &n);
	lua_createtable(L, (int)n, 0);
	for (size_t i = 0; i < n; i++) {
		lua_createtable(L, 0, 3);
		key_fields(L, &k[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	free(k);
	return 1;
}

static int key_set(lua_State *L, bool enable)
{
	const char *fn = enable ? "k:enable" : "k:disable";
	struct campaign *c = campaign_lua_booted(L);
	struct campaign_patch_out out;
	uint64_t t0 = campaign_now_ns();
	bool changed = false;
	size_t sites = 0;
	const char *name;
	int ret;

	luaL_checkudata(L, 1, KEY_MT);
	if (!c->ops->static_key_set)
		return luaL_error(L, "%s: this backend has no static keys", fn);
	campaign_lua_not_in_handler(L, c, enable ? "static_key():enable" :
				    "static_key():disable");
	lua_getiuservalue(L, 1, 1);
	name = lua_tostring(L, -1);
	memset(&out, 0, sizeof(out));
	ret = c->ops->static_key_set(c->be, name, enable, &changed, &sites, &out);
	if (ret && !out.error[0])
		snprintf(out.error, sizeof(out.error), "%s: %s", name,
			 ret == -ENOENT ? "no such static key" : "the patch engine failed");
	if (ret)
		out.ok = false;
	if (out.ok && changed && campaign_track(c, CAMPAIGN_KIND_KEY, name, !enable, enable))
		return luaL_error(L, "%s: out of memory", fn);
	{
		struct campaign_kv own[] = { KV_S("key", name), KV_B("enable", enable),
					     KV_B("changed", changed), KV_U("sites", sites) };

		campaign_kind_done(L, c, "static_key", enable ? "static_key:enable" :
				   "static_key:disable", t0, own, KVN(own), &out, sites);
	}
	lua_pushboolean(L, changed);
	lua_setfield(L, -2, "changed");
	return 1;
}

static int key_enable(lua_State *L)
{
	return key_set(L, true);
}

static int key_disable(lua_State *L)
{
	return key_set(L, false);
}

/* k.name, k.sites, and k.enabled read from the guest now. */
static int key_index(lua_State *L)
{
	struct campaign *c = campaign_lua_booted(L);
	const char *field = luaL_checkstring(L, 2);
	struct campaign_static_key *k;
	const char *name;
	size_t n = 0;

	if (!strcmp(field, "enable")) {
		lua_pushcfunction(L, key_enable);
		return 1;
	}
	if (!strcmp(field, "disable")) {
		lua_pushcfunction(L, key_disable);
		return 1;
	}
	lua_getiuservalue(L, 1, 1);
	name = lua_tostring(L, -1);
	if (!strcmp(field, "name"))
		return 1;
	if (strcmp(field, "enabled") && strcmp(field, "sites")) {
		lua_pushnil(L);
		return 1;
	}
	k = keys_get(L, c, "static_key", &n);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(k[i].name, name)) {
			if (!strcmp(field, "enabled"))
				lua_pushboolean(L, k[i].enabled);
			else
				lua_pushinteger(L, (lua_Integer)k[i].sites);
			free(k);
			return 1;
		}
	free(k);
	lua_pushnil(L);
	return 1;
}

int campaign_lua_static_key(lua_State *L)
{
	struct campaign *c = campaign_lua_vm(L);
	const char *name = luaL_checkstring(L, 2);
	struct campaign_static_key *k;
	bool found = false;
	size_t n = 0;

	k = keys_get(L, c, "vm:static_key", &n);
	for (size_t i = 0; i < n; i++)
		found |= !strcmp(k[i].name, name);
	free(k);
	if (!found)
		return luaL_error(L, "vm:static_key: no static key '%s' in the image's "
				  "__jump_table (vm:static_keys() lists them)", name);
	campaign_push_kind_object(L, name, KEY_MT, key_index);
	return 1;
}

void campaign_push_kind_result(lua_State *L, const struct campaign_patch_out *out,
			       size_t sites)
{
	lua_createtable(L, 0, 7);
	lua_pushboolean(L, out->ok);
	lua_setfield(L, -2, "ok");
	lua_pushinteger(L, (lua_Integer)sites);
	lua_setfield(L, -2, "sites");
	lua_pushinteger(L, (lua_Integer)out->syncs);
	lua_setfield(L, -2, "syncs");
	lua_pushnumber(L, out->us);
	lua_setfield(L, -2, "us");
	if (out->error[0]) {
		lua_pushstring(L, out->error);
		lua_setfield(L, -2, "error");
	}
}

void campaign_kind_done(lua_State *L, struct campaign *c, const char *type, const char *slice,
			uint64_t t0, const struct campaign_kv *own, size_t n,
			const struct campaign_patch_out *out, size_t sites)
{
	struct campaign_kv kv[CAMPAIGN_KIND_KV + 4];

	n = n < CAMPAIGN_KIND_KV ? n : CAMPAIGN_KIND_KV;
	memcpy(kv, own, n * sizeof(*kv));
	kv[n] = (struct campaign_kv)KV_B("ok", out->ok);
	campaign_trace_slice(c, slice, "patch", t0, campaign_now_ns(), kv, n + 1);
	kv[n + 1] = (struct campaign_kv)KV_U("syncs", out->syncs);
	kv[n + 2] = (struct campaign_kv)KV_D("us", out->us);
	kv[n + 3] = (struct campaign_kv)KV_S("error", out->error[0] ? out->error : NULL);
	campaign_event(c, type, kv, n + 4);
	campaign_push_kind_result(L, out, sites);
}

void campaign_push_kind_object(lua_State *L, const char *name, const char *mt,
			       lua_CFunction index)
{
	lua_newuserdatauv(L, 1, 1);
	lua_pushstring(L, name);
	lua_setiuservalue(L, -2, 1);
	if (luaL_newmetatable(L, mt)) {
		lua_pushcfunction(L, index);
		lua_setfield(L, -2, "__index");
	}
	lua_setmetatable(L, -2);
}

int campaign_track(struct campaign *c, enum campaign_kind kind, const char *name,
		   uint64_t orig, uint64_t cur)
{
	struct campaign_changed *n;

	for (size_t i = 0; i < c->nr_changed; i++)
		if (c->changed[i].kind == kind && !strcmp(c->changed[i].name, name)) {
			c->changed[i].cur = cur;
			return 0;
		}
	n = realloc(c->changed, (c->nr_changed + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	c->changed = n;
	n = &c->changed[c->nr_changed++];
	n->kind = kind;
	snprintf(n->name, sizeof(n->name), "%s", name);
	n->orig = orig;
	n->cur = cur;
	return 0;
}

/* Set one back through the backend; 0 if it now holds orig. */
static int kind_restore(struct campaign *c, const struct campaign_changed *ch)
{
	struct campaign_patch_out out;
	size_t sites, stw;
	bool changed;
	int ret;

	memset(&out, 0, sizeof(out));
	if (ch->kind == CAMPAIGN_KIND_KEY)
		ret = c->ops->static_key_set(c->be, ch->name, ch->orig, &changed, &sites, &out);
	else
		ret = c->ops->static_call_update(c->be, ch->name, ch->orig, &sites, &stw, &out);
	if (ret || !out.ok) {
		fprintf(stderr, "vmpoke campaign: cannot put static %s %s back: %s\n",
			ch->kind == CAMPAIGN_KIND_KEY ? "key" : "call", ch->name,
			out.error[0] ? out.error : "refused");
		return -1;
	}
	return 0;
}

int campaign_kind_now(struct campaign *c, const struct campaign_changed *ch, uint64_t *val)
{
	struct campaign_static_key *k = NULL;
	struct campaign_static_call *sc = NULL;
	int ret = -1;
	size_t n = 0;
	char msg[256];

	if (ch->kind == CAMPAIGN_KIND_KEY && !c->ops->static_keys(c->be, &k, &n, msg, sizeof(msg)))
		for (size_t j = 0; ret && j < n; j++)
			if (!strcmp(k[j].name, ch->name)) {
				*val = k[j].enabled;
				ret = 0;
			}
	if (ch->kind == CAMPAIGN_KIND_CALL && !c->ops->static_calls(c->be, &sc, &n, msg, sizeof(msg)))
		for (size_t j = 0; ret && j < n; j++)
			if (!strcmp(sc[j].name, ch->name)) {
				*val = sc[j].current;
				ret = 0;
			}
	free(k);
	free(sc);
	return ret;
}

bool campaign_kinds_undo(struct campaign *c)
{
	bool ok = true;

	for (size_t i = c->nr_changed; i--;) {
		const struct campaign_changed *ch = &c->changed[i];
		uint64_t now;

		if (ch->cur != ch->orig && kind_restore(c, ch))
			ok = false;
		/* read back, not assumed */
		if (campaign_kind_now(c, ch, &now) || now != ch->orig)
			ok = false;
	}
	return ok;
}
