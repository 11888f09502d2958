// SPDX-License-Identifier: MIT
/*
 * campaign_bench.c - one Lua probe handler run exactly as a campaign runs
 * it (the interpreter hand-off, the ctx table, pcall, registers copied
 * back), without a script around it: what `vmpoke bench probe` measures as
 * int3_lua_ns.  The interpreter is left IDLE, as if the script waited in
 * vm:run_for(), so every hit may take it.
 */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_internal.h"

struct campaign_bench {
	struct campaign c;
	struct campaign_opts o;
	struct campaign_probe cp;
};

struct campaign_bench *campaign_bench_new(const char *handler, char *msg, size_t len)
{
	struct campaign_bench *b = calloc(1, sizeof(*b));

	if (!b) {
		snprintf(msg, len, "out of memory");
		return NULL;
	}
	b->o.scenario = -1;
	b->o.script = "(bench)";
	b->c.o = &b->o;
	b->c.script_name = b->o.script;
	b->c.insn_limit = CAMPAIGN_DEFAULT_INSN_LIMIT;
	b->c.t0_ns = campaign_now_ns();
	pthread_mutex_init(&b->c.lock, NULL);
	pthread_cond_init(&b->c.cond, NULL);
	pthread_mutex_init(&b->c.out.lock, NULL);
	b->c.L = campaign_lua_new(&b->c);
	if (!b->c.L) {
		snprintf(msg, len, "cannot create a Lua state");
		campaign_bench_free(b);
		return NULL;
	}
	if (luaL_loadstring(b->c.L, handler) != LUA_OK || lua_pcall(b->c.L, 0, 1, 0) != LUA_OK ||
	    !lua_isfunction(b->c.L, -1)) {
		snprintf(msg, len, "bench handler: %s", lua_type(b->c.L, -1) == LUA_TSTRING ?
			 lua_tostring(b->c.L, -1) : "the chunk does not return a function");
		campaign_bench_free(b);
		return NULL;
	}
	b->cp.c = &b->c;
	b->cp.handler_ref = luaL_ref(b->c.L, LUA_REGISTRYINDEX);
	snprintf(b->cp.where, sizeof(b->cp.where), "bench");
	b->c.booted = true;
	atomic_init(&b->c.interp, INTERP_IDLE);
	return b;
}

enum campaign_verdict campaign_bench_hit(struct campaign_bench *b, struct campaign_hit *h)
{
	return campaign_probe_hit(&b->cp, h);
}

bool campaign_bench_failed(struct campaign_bench *b, char *msg, size_t len)
{
	if (!atomic_load(&b->c.handler_failed))
		return false;
	snprintf(msg, len, "%s", b->c.handler_error);
	return true;
}

void campaign_bench_free(struct campaign_bench *b)
{
	if (!b)
		return;
	if (b->c.L)
		lua_close(b->c.L);
	pthread_mutex_destroy(&b->c.lock);
	pthread_cond_destroy(&b->c.cond);
	pthread_mutex_destroy(&b->c.out.lock);
	free(b);
}
