// SPDX-License-Identifier: MIT
/*
 * campaign.c - a campaign's lifetime: load the script, run it, hand the
 * interpreter to probe handlers while the script waits in vm:run_for(),
 * and on every way out undo every probe and patch before the report.
 *
 * The interpreter hand-off (seed 003, docs/design.md).  c->interp says who owns the Lua
 * state.  A vCPU that hits a probe with a Lua handler takes it only by a
 * compare-and-swap IDLE -> HANDLER, which succeeds only while the script
 * sits in vm:run_for(); in every other state the hit is counted as missed
 * and the original instruction runs at once.  So a vCPU never waits for the
 * controller, and the controller, whenever it waits for vCPUs (a sync inside
 * vm:patch(), vm:probe(), p:remove()), holds the interpreter (BUSY): no
 * vCPU can be waiting on it.  The controller takes the interpreter back
 * (campaign_claim) by waiting for a running handler to return, and a
 * handler's run time is bounded by the instruction-count hook, so that wait
 * is bounded too.
 */
#include <errno.h>
#include <inttypes.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "campaign_internal.h"
#include "clock.h"
#include "vmm.h"

#define RUN_SLICE_MS		50
#define SAMPLE_EVERY_NS		250000000ull
#define PROGRESS_AFTER_S	3.0

static volatile sig_atomic_t campaign_sig;
static _Atomic uint64_t campaign_deadline_ns;

uint64_t campaign_now_ns(void)
{
	return clock_now_ns();
}

uint64_t campaign_t_us(struct campaign *c)
{
	return (campaign_now_ns() - c->t0_ns) / 1000;
}

void campaign_signal(int sig)
{
	campaign_sig = sig;
}

bool campaign_signalled(void)
{
	return campaign_sig != 0;
}

bool campaign_stopping(void)
{
	uint64_t d = atomic_load(&campaign_deadline_ns);

	return campaign_sig || (d && campaign_now_ns() >= d);
}

/* --- the interpreter hand-off ---------------------------------------------- */

void campaign_claim(struct campaign *c)
{
	int idle = INTERP_IDLE;

	pthread_mutex_lock(&c->lock);
	c->claiming = true;
	while (!atomic_compare_exchange_strong(&c->interp, &idle, INTERP_BUSY)) {
		if (idle == INTERP_BUSY)
			break;		/* already ours */
		idle = INTERP_IDLE;
		pthread_cond_wait(&c->cond, &c->lock);
	}
	c->claiming = false;
	pthread_mutex_unlock(&c->lock);
}

void campaign_release(struct campaign *c)
{
	atomic_store(&c->interp, INTERP_IDLE);
}

static void campaign_handler_done(struct campaign *c)
{
	atomic_store(&c->interp, INTERP_IDLE);
	/* Short section; the controller never holds c->lock while it waits for us. */
	pthread_mutex_lock(&c->lock);
	if (c->claiming)
		pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

enum campaign_verdict campaign_probe_hit(struct campaign_probe *cp, struct campaign_hit *h)
{
	struct campaign *c = cp->c;
	enum campaign_verdict v = CAMPAIGN_RESUME;
	int idle = INTERP_IDLE;

	if (cp->handler_ref != LUA_NOREF && !atomic_load(&cp->handler_off) &&
	    !atomic_load(&cp->remove_req)) {
		if (!atomic_compare_exchange_strong(&c->interp, &idle, INTERP_HANDLER)) {
			v = CAMPAIGN_MISSED;
		} else {
			v = campaign_lua_handler(c, cp, h);
			campaign_handler_done(c);
		}
	}
	campaign_out_hit(c, cp, h, v);
	return v;
}

/* --- lists ------------------------------------------------------------------ */

/* Room for one more element of size sz in *arr (cap elements). */
static int campaign_grow(void *arr, size_t *cap, size_t nr, size_t sz)
{
	void **pa = arr, *np;
	size_t n;

	if (nr < *cap)
		return 0;
	n = *cap ? 2 * *cap : 16;
	np = realloc(*pa, n * sz);
	if (!np)
		return -ENOMEM;
	*pa = np;
	*cap = n;
	return 0;
}

#define GROW(arr, nr, cap)	campaign_grow(&(arr), &(cap), (nr), sizeof(*(arr)))

int campaign_add_probe(struct campaign *c, struct campaign_probe *cp)
{
	if (GROW(c->probes, c->nr_probes, c->cap_probes))
		return -ENOMEM;
	cp->seq = c->seq++;
	c->probes[c->nr_probes++] = cp;
	return 0;
}

int campaign_add_batch(struct campaign *c, struct campaign_batch *b)
{
	if (GROW(c->batches, c->nr_batches, c->cap_batches))
		return -ENOMEM;
	b->seq = c->seq++;
	c->batches[c->nr_batches++] = b;
	return 0;
}

int campaign_add_expect(struct campaign *c, const char *msg, bool ok, int line)
{
	char *m = strdup(msg);

	if (!m || GROW(c->expects, c->nr_expects, c->cap_expects)) {
		free(m);
		return -ENOMEM;
	}
	c->expects[c->nr_expects++] = (struct campaign_expect){ m, ok, line };
	return 0;
}

/* --- boot, probes, run_for -------------------------------------------------- */

int campaign_boot(struct campaign *c, char *msg, size_t len)
{
	int r;

	if (c->booted)
		return 0;
	if (c->boot_failed) {
		snprintf(msg, len, "the guest failed to boot earlier");
		return -EIO;
	}
	c->cfg.campaign = c;
	r = c->ops->boot(c->be, &c->cfg, msg, len);
	if (r) {
		c->boot_failed = true;
		c->boot_code = r == -ENOENT || r == -EINVAL ? VMPOKE_EXIT_USAGE
			     : r == -EPIPE ? VMPOKE_EXIT_GUEST : VMPOKE_EXIT_HOST;
		c->boot_guest_fault = r == -EPIPE;
		if (c->boot_guest_fault) {
			struct campaign_kv ev[] = { KV_S("message", msg) };

			campaign_event(c, "guest_fault", ev, KVN(ev));
		}
		return r;
	}
	c->booted = true;
	campaign_trace_threads(c, c->cfg.vcpus);
	return 0;
}

void campaign_probe_refresh(struct campaign *c, struct campaign_probe *cp,
			    struct campaign_counts *cnt)
{
	if (cp->removed || !cp->h) {
		*cnt = cp->final;
		return;
	}
	c->ops->probe_counts(c->be, cp->h, cnt);
	if (cnt->removed) {		/* reaped at max_hits */
		cp->final = *cnt;
		cp->removed = true;
	}
}

int campaign_probe_remove(struct campaign *c, struct campaign_probe *cp, char *msg, size_t len)
{
	struct campaign_counts cnt;
	int r;

	campaign_probe_refresh(c, cp, &cnt);
	if (cp->removed || !cp->h)
		return 0;
	r = c->ops->probe_remove(c->be, cp->h, msg, len);
	if (r)
		return r;
	c->ops->probe_counts(c->be, cp->h, &cp->final);
	cp->removed = true;
	{
		struct campaign_kv ev[] = {
			KV_S("action", "removed"), KV_S("where", cp->where),
			KV_U("addr", cp->addr), KV_U("hits", cp->final.hits),
			KV_U("missed", cp->final.missed),
		};

		campaign_event(c, "probe", ev, KVN(ev));
	}
	return 0;
}

/* Deferred p:remove() calls and max_hits reaping; the interpreter is ours. */
static void campaign_service(struct campaign *c)
{
	char msg[256];

	atomic_store(&c->service, false);
	for (size_t i = 0; i < c->nr_probes; i++) {
		struct campaign_probe *cp = c->probes[i];

		if (atomic_load(&cp->remove_req) && !cp->removed &&
		    campaign_probe_remove(c, cp, msg, sizeof(msg)))
			fprintf(stderr, "vmpoke campaign: cannot remove probe %s: %s\n",
				cp->where, msg);
	}
	if (c->booted)
		c->ops->probe_reap(c->be);
}

static void campaign_sample(struct campaign *c)
{
	bool was_ended = c->have_stats && c->stats.ended;

	if (!c->booted || c->ops->stats(c->be, &c->stats))
		return;
	c->have_stats = true;
	{
		struct campaign_kv kv[] = { KV_U("iterations", c->stats.iterations) };

		campaign_trace_counter(c, "guest progress", kv, KVN(kv));
	}
	if (c->stats.ended && !was_ended && !c->stats.healthy) {
		struct campaign_kv ev[] = { KV_S("message", c->stats.outcome) };

		campaign_event(c, "guest_fault", ev, KVN(ev));
		fprintf(stderr, "vmpoke campaign: guest: %s\n", c->stats.outcome);
	}
}

static void campaign_progress(struct campaign *c, double left)
{
	char line[160];

	snprintf(line, sizeof(line), "campaign: run_for %.0f s left, %" PRIu64
		 " iterations, %" PRIu64 " check failures", left, c->stats.iterations,
		 c->stats.check_failures);
	c->o->progress(line);
}

int campaign_run_for(struct campaign *c, double seconds, char *msg, size_t len)
{
	uint64_t now = campaign_now_ns();
	uint64_t end = now + (uint64_t)(seconds * 1e9);
	uint64_t next_sample = now, next_progress = now + 1000000000ull;
	bool progress = seconds > PROGRESS_AFTER_S && c->o->progress;
	bool shown = false;

	campaign_sample(c);
	campaign_release(c);
	while ((now = campaign_now_ns()) < end && !campaign_stopping() &&
	       !(c->have_stats && c->stats.ended) && !atomic_load(&c->handler_failed)) {
		uint64_t left_ms = (end - now) / 1000000 + 1;

		c->ops->run(c->be, left_ms < RUN_SLICE_MS ? (unsigned int)left_ms
							  : RUN_SLICE_MS);
		campaign_claim(c);
		campaign_service(c);
		now = campaign_now_ns();
		if (now >= next_sample) {
			campaign_sample(c);
			next_sample = now + SAMPLE_EVERY_NS;
		}
		if (progress && now >= next_progress) {
			campaign_progress(c, (double)(end - now) / 1e9);
			shown = true;
			next_progress = now + 1000000000ull;
		}
		campaign_release(c);
	}
	campaign_claim(c);
	campaign_service(c);
	campaign_sample(c);
	if (shown && c->o->progress_clear)
		c->o->progress_clear();
	if (atomic_load(&c->handler_failed)) {
		/* raised once; a script that catches it may go on with other probes */
		snprintf(msg, len, "%s", c->handler_error);
		atomic_store(&c->handler_failed, false);
		return -EINVAL;
	}
	if (campaign_stopping()) {
		snprintf(msg, len, campaign_signalled() ? "interrupted by a signal"
							: "campaign timed out");
		return -EINTR;
	}
	return 0;
}

/* --- undo and verify ---------------------------------------------------------- */

static bool campaign_bytes_equal(struct campaign *c, uint64_t addr, const uint8_t *want,
				 size_t n)
{
	uint8_t got[CAMPAIGN_MAX_SITE];

	return n <= sizeof(got) && !c->ops->read(c->be, addr, got, n) && !memcmp(got, want, n);
}

/*
 * Was [addr, addr + len) first changed by an earlier batch that is undone
 * on exit?  Then that batch's old bytes are the original ones, and what a
 * later probe or batch found there (the patched bytes) is not.
 */
static bool campaign_covered_earlier(struct campaign *c, uint64_t addr, size_t len,
				     uint64_t seq)
{
	for (size_t i = 0; i < c->nr_batches; i++) {
		struct campaign_batch *b = c->batches[i];

		if (b->seq >= seq || !b->applied || b->keep)
			continue;
		for (size_t k = 0; k < b->n; k++)
			if (addr < b->sites[k].at + b->sites[k].len && b->sites[k].at < addr + len)
				return true;
	}
	return false;
}

/*
 * An applied batch made after seq, not undone, over [addr, addr + len)?
 * Its "original" bytes are the earlier batch's new ones: the earlier one
 * can only be undone after it (vm:unpatch refuses otherwise).
 */
bool campaign_covered_later(struct campaign *c, uint64_t addr, size_t len, uint64_t seq)
{
	for (size_t i = 0; i < c->nr_batches; i++) {
		struct campaign_batch *b = c->batches[i];

		if (b->seq <= seq || !b->applied || b->undone)
			continue;
		for (size_t k = 0; k < b->n; k++)
			if (addr < b->sites[k].at + b->sites[k].len && b->sites[k].at < addr + len)
				return true;
	}
	return false;
}

/*
 * Undo in reverse order of creation: a probe placed on a patched site goes
 * before the patch under it.  Probes and batches carry no shared sequence
 * number, so this merges the two lists from their ends by the order they
 * were appended (c->order).
 */
static void campaign_undo(struct campaign *c)
{
	struct campaign_patch_out out;
	char msg[256];
	size_t ip = c->nr_probes, ib = c->nr_batches;

	if (!c->booted) {
		c->restored = true;
		return;
	}
	while (ip || ib) {
		bool probe;

		if (!ip)
			probe = false;
		else if (!ib)
			probe = true;
		else
			probe = c->probes[ip - 1]->seq > c->batches[ib - 1]->seq;
		if (probe) {
			struct campaign_probe *cp = c->probes[--ip];

			if (cp->h && !cp->removed &&
			    campaign_probe_remove(c, cp, msg, sizeof(msg)))
				fprintf(stderr, "vmpoke campaign: cannot remove probe %s: %s\n",
					cp->where, msg);
		} else {
			struct campaign_batch *b = c->batches[--ib];

			if (!b->applied || b->keep || b->undone)
				continue;
			memset(&out, 0, sizeof(out));
			if (c->ops->unpatch(c->be, b->sites, b->n, &out) || !out.ok)
				fprintf(stderr, "vmpoke campaign: cannot undo a patch batch at "
					"0x%" PRIx64 ": %s\n", b->sites[0].at,
					out.error[0] ? out.error : "refused");
			else
				b->undone = true;
		}
	}
	/*
	 * Probes and patches are checked before the keys, calls and livepatches
	 * are put back: a probe or batch placed after a flip saw the flipped
	 * bytes as the original, and the flip's undo rightly changes them again.
	 */
	c->restored = true;
	for (size_t i = 0; i < c->nr_probes; i++) {
		struct campaign_probe *cp = c->probes[i];

		if (cp->h && cp->have_orig && !campaign_covered_earlier(c, cp->addr, 1, cp->seq) &&
		    !campaign_bytes_equal(c, cp->addr, &cp->orig, 1))
			c->restored = false;
	}
	for (size_t i = 0; i < c->nr_batches; i++) {
		struct campaign_batch *b = c->batches[i];

		if (!b->applied || b->keep)
			continue;
		for (size_t k = 0; k < b->n; k++)
			if (!campaign_covered_earlier(c, b->sites[k].at, b->sites[k].len, b->seq) &&
			    !campaign_bytes_equal(c, b->sites[k].at, b->sites[k].old,
						  b->sites[k].len))
				c->restored = false;
	}
	/* keys last: a key's sites must hold no probe or patch of ours */
	if (!campaign_kinds_undo(c))
		c->restored = false;
	if (!campaign_livepatch_undo(c))
		c->restored = false;
}

/* --- the whole run ------------------------------------------------------------ */

static int campaign_msgh(lua_State *L)
{
	if (!lua_isstring(L, 1))
		luaL_tolstring(L, 1, NULL);
	return 1;
}

static void campaign_free(struct campaign *c)
{
	for (size_t i = 0; i < c->nr_probes; i++)
		free(c->probes[i]);
	for (size_t i = 0; i < c->nr_batches; i++) {
		free(c->batches[i]->sites);
		free(c->batches[i]);
	}
	for (size_t i = 0; i < c->nr_expects; i++)
		free(c->expects[i].message);
	free(c->probes);
	free(c->batches);
	free(c->expects);
	free(c->changed);
	campaign_livepatch_free(c);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->out.lock);
	free(c);
}

int campaign_run(const struct campaign_opts *o, const struct campaign_ops *ops, void *be)
{
	struct campaign *c = calloc(1, sizeof(*c));
	char msg[256];
	int code, r;

	if (!c) {
		fprintf(stderr, "vmpoke campaign: out of memory\n");
		return VMPOKE_EXIT_HOST;
	}
	c->o = o;
	c->ops = ops;
	c->be = be;
	c->script_name = o->script;
	c->insn_limit = o->handler_insn_limit ? o->handler_insn_limit
					      : CAMPAIGN_DEFAULT_INSN_LIMIT;
	atomic_init(&c->interp, INTERP_BUSY);
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	pthread_mutex_init(&c->out.lock, NULL);
	c->t0_ns = campaign_now_ns();
	campaign_sig = 0;
	atomic_store(&campaign_deadline_ns,
		     o->timeout_s ? c->t0_ns + (uint64_t)o->timeout_s * 1000000000ull : 0);

	if (campaign_out_open(c, msg, sizeof(msg))) {
		fprintf(stderr, "vmpoke campaign: %s\n", msg);
		code = VMPOKE_EXIT_USAGE;
		goto out_free;
	}
	c->L = campaign_lua_new(c);
	if (!c->L) {
		fprintf(stderr, "vmpoke campaign: cannot create a Lua state\n");
		code = VMPOKE_EXIT_HOST;
		goto out_close;
	}
	lua_pushcfunction(c->L, campaign_msgh);
	r = luaL_loadfilex(c->L, o->script, "t");
	if (r == LUA_OK)
		r = lua_pcall(c->L, 0, 0, 1);
	if (r != LUA_OK) {
		const char *e = lua_tostring(c->L, -1);

		snprintf(c->error, sizeof(c->error), "%s", e ? e : "(error object)");
		/* A missing script is a usage error too; its message names it. */
		c->script_error = true;
		lua_pop(c->L, 1);
	}
	if (c->booted)
		c->timed_out = !campaign_signalled() && campaign_stopping();
	atomic_store(&campaign_deadline_ns, 0);	/* the undo must not be cut short */
	campaign_claim(c);
	campaign_undo(c);
	campaign_sample(c);
	if (c->script_error && !campaign_signalled() && !c->timed_out)
		fprintf(stderr, "%s\n", c->error);
	else if (campaign_signalled())
		fprintf(stderr, "vmpoke campaign: interrupted by a signal\n");
	else if (c->timed_out)
		fprintf(stderr, "vmpoke campaign: timed out after %u s\n", o->timeout_s);
	code = campaign_exit_code(c);
	campaign_summary(c, stdout);
	if (o->sink && o->sink->report(c, code) && code == VMPOKE_EXIT_OK)
		code = VMPOKE_EXIT_HOST;
	/* The guest stops before the state its probes call into goes away. */
	ops->destroy(be);
	be = NULL;
	lua_close(c->L);
out_close:
	campaign_out_close(c);
out_free:
	if (be)
		ops->destroy(be);
	campaign_free(c);
	return code;
}
