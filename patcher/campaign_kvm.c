// SPDX-License-Identifier: MIT
/*
 * campaign_kvm.c - the campaign backend on a real guest: boot it on
 * /dev/kvm, patch through the batch protocol (patcher.h), probe through the
 * probe engine (probe.h), and read the guest's task table for vm:stats().
 *
 * A monitor thread sits in vmm_wait() for the end of the run (a fault, a
 * triple fault, DONE) and wakes ops->run() so vm:run_for() returns early.
 * Guest check failures do not end the run: a campaign that patches in new
 * behaviour expects the guest's own checks to see it, and counts them.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "campaign_internal.h"
#include "clock.h"
#include "jump_label.h"
#include "livepatch.h"
#include "static_call.h"
#include "patcher.h"
#include "probe.h"
#include "vmm.h"

#define KVM_READY_MS	120000	/* boot under nested emulation is slow */

struct kvm_be {
	struct vm *vm;
	struct patcher *p;
	struct campaign *c;
	pthread_t mon;
	bool mon_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool ended;
	struct vmm_result res;
	char *image;
	struct jl_table *jl;		/* loaded on first use */
	struct sc_table *sc;
	struct klp *klp;		/* made by the first vm:livepatch() */
};

static void *kvm_monitor(void *arg)
{
	struct kvm_be *k = arg;
	struct vmm_result res;

	vmm_wait(k->vm, 0, &res);
	pthread_mutex_lock(&k->lock);
	k->res = res;
	k->ended = true;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	return NULL;
}

static bool kvm_outcome_healthy(enum vmm_outcome o)
{
	return o == VMM_RUNNING || o == VMM_DONE || o == VMM_STOPPED || o == VMM_GUEST_CHECK;
}

/* The protocol's own phases, nested in the "protocol" slice. */
static void kvm_protocol_phase(void *opaque, const char *name, uint64_t start_ns,
			       uint64_t end_ns)
{
	struct kvm_be *k = opaque;
	struct campaign_phase ph = { name, start_ns, end_ns, 2 };

	campaign_phase_done(k->c, &ph);
}

static int kvm_boot(void *be, const struct campaign_boot_cfg *cfg, char *msg, size_t len)
{
	struct kvm_be *k = be;
	struct vm_config vc = {
		.image = cfg->image,
		.nr_vcpus = cfg->vcpus,
		.mem_mib = 64,
		.tasks = cfg->tasks,
		.hz = cfg->hz,
		.scenario = cfg->scenario,
		.iterations = cfg->iterations,
		.seed = 1,
		.trap_path = VMM_TRAP_AUTO,
		.quiet = cfg->quiet,
	};
	struct vmm_result res = { 0 };
	int code, err;

	k->c = cfg->campaign;
	k->image = strdup(cfg->image);
	k->vm = vmm_create(&vc, &code);
	if (!k->vm) {
		snprintf(msg, len, "%s: see the message above", cfg->image);
		return code == VMPOKE_EXIT_USAGE ? -EINVAL : -EIO;
	}
	vmm_set_check_fail_fatal(k->vm, false);
	k->p = patcher_create(k->vm, &(struct patcher_opts){ .phase = kvm_protocol_phase,
							   .phase_opaque = k });
	if (!k->p) {
		snprintf(msg, len, "cannot create the patcher");
		return -ENOMEM;
	}
	/* Boot and READY first; the monitor then reports how the run ends. */
	err = vmm_start_ready(k->vm, KVM_READY_MS, &res);
	if (err == -ETIMEDOUT || err == -ESRCH) {
		snprintf(msg, len, "%s: the guest did not report READY on all %u vCPUs%s%s",
			 cfg->image, cfg->vcpus, err == -ESRCH ? ": " : "",
			 err == -ESRCH ? res.message : "");
		/* the guest itself failed while booting (a fault): exit 1, not 3 */
		return err == -ESRCH && !kvm_outcome_healthy(res.outcome) &&
		       res.outcome != VMM_HOST_ERROR ? -EPIPE : -EIO;
	}
	if (err) {
		snprintf(msg, len, "cannot start the vCPUs");
		return -EIO;
	}
	if (pthread_create(&k->mon, NULL, kvm_monitor, k)) {
		snprintf(msg, len, "cannot start the monitor thread");
		return -EIO;
	}
	k->mon_started = true;
	return 0;
}

static const struct symtab *kvm_symtab(void *be)
{
	struct kvm_be *k = be;

	return k->vm ? vmm_symtab(k->vm) : NULL;
}

static int kvm_read(void *be, uint64_t addr, void *buf, size_t len)
{
	return vmm_gva_read(((struct kvm_be *)be)->vm, addr, buf, len);
}

static void kvm_phase(struct kvm_be *k, const char *name, uint64_t t0)
{
	struct campaign_phase ph = { name, t0, campaign_now_ns(), 1 };

	campaign_phase_done(k->c, &ph);
}

/*
 * Prepare every site, then run one batch.  `restore` swaps old and new
 * (vm:unpatch): the bytes go back with the patched-in instruction as the
 * one a trap emulates meanwhile, as kprobes' unoptimize does.
 */
static int kvm_batch(struct kvm_be *k, struct campaign_site *s, size_t n, bool restore,
		     struct campaign_patch_out *out)
{
	struct poke_site *ps = calloc(n, sizeof(*ps));
	struct poke_batch *b = NULL;
	struct poke_stats st0, st1;
	uint64_t t0 = campaign_now_ns(), t1;
	bool refused = false;
	enum poke_err e;

	if (!ps) {
		snprintf(out->error, sizeof(out->error), "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const void *old = restore ? s[i].new_bytes : s[i].has_old ? s[i].old : NULL;
		const void *new = restore ? s[i].old : s[i].new_bytes;
		const void *emu = s[i].emulate_len ? s[i].emulate : restore ? s[i].new_bytes
									  : NULL;

		s[i].refused[0] = 0;
		if (s[i].emulate_len > s[i].len) {
			snprintf(s[i].refused, sizeof(s[i].refused), "emulate is %u bytes, longer "
				 "than new (%u)", s[i].emulate_len, s[i].len);
			refused = true;
			continue;
		}
		/* a shorter emulated JMP/RET is padded with INT3, as the engine expects */
		memset(s[i].emulate + s[i].emulate_len, 0xcc, s[i].len - s[i].emulate_len);
		e = poke_site_prepare(k->p, &ps[i], s[i].at, old, new, s[i].len, emu,
				      s[i].refused, sizeof(s[i].refused));
		if (e != POKE_OK) {
			if (!s[i].refused[0])
				snprintf(s[i].refused, sizeof(s[i].refused), "%s",
					 poke_strerror(e));
			refused = true;
		} else if (!restore) {
			memcpy(s[i].old, ps[i].old, s[i].len);
		}
	}
	kvm_phase(k, "prepare", t0);
	if (refused)
		goto out;
	b = poke_batch_new(k->p);
	if (!b) {
		snprintf(out->error, sizeof(out->error), "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		e = poke_batch_add(b, &ps[i]);
		if (e != POKE_OK) {
			snprintf(s[i].refused, sizeof(s[i].refused), "%s", poke_strerror(e));
			refused = true;
		}
	}
	if (refused)
		goto out;
	patcher_stats(k->p, &st0);
	t1 = campaign_now_ns();
	e = poke_batch_finish(b, out->error, sizeof(out->error));
	kvm_phase(k, "protocol", t1);
	patcher_stats(k->p, &st1);
	out->syncs = st1.syncs - st0.syncs;
	out->ok = e == POKE_OK;
	if (!out->ok && !out->error[0])
		snprintf(out->error, sizeof(out->error), "%s", poke_strerror(e));
	if (out->ok)
		out->error[0] = 0;
out:
	out->us = (double)(campaign_now_ns() - t0) / 1000.0;
	if (b)
		poke_batch_free(b);
	free(ps);
	return 0;
}

static int kvm_patch(void *be, struct campaign_site *s, size_t n, struct campaign_patch_out *out)
{
	return kvm_batch(be, s, n, false, out);
}

static int kvm_unpatch(void *be, struct campaign_site *s, size_t n,
		       struct campaign_patch_out *out)
{
	return kvm_batch(be, s, n, true, out);
}

static int kvm_jl(struct kvm_be *k, char *msg, size_t len)
{
	if (k->jl)
		return 0;
	return jl_table_load(k->image, vmm_symtab(k->vm), &k->jl, msg, len);
}

static int kvm_static_keys(void *be, struct campaign_static_key **keys, size_t *n,
			   char *msg, size_t len)
{
	struct kvm_be *k = be;
	struct vmpoke_static_key key;
	int ret = kvm_jl(k, msg, len);

	*keys = NULL;
	*n = 0;
	if (ret)
		return ret;
	*keys = calloc(k->jl->nr_keys ? k->jl->nr_keys : 1, sizeof(**keys));
	if (!*keys) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < k->jl->nr_keys; i++) {
		const struct jl_key *jk = &k->jl->keys[i];

		if (jl_key_read(k->vm, jk, &key)) {
			snprintf(msg, len, "%s: not mapped", jk->name);
			free(*keys);
			*keys = NULL;
			return -EFAULT;
		}
		snprintf((*keys)[i].name, sizeof((*keys)[i].name), "%s", jk->name);
		(*keys)[i].enabled = key.enabled > 0;
		(*keys)[i].sites = jk->nr_sites;
	}
	*n = k->jl->nr_keys;
	return 0;
}

static int kvm_static_key_set(void *be, const char *name, bool enable, bool *changed,
			      size_t *sites, struct campaign_patch_out *out)
{
	struct kvm_be *k = be;
	struct jl_flip_out fo;
	const struct jl_key *jk;
	int ret = kvm_jl(k, out->error, sizeof(out->error));

	*changed = false;
	*sites = 0;
	if (ret)
		return ret;
	jk = jl_key_find(k->jl, name);
	if (!jk)
		return -ENOENT;
	ret = jl_key_set(k->p, k->vm, jk, enable, &fo, out->error, sizeof(out->error));
	out->ok = !ret;
	out->syncs = fo.syncs;
	out->us = fo.us;
	*changed = fo.changed;
	*sites = fo.sites;
	/* a refusal is an answer, not a failure of the backend */
	return 0;
}

static int kvm_sc(struct kvm_be *k, char *msg, size_t len)
{
	if (k->sc)
		return 0;
	return sc_table_load(k->image, vmm_symtab(k->vm), &k->sc, msg, len);
}

static int kvm_static_calls(void *be, struct campaign_static_call **calls, size_t *n,
			    char *msg, size_t len)
{
	struct kvm_be *k = be;
	struct vmpoke_static_call_key key;
	int ret = kvm_sc(k, msg, len);

	*calls = NULL;
	*n = 0;
	if (ret)
		return ret;
	*calls = calloc(k->sc->nr_calls ? k->sc->nr_calls : 1, sizeof(**calls));
	if (!*calls) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < k->sc->nr_calls; i++) {
		const struct sc_call *c = &k->sc->calls[i];
		struct campaign_static_call *o = &(*calls)[i];

		if (sc_key_read(k->vm, c, &key)) {
			snprintf(msg, len, "%s: key not mapped", c->name);
			free(*calls);
			*calls = NULL;
			return -EFAULT;
		}
		snprintf(o->name, sizeof(o->name), "%s", c->name);
		o->current = key.func;
		o->sites = c->nr_sites;
		o->nr_targets = c->nr_targets < 16 ? c->nr_targets : 16;
		memcpy(o->targets, c->targets, o->nr_targets * sizeof(o->targets[0]));
	}
	*n = k->sc->nr_calls;
	return 0;
}

static int kvm_static_call_update(void *be, const char *name, uint64_t target, size_t *sites,
				  size_t *stw, struct campaign_patch_out *out)
{
	struct kvm_be *k = be;
	struct sc_update_out uo;
	const struct sc_call *c;
	int ret = kvm_sc(k, out->error, sizeof(out->error));

	*sites = *stw = 0;
	if (ret)
		return ret;
	c = sc_call_find(k->sc, name);
	if (!c)
		return -ENOENT;
	ret = sc_update(k->p, k->vm, c, target, &uo, out->error, sizeof(out->error));
	out->ok = !ret;
	out->syncs = uo.syncs;
	out->us = uo.us;
	*sites = uo.sites;
	*stw = uo.stw;
	return 0;
}

enum probe_verdict campaign_probe_verdict(enum campaign_verdict v)
{
	switch (v) {
	case CAMPAIGN_SKIP:
		return PROBE_SKIP;
	case CAMPAIGN_MISSED:
		return PROBE_MISSED;
	default:
		return PROBE_RESUME;
	}
}

static enum probe_verdict kvm_hit(struct probe_hit_ctx *ctx, void *opaque)
{
	struct campaign_hit h = { ctx->vcpu, ctx->task, ctx->regs };

	return campaign_probe_verdict(campaign_probe_hit(opaque, &h));
}

/*
 * kind "auto" (the default) and "optimized" are the same request: an INT3
 * probe first, then the JMP to a detour where the site allows.  With a Lua
 * handler the detour rings the doorbell for it; without one it only counts,
 * with no exit and so no hit events.  Where the site cannot be optimized the
 * probe stays INT3 (with its hit events) and cp->kind_refused names the
 * rule: "optimized" falls back too, it does not raise.
 */
static void *kvm_probe_add(void *be, uint64_t addr, uint64_t max_hits,
			   struct campaign_probe *cp, const char **kind, char *reason, size_t len)
{
	struct kvm_be *k = be;
	bool want_int3 = cp->want_kind && !strcmp(cp->want_kind, "int3");
	bool counting = !want_int3 && !cp->has_handler;
	struct probe_opts po = {
		.handler = counting ? NULL : kvm_hit,
		.opaque = cp,
		.max_hits = max_hits,
		.kind = want_int3 ? PROBE_KIND_INT3 : PROBE_KIND_AUTO,
	};
	const char *why = NULL, *detail;
	struct probe *pr;
	char msg[CAMPAIGN_REASON_LEN];

	msg[0] = 0;
	cp->kind_refused[0] = 0;
	pr = probe_add(k->p, addr, &po, &why, msg, sizeof(msg));
	if (pr && !want_int3 && probe_kind_of(pr) != PROBE_KIND_OPTIMIZED) {
		snprintf(cp->kind_refused, sizeof(cp->kind_refused), "%s",
			 probe_opt_refusal(pr));
		if (counting) {
			/* an INT3 probe reports its hits: place it again with the hook */
			if (probe_remove(pr, msg, sizeof(msg))) {
				snprintf(reason, len, "%s", msg);
				return NULL;
			}
			po.handler = kvm_hit;
			po.kind = PROBE_KIND_INT3;
			pr = probe_add(k->p, addr, &po, &why, msg, sizeof(msg));
		}
	}
	if (!pr) {
		/* msg is "WHERE: reason: detail"; the core puts its own WHERE first */
		detail = why ? strstr(msg, why) : NULL;
		snprintf(reason, len, "%s", detail ? detail : why ? why : msg);
		return NULL;
	}
	*kind = probe_kind_of(pr) == PROBE_KIND_OPTIMIZED ? "optimized" : "int3";
	return pr;
}

static int kvm_probe_remove(void *be, void *h, char *msg, size_t len)
{
	(void)be;
	return probe_remove(h, msg, len);
}

static void kvm_probe_counts(void *be, void *h, struct campaign_counts *c)
{
	struct probe_counts pc;

	(void)be;
	probe_counts(h, &pc);
	c->hits = pc.hits;
	c->missed = pc.missed;
	memcpy(c->per_vcpu, pc.per_vcpu, sizeof(c->per_vcpu));
	c->removed = probe_removed(h);
}

static void kvm_probe_reap(void *be)
{
	probe_reap(((struct kvm_be *)be)->p);
}

static int kvm_livepatch_new(void *be, const struct klp_func_spec *f, size_t n,
			     unsigned int retry_ms, void **h, char *msg, size_t len)
{
	struct kvm_be *k = be;
	struct klp_patch *lp;

	if (!k->klp) {
		struct klp_opts o = { 0 };

		k->klp = klp_new(k->p, k->vm, k->image, &o, msg, len);
		if (!k->klp)
			return -EINVAL;
	}
	lp = klp_patch_new(k->klp, f, n, msg, len);
	if (!lp)
		return -EINVAL;
	klp_patch_set_retry_ms(lp, retry_ms);
	*h = lp;
	return 0;
}

static void kvm_livepatch_info(void *be, void *h, struct klp_info *info)
{
	(void)be;
	klp_patch_info(h, info);
}

/* 'e'nable, 'd'isable, 'f'orce, or 't': retry the transition now. */
static int kvm_livepatch_op(void *be, void *h, char op, struct campaign_patch_out *out)
{
	struct kvm_be *k = be;
	struct klp_info a, b;
	int ret;

	klp_patch_info(h, &a);
	if (op == 'e')
		ret = klp_enable(h, out->error, sizeof(out->error));
	else if (op == 'd')
		ret = klp_disable(h, out->error, sizeof(out->error));
	else if (op == 'f')
		ret = klp_force(h, out->error, sizeof(out->error));
	else
		ret = klp_tick(k->klp, true, out->error, sizeof(out->error));
	klp_patch_info(h, &b);
	out->ok = !ret;
	out->syncs = b.syncs - a.syncs;
	out->us = b.us - a.us;
	return 0;	/* a refusal is out->ok = false */
}

static void kvm_run(void *be, unsigned int ms)
{
	struct kvm_be *k = be;
	struct timespec ts;
	char msg[256];

	/* livepatch retries, about every retry_ms, while the script waits */
	if (k->klp && !k->ended && klp_tick(k->klp, false, msg, sizeof(msg)))
		fprintf(stderr, "vmpoke campaign: livepatch: %s\n", msg);

	clock_deadline(&ts, ms * CLOCK_NS_PER_MS);
	pthread_mutex_lock(&k->lock);
	while (!k->ended && pthread_cond_timedwait(&k->cond, &k->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&k->lock);
}


/* The guest's task table, through the one validated reader (guest_tables.h). */
static int kvm_stats(void *be, struct campaign_guest_stats *st)
{
	struct kvm_be *k = be;
	struct vmpoke_task_table *tab = malloc(sizeof(*tab));
	char msg[256];
	int ret = -ENOMEM;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&k->lock);
	st->ended = k->ended;
	st->healthy = !k->ended || kvm_outcome_healthy(k->res.outcome);
	if (k->ended)
		snprintf(st->outcome, sizeof(st->outcome), "%s", k->res.message);
	pthread_mutex_unlock(&k->lock);
	st->guest_faults = vmm_hcall_count(k->vm, VMPOKE_HC_FAULT);
	if (!st->healthy && !st->guest_faults)
		st->guest_faults = 1;
	if (!tab)
		return ret;
	ret = vmm_tasks_read(k->vm, tab, msg, sizeof(msg));
	for (uint32_t i = 0; !ret && i < tab->nr_tasks; i++) {
		const struct vmpoke_task *t = &tab->tasks[i];
		struct campaign_task_stats *ts = &st->tasks[st->nr_tasks];

		if (t->state == VMPOKE_TASK_UNUSED || t->vcpu >= vmm_nr_vcpus(k->vm))
			continue;
		ts->vcpu = t->vcpu;
		ts->task = t->id;
		ts->iterations = t->iterations;
		ts->check_failures = t->check_failures;
		st->iterations += t->iterations;
		st->check_failures += t->check_failures;
		st->nr_tasks++;
	}
	free(tab);
	return ret;
}

static void kvm_destroy(void *be)
{
	struct kvm_be *k = be;

	if (k->vm)
		vmm_stop(k->vm);
	if (k->mon_started)
		pthread_join(k->mon, NULL);
	klp_free(k->klp);
	if (k->p)
		patcher_destroy(k->p);
	if (k->vm)
		vmm_destroy(k->vm);
	pthread_mutex_destroy(&k->lock);
	pthread_cond_destroy(&k->cond);
	jl_table_free(k->jl);
	sc_table_free(k->sc);
	free(k->image);
	free(k);
}

void *campaign_kvm_new(void)
{
	struct kvm_be *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	pthread_mutex_init(&k->lock, NULL);
	clock_cond_init(&k->cond);	/* kvm_run's deadline */
	return k;
}

const struct campaign_ops campaign_kvm_ops = {
	.boot = kvm_boot,
	.symtab = kvm_symtab,
	.read = kvm_read,
	.patch = kvm_patch,
	.unpatch = kvm_unpatch,
	.probe_add = kvm_probe_add,
	.probe_remove = kvm_probe_remove,
	.probe_counts = kvm_probe_counts,
	.probe_reap = kvm_probe_reap,
	.run = kvm_run,
	.stats = kvm_stats,
	.destroy = kvm_destroy,
	.static_keys = kvm_static_keys,
	.static_key_set = kvm_static_key_set,
	.static_calls = kvm_static_calls,
	.static_call_update = kvm_static_call_update,
	.livepatch_new = kvm_livepatch_new,
	.livepatch_op = kvm_livepatch_op,
	.livepatch_info = kvm_livepatch_info,
};
