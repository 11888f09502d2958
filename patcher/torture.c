// SPDX-License-Identifier: MIT
/*
 * torture.c - the torture engine behind `vmpoke torture` (patcher/cli/
 * cmd_torture.c): flip every patch site the guest offers, in batches of
 * random size, as fast as the protocol allows, while the guest's tasks run
 * through those sites and check every result.  Check failures are counted
 * (not fatal); a guest fault ends the run.  With an injected fault the
 * engine runs a deliberately broken protocol and the run must detect it;
 * the first detection ends it.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "jump_label.h"
#include "static_call.h"
#include "symtab.h"
#include "torture.h"
#include "vmm.h"

#define TORTURE_READY_MS	120000	/* boot under nested emulation is slow */

struct torture {
	struct vm *vm;
	struct patcher *p;
	struct torture_site *sites;
	unsigned int nr_sites;
	unsigned int nr_vcpus;
	uint64_t seed;
	void (*progress)(const char *line);
	const volatile sig_atomic_t *interrupted;

	/* Cache of prepared transitions [site][from][to]; see torture_transition(). */
	struct poke_site *prep;
	uint8_t *prep_state;		/* enum prep_state */
	unsigned int refused;		/* transitions the engine refused */

	atomic_bool stop;		/* patch loop and hotplug thread leave */
	atomic_bool ended;		/* the guest run ended (monitor) */
	struct vmm_result res;		/* valid once ended */
	pthread_mutex_t lock;		/* hotplug pacing */
	pthread_cond_t cond;
	uint64_t hotplug_cycles;

	struct jl_table *jl;		/* --kinds jump_label */
	bool *jl_refused;		/* per key: refused once, not retried */
	uint64_t key_flips;
	struct sc_table *sc;		/* --kinds static_call */
	uint64_t call_updates;
	struct torture_probes *probes;	/* --kinds probe */
	struct torture_lp *lp;		/* --kinds livepatch */

	uint64_t patches, batches, aborts;
	double t0, first_detection;	/* < 0: none */
	bool injected;			/* a broken protocol: end at detection */
	bool host_error;
};

enum prep_state {
	PREP_UNKNOWN = 0,
	PREP_OK,
	PREP_REFUSED,
};

static double torture_now_s(void)
{
	return clock_now_ns() / 1e9;
}

/* The monitor: blocks in vmm_wait() until the run ends for any reason. */
static void *torture_monitor(void *arg)
{
	struct torture *t = arg;

	vmm_wait(t->vm, 0, &t->res);
	atomic_store(&t->ended, true);
	return NULL;
}

/*
 * Hotplug: offline one random vCPU, let it stay out a little, online it.
 * Only one is offline at a time, so never all.  The pauses are condvar
 * timed waits on the stop flag, not sleeps, so the run ends promptly.
 */
static void *torture_hotplug(void *arg)
{
	struct torture *t = arg;
	uint64_t rng = t->seed ^ 0x686f74706c7567ull;

	pthread_mutex_lock(&t->lock);
	while (!atomic_load(&t->stop)) {
		unsigned int id = (unsigned int)(torture_rand(&rng) % t->nr_vcpus);
		long us = 200 + (long)(torture_rand(&rng) % 5000);
		struct timespec ts;
		int err;

		pthread_mutex_unlock(&t->lock);
		err = vmm_vcpu_offline(t->vm, id);
		pthread_mutex_lock(&t->lock);
		clock_deadline(&ts, (uint64_t)us * CLOCK_NS_PER_US);
		while (!atomic_load(&t->stop) &&
		       pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&t->lock);
		if (!err) {
			vmm_vcpu_online(t->vm, id);
			t->hotplug_cycles++;
		}
		pthread_mutex_lock(&t->lock);
		clock_deadline(&ts, (torture_rand(&rng) % 3000) * CLOCK_NS_PER_US);
		while (!atomic_load(&t->stop) &&
		       pthread_cond_timedwait(&t->cond, &t->lock, &ts) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

/* Read and check vmpoke_sites; build the sites of the wanted kinds. */
static int torture_load_sites(struct torture *t, unsigned int kinds)
{
	const struct symtab *st = vmm_symtab(t->vm);
	struct vmpoke_site_table *tab;
	char msg[256];
	int err;

	tab = calloc(1, sizeof(*tab));
	t->sites = calloc(VMPOKE_MAX_SITES, sizeof(*t->sites));
	if (!tab || !t->sites) {
		free(tab);
		vmm_error("torture: out of memory");
		return -1;
	}
	if (vmm_sites_read(t->vm, tab, msg, sizeof(msg)) ||
	    torture_table_check(tab, st, msg, sizeof(msg))) {
		vmm_error("torture: %s", msg);
		free(tab);
		return -1;
	}
	for (uint32_t i = 0; i < tab->nr_sites; i++) {
		const struct vmpoke_site_desc *d = &tab->sites[i];
		uint8_t orig[POKE_MAX_LEN];

		if (!(kinds & (1u << d->kind)))
			continue;
		err = vmm_gva_read(t->vm, d->addr, orig, d->len);
		if (err) {
			vmm_error("torture: reading site 0x%" PRIx64 ": %s",
				  d->addr, strerror(-err));
			free(tab);
			return -1;
		}
		if (torture_site_build(&t->sites[t->nr_sites], d, orig, msg,
				       sizeof(msg))) {
			vmm_error("torture: %s", msg);
			free(tab);
			return -1;
		}
		t->nr_sites++;
	}
	free(tab);
	if (!t->nr_sites) {
		vmm_error("torture: %s offers no site of the requested kinds",
			  VMPOKE_SYM_SITES);
		return -1;
	}
	t->prep = calloc((size_t)t->nr_sites * TORTURE_MAX_VARIANTS *
			 TORTURE_MAX_VARIANTS, sizeof(*t->prep));
	t->prep_state = calloc((size_t)t->nr_sites * TORTURE_MAX_VARIANTS *
			       TORTURE_MAX_VARIANTS, sizeof(*t->prep_state));
	if (!t->prep || !t->prep_state) {
		vmm_error("torture: out of memory");
		return -1;
	}
	return 0;
}

static size_t torture_prep_index(const struct torture *t, unsigned int i,
			 unsigned int to)
{
	return ((size_t)i * TORTURE_MAX_VARIANTS + t->sites[i].cur) *
	       TORTURE_MAX_VARIANTS + to;
}

/*
 * The prepared site for site i going from its current variant to `to`.
 * Preparation (a Capstone scan of the containing function) is done once
 * per transition, when the guest holds the `from` bytes, and reused: the
 * result depends only on the function's code and the two byte strings.
 * A transition the engine refuses is reported once and never tried again
 * (the site stays where it is); the summary says how many there were, so
 * a refusal never silently shrinks the workload.
 */
static bool torture_multi_revert(const struct torture_site *ts, unsigned int to)
{
	return ts->desc.kind == VMPOKE_SITE_MULTI && to == 0;
}

static const struct poke_site *torture_transition(struct torture *t, unsigned int i,
					  unsigned int to)
{
	struct torture_site *ts = &t->sites[i];
	size_t k = torture_prep_index(t, i, to);
	char msg[256];
	enum poke_err e;

	if (t->prep_state[k] == PREP_OK)
		return &t->prep[k];
	if (t->prep_state[k] == PREP_REFUSED)
		return NULL;
	/*
	 * A MULTI site going back from its JMP to the original block writes
	 * several instructions; while it is live, a hit must still take the
	 * JMP it replaces (kprobes' unoptimize: INT3, old tail, old head).
	 */
	e = poke_site_prepare(t->p, &t->prep[k], ts->desc.addr,
			      ts->variant[ts->cur], ts->variant[to],
			      ts->desc.len, torture_multi_revert(ts, to) ?
			      ts->variant[ts->cur] : NULL, msg, sizeof(msg));
	if (e != POKE_OK) {
		vmm_error("torture: %s site %u, variant %u -> %u refused: %s",
			  torture_kind_name(ts->desc.kind), i, ts->cur, to, msg);
		t->prep_state[k] = PREP_REFUSED;
		t->refused++;
		return NULL;
	}
	t->prep_state[k] = PREP_OK;
	return &t->prep[k];
}

/* A variant other than the current one, not known to be refused; -1 if none. */
static int torture_pick_variant(struct torture *t, unsigned int i, uint64_t *rng)
{
	struct torture_site *ts = &t->sites[i];
	unsigned int step = 1 + (unsigned int)(torture_rand(rng) %
					       (ts->nr_variants - 1));

	for (unsigned int n = 0; n < ts->nr_variants - 1; n++) {
		unsigned int to = (ts->cur + step + n) % ts->nr_variants;

		if (to == ts->cur)
			to = (to + 1) % ts->nr_variants;
		if (t->prep_state[torture_prep_index(t, i, to)] != PREP_REFUSED)
			return (int)to;
	}
	return -1;
}

/* After a failed batch: find out which variant each site holds now. */
static int torture_resync(struct torture *t, const unsigned int *idx, unsigned int n)
{
	for (unsigned int j = 0; j < n; j++) {
		struct torture_site *ts = &t->sites[idx[j]];
		uint8_t now[POKE_MAX_LEN];
		bool found = false;

		if (vmm_gva_read(t->vm, ts->desc.addr, now, ts->desc.len))
			return -1;
		for (unsigned int v = 0; v < ts->nr_variants && !found; v++) {
			if (!memcmp(now, ts->variant[v], ts->desc.len)) {
				ts->cur = v;
				found = true;
			}
		}
		if (!found) {
			vmm_error("torture: site 0x%" PRIx64 " holds bytes that "
				  "are none of its variants after a failed batch",
				  ts->desc.addr);
			return -1;
		}
	}
	return 0;
}

/* Batch size: mostly small, sometimes everything, seeded. */
static unsigned int torture_batch_size(unsigned int n, uint64_t *rng)
{
	switch (torture_rand(rng) % 4) {
	case 0:
		return 1;
	case 1:
		return 1 + (unsigned int)(torture_rand(rng) % (n < 8 ? n : 8));
	case 2:
		return 1 + (unsigned int)(torture_rand(rng) % n);
	default:
		return n;
	}
}

static void torture_idx_swap(unsigned int *idx, unsigned int a, unsigned int b)
{
	unsigned int tmp = idx[a];

	idx[a] = idx[b];
	idx[b] = tmp;
}

/* One batch over a random subset.  0, 1 = the guest ended, -1 = error. */
static int torture_flip_batch(struct torture *t, unsigned int *idx, unsigned int *to,
		      uint64_t *rng)
{
	unsigned int n = t->nr_sites, k = torture_batch_size(n, rng);
	struct poke_batch *b;
	char msg[512];
	enum poke_err e = POKE_OK;

	/* Partial Fisher-Yates: idx[0..k) is a random subset. */
	for (unsigned int j = 0; j < k; j++)
		torture_idx_swap(idx, j, j + (unsigned int)(torture_rand(rng) % (n - j)));
	b = poke_batch_new(t->p);
	if (!b) {
		vmm_error("torture: out of memory");
		return -1;
	}
	/* Sites whose transition is refused drop out: idx[0..used) remain. */
	unsigned int used = 0;

	for (unsigned int j = 0; j < k && e == POKE_OK; j++) {
		int v = torture_pick_variant(t, idx[j], rng);
		const struct poke_site *ps;

		if (v < 0)
			continue;
		to[used] = (unsigned int)v;
		ps = torture_transition(t, idx[j], to[used]);
		if (!ps)
			continue;
		torture_idx_swap(idx, used++, j);
		e = poke_batch_add(b, ps);
	}
	k = used;
	if (!k) {
		poke_batch_free(b);
		return 0;
	}
	if (e == POKE_OK)
		e = poke_batch_finish(b, msg, sizeof(msg));
	else
		snprintf(msg, sizeof(msg), "batch add refused");
	poke_batch_free(b);

	if (e == POKE_OK) {
		for (unsigned int j = 0; j < k; j++)
			t->sites[idx[j]].cur = to[j];
		t->patches += k;
		t->batches++;
		return 0;
	}
	if (atomic_load(&t->ended))
		return 1;	/* the guest died under us: that is the verdict */
	if (e == POKE_E_SHADOW_BUSY) {
		/* The protocol working: the batch was undone. */
		t->aborts++;
		return 0;
	}
	vmm_error("torture: batch of %u: %s (%s)", k, msg, poke_strerror(e));
	torture_resync(t, idx, k);
	return -1;
}

static int torture_load_keys(struct torture *t, const char *image)
{
	char msg[512];

	if (jl_table_load(image, vmm_symtab(t->vm), &t->jl, msg, sizeof(msg))) {
		vmm_error("torture: %s", msg);
		return -1;
	}
	if (!t->jl->nr_keys) {
		vmm_error("torture: %s has no static keys (" VMPOKE_SEC_JUMP_TABLE ")", image);
		return -1;
	}
	t->jl_refused = calloc(t->jl->nr_keys, sizeof(*t->jl_refused));
	if (!t->jl_refused) {
		vmm_error("torture: out of memory");
		return -1;
	}
	return 0;
}

/*
 * Flip one random key.  A key the engine refuses before writing anything
 * (a site not in its key's form, such as the guest's jl_key_corrupt) is
 * counted once in `refused` and left alone; any other failure ends the run.
 */
static int torture_flip_key(struct torture *t, uint64_t *rng)
{
	unsigned int i = (unsigned int)(torture_rand(rng) % t->jl->nr_keys);
	const struct jl_key *k = &t->jl->keys[i];
	struct vmpoke_static_key v;
	struct jl_flip_out o;
	char msg[512];
	int err;

	if (t->jl_refused[i])
		return 0;
	if (jl_key_read(t->vm, k, &v)) {
		vmm_error("torture: cannot read static key %s", k->name);
		return -1;
	}
	err = jl_key_set(t->p, t->vm, k, !(v.enabled > 0), &o, msg, sizeof(msg));
	if (!err) {
		t->key_flips++;
		t->patches += o.sites;
		t->batches++;
		return 0;
	}
	if (atomic_load(&t->ended))
		return 1;
	if (err == -EILSEQ || err == -EINVAL) {
		t->jl_refused[i] = true;
		t->refused++;
		vmm_info("torture: static key %s refused: %s", k->name, msg);
		return 0;
	}
	vmm_error("torture: static key %s: %s", k->name, msg);
	return -1;
}

static int torture_load_calls(struct torture *t, const char *image)
{
	char msg[512];

	if (sc_table_load(image, vmm_symtab(t->vm), &t->sc, msg, sizeof(msg))) {
		vmm_error("torture: %s", msg);
		return -1;
	}
	if (!t->sc->nr_calls) {
		vmm_error("torture: %s has no static calls (" VMPOKE_SC_TRAMP_PREFIX "*)", image);
		return -1;
	}
	return 0;
}

/* Retarget one random call to one of its targets or NULL; a failure ends the run. */
static int torture_update_call(struct torture *t, uint64_t *rng)
{
	const struct sc_call *c = &t->sc->calls[torture_rand(rng) % t->sc->nr_calls];
	size_t pick = (size_t)(torture_rand(rng) % (c->nr_targets + 1));
	uint64_t target = pick < c->nr_targets ? c->targets[pick] : 0;
	struct sc_update_out o;
	char msg[512];

	if (!sc_update(t->p, t->vm, c, target, &o, msg, sizeof(msg))) {
		t->call_updates++;
		t->patches += o.sites;
		t->batches += o.sites != 0;
		return 0;
	}
	if (atomic_load(&t->ended))
		return 1;
	vmm_error("torture: static call %s: %s", c->name, msg);
	return -1;
}

static uint64_t torture_check_failures(struct torture *t)
{
	return vmm_hcall_count(t->vm, VMPOKE_HC_CHECK_FAIL);
}

/*
 * The torture guest executes no int3 of its own, so a trap vmpoke cannot
 * explain (not a live site, not a ghost) means the protocol broke: a vCPU
 * trapped on an INT3 already retired.  On trap path (a) the re-injected
 * #BP lands after the instruction KVM skips, and the guest may go wrong
 * silently instead of faulting, so the VMM's own count is the detection.
 */
static uint64_t torture_foreign_traps(struct torture *t)
{
	struct poke_stats st;

	patcher_stats(t->p, &st);
	return st.foreign_traps;
}

/* Name what each failing task saw last: the summary alone says only "1". */
static void torture_report_checks(struct torture *t)
{
	struct vmpoke_task_table *tab = malloc(sizeof(*tab));
	char where[128], msg[256];

	if (!tab)
		return;
	if (vmm_tasks_read(t->vm, tab, msg, sizeof(msg))) {
		vmm_error("torture: cannot name the failing tasks: %s", msg);
		free(tab);
		return;
	}
	for (uint32_t i = 0; i < tab->nr_tasks; i++) {
		struct vmpoke_task *k = &tab->tasks[i];

		if (!k->check_failures)
			continue;
		vmm_sanitize_text(k->last_check.what, sizeof(k->last_check.what));
		vmm_error("torture: task %u (vcpu %u): %" PRIu64 " check failures, "
			  "last: %.*s at %s: expected 0x%" PRIx64 ", got 0x%" PRIx64,
			  k->id, k->vcpu, k->check_failures,
			  (int)sizeof(k->last_check.what), k->last_check.what,
			  vmm_symbolize(t->vm, k->last_check.site, where, sizeof(where)),
			  k->last_check.expected, k->last_check.actual);
	}
	free(tab);
}

static bool torture_outcome_is_fault(enum vmm_outcome o)
{
	return o == VMM_GUEST_FAULT || o == VMM_TRIPLE_FAULT ||
	       o == VMM_INTERNAL_ERROR || o == VMM_UNEXPECTED_EXIT ||
	       o == VMM_GUEST_SELFCHECK || o == VMM_GUEST_CHECK;
}

static void torture_progress(struct torture *t, double now)
{
	struct poke_stats st;
	char line[256];

	if (!t->progress)
		return;
	patcher_stats(t->p, &st);
	snprintf(line, sizeof(line), "torture: %.0fs patches %" PRIu64 " traps %" PRIu64
		 " ghost %" PRIu64 " check_failures %" PRIu64, now - t->t0, t->patches,
		 st.trap_hits, st.ghost_traps, torture_check_failures(t));
	t->progress(line);
}

/* Has every kind of the run made at least n of its events? */
static bool torture_min_events_met(const struct torture *t, uint64_t n)
{
	struct torture_lp_stats lp;

	if (t->nr_sites && t->patches < n)
		return false;
	if (t->jl && t->key_flips < n)
		return false;
	if (t->sc && t->call_updates < n)
		return false;
	if (t->probes && torture_probes_placed(t->probes) < n)
		return false;
	if (t->lp) {
		torture_lp_stats(t->lp, &lp);
		if (lp.transitions < n)
			return false;
	}
	return true;
}

/* Go on past `seconds`?  Only for --min-events, and only up to the cap. */
static bool torture_go_on(const struct torture *t, double seconds, unsigned int min_events,
			  double elapsed)
{
	if (elapsed < seconds)
		return true;
	return min_events && elapsed < seconds + TORTURE_MIN_EVENTS_S &&
	       !torture_min_events_met(t, min_events);
}

static void torture_patch_loop(struct torture *t, double seconds, unsigned int min_events)
{
	unsigned int *idx = calloc(t->nr_sites, sizeof(*idx));
	unsigned int *to = calloc(t->nr_sites, sizeof(*to));
	uint64_t rng = t->seed | 1;
	double next_progress, now;

	if (!idx || !to) {
		vmm_error("torture: out of memory");
		t->host_error = true;
		goto out;
	}
	for (unsigned int i = 0; i < t->nr_sites; i++)
		idx[i] = i;
	t->t0 = now = torture_now_s();
	next_progress = now + 1;
	while (torture_go_on(t, seconds, min_events, now - t->t0) && !*t->interrupted &&
	       !atomic_load(&t->ended)) {
		int r = t->nr_sites ? torture_flip_batch(t, idx, to, &rng) : 0;

		if (!r && t->jl)
			r = torture_flip_key(t, &rng);
		if (!r && t->sc)
			r = torture_update_call(t, &rng);
		if (!r && t->probes)
			r = torture_probes_step(t->probes, &rng) ? -1 : 0;
		if (r < 0 && atomic_load(&t->ended))
			r = 1;	/* the guest died under a probe's sync: its verdict */
		if (!r && t->lp && torture_lp_round(t->lp, &rng))
			r = atomic_load(&t->ended) ? 1 : -1;

		now = torture_now_s();
		if (t->first_detection < 0 &&
		    (torture_check_failures(t) || torture_foreign_traps(t)))
			t->first_detection = now - t->t0;
		if (t->injected && t->first_detection >= 0)
			break;
		if (r > 0)
			break;
		if (r < 0) {
			t->host_error = true;
			break;
		}
		if (now >= next_progress) {
			torture_progress(t, now);
			next_progress = now + 1;
		}
	}
out:
	free(idx);
	free(to);
}

static void torture_stop_hotplug(struct torture *t, pthread_t hot, bool *started)
{
	if (!*started)
		return;
	atomic_store(&t->stop, true);
	pthread_mutex_lock(&t->lock);
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	pthread_join(hot, NULL);
	*started = false;
}

/* Boot, wait for every vCPU's READY, then hand over to the patch loop. */
static int torture_session(struct torture *t, const struct torture_opts *a,
			   struct torture_report *r)
{
	struct patcher_opts popts = { .inject = a->inject };
	pthread_t mon, hot;
	bool hot_started = false, mon_started = false;
	int code, err, ret = VMPOKE_EXIT_HOST;

	memset(&hot, 0, sizeof(hot));

	t->vm = vmm_create(&a->cfg, &code);
	if (!t->vm)
		return code;
	vmm_set_check_fail_fatal(t->vm, false);
	t->p = patcher_create(t->vm, &popts);
	if (!t->p) {
		vmm_error("torture: cannot create the patcher");
		goto out_vm;
	}
	err = vmm_start_ready(t->vm, TORTURE_READY_MS, NULL);
	if (err && err != -ETIMEDOUT && err != -ESRCH)
		goto out_patcher;	/* vmm_start() failed */
	if (err) {
		vmm_error("torture: %s: the guest did not report READY on all "
			  "%u vCPUs within %u s", a->cfg.image, a->cfg.nr_vcpus,
			  TORTURE_READY_MS / 1000);
		ret = VMPOKE_EXIT_GUEST;
		goto out_stop;
	}
	if (pthread_create(&mon, NULL, torture_monitor, t))
		goto out_stop;
	mon_started = true;
	if ((a->kinds & TORTURE_KINDS_ALL) && torture_load_sites(t, a->kinds))
		goto out_stop;
	if ((a->kinds & TORTURE_KINDS_KEYS) && torture_load_keys(t, a->cfg.image))
		goto out_stop;
	if ((a->kinds & TORTURE_KINDS_CALLS) && torture_load_calls(t, a->cfg.image))
		goto out_stop;
	if (a->kinds & (TORTURE_KINDS_PROBES | TORTURE_KINDS_OPTPROBES)) {
		t->probes = torture_probes_new(t->p, t->vm,
					       a->kinds & TORTURE_KINDS_OPTPROBES);
		if (!t->probes)
			goto out_stop;
	}
	if ((a->kinds & TORTURE_KINDS_LP) &&
	    !(t->lp = torture_lp_new(t->p, t->vm, a->cfg.image, a->inject)))
		goto out_stop;
	if (a->hotplug) {
		if (pthread_create(&hot, NULL, torture_hotplug, t))
			goto out_stop;
		hot_started = true;
	}

	torture_patch_loop(t, a->seconds, a->min_events);
	r->elapsed = torture_now_s() - t->t0;

	torture_stop_hotplug(t, hot, &hot_started);
	/* Probes come out while the guest still runs: removal syncs. */
	if (t->probes && torture_probes_finish(t->probes, !atomic_load(&t->ended),
					       &r->probes) && !atomic_load(&t->ended))
		t->host_error = true;
	patcher_stats(t->p, &r->st);
	r->check_failures = torture_check_failures(t);
	if (r->check_failures)
		torture_report_checks(t);
	vmm_stop(t->vm);
	pthread_join(mon, NULL);
	mon_started = false;
	if (torture_outcome_is_fault(t->res.outcome)) {
		r->guest_faults = 1;
		vmm_error("torture: guest: %s", t->res.message);
		if (t->first_detection < 0)
			t->first_detection = torture_now_s() - t->t0;
	}
	if (t->res.outcome == VMM_HOST_ERROR)
		t->host_error = true;
	if ((r->check_failures || r->st.foreign_traps) && t->first_detection < 0)
		t->first_detection = r->elapsed;
	if (r->probes.failures && t->first_detection < 0)
		t->first_detection = r->elapsed;
	r->detected = r->guest_faults || r->check_failures || r->st.foreign_traps ||
		      r->probes.failures;
	r->patches = t->patches;
	r->key_flips = t->key_flips;
	r->call_updates = t->call_updates;
	if (t->lp)
		torture_lp_stats(t->lp, &r->lp);
	r->batches = t->batches;
	r->hotplug_cycles = t->hotplug_cycles;
	r->nr_sites = t->nr_sites;
	r->trap_path = vmm_trap_path(t->vm);
	r->refused = t->refused;
	r->first_detection = t->first_detection;
	r->host_error = t->host_error;
	ret = 0;

out_stop:
	torture_stop_hotplug(t, hot, &hot_started);
	vmm_stop(t->vm);
	if (mon_started)
		pthread_join(mon, NULL);
	torture_lp_free(t->lp);
	t->lp = NULL;
out_patcher:
	patcher_destroy(t->p);
out_vm:
	vmm_destroy(t->vm);
	return ret;
}

int torture_run(const struct torture_opts *o, struct torture_report *r)
{
	static const volatile sig_atomic_t never;
	struct torture t;
	int ret;

	memset(r, 0, sizeof(*r));
	r->first_detection = -1;
	memset(&t, 0, sizeof(t));
	t.nr_vcpus = o->cfg.nr_vcpus;
	t.seed = o->cfg.seed;
	t.progress = o->progress;
	t.interrupted = o->interrupted ? o->interrupted : &never;
	t.first_detection = -1;
	t.injected = o->inject != POKE_INJECT_NONE;
	pthread_mutex_init(&t.lock, NULL);
	clock_cond_init(&t.cond);	/* hotplug pacing: clock_deadline() */
	ret = torture_session(&t, o, r);
	free(t.sites);
	free(t.prep);
	free(t.prep_state);
	jl_table_free(t.jl);
	sc_table_free(t.sc);
	torture_probes_free(t.probes);
	free(t.jl_refused);
	pthread_mutex_destroy(&t.lock);
	pthread_cond_destroy(&t.cond);
	return ret;
}
