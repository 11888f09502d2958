// SPDX-License-Identifier: MIT
/*
 * campaign_fake.c - the no-KVM campaign backend (campaign_fake.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_fake.h"
#include "symtab.h"

#define FAKE_MAX_PROBES	64

struct fake_probe {
	uint64_t addr, max_hits;
	struct campaign_counts cnt;
	struct campaign_probe *cp;
	uint8_t saved;			/* the byte the INT3 replaced */
	bool live;
};

/*
 * A livepatch that needs a fixed number of retries: enable() plants one
 * straggler (task 1 sleeping in the old function, at old + 3), which each
 * retry (ops->run or 't') counts down, unless the patch was made stuck
 * (fake_be_set_lp_stuck); force() ends it at once.  Each transition costs
 * 3 syncs and 2.5 us, so the report's sums are known.
 */
#define FAKE_MAX_LPS	8
#define FAKE_LP_RETRIES	2

struct fake_lp {
	const struct sym *old;		/* the first; the straggler sleeps in it */
	const struct sym *olds[KLP_MAX_FUNCS];
	size_t nr;
	enum klp_state state;
	bool forced, stuck;
	unsigned int retries, left;
	uint64_t syncs;
	double us;
	struct klp_straggler s;
	struct klp_retry hist[KLP_HISTORY];
	size_t nr_hist;
};

/*
 * Static keys and a static call whose sites are real bytes of the fake
 * memory, so the pristine check sees a flip that was not put back.  A flip
 * checks every site first and refuses the whole batch, as the engine does
 * ("unexpected op at", "live_site", "is not a target of").
 */
#define FAKE_KEY_SITES	2
#define FAKE_SC_TRAMP	0x1880ull	/* jmp <func>; 0f b9 cc */
#define FAKE_SC_SITE	0x1890ull	/* call <func> (inline site) */

struct fake_key {
	const char *name;
	bool enabled;
	size_t nr_sites;
	uint64_t sites[FAKE_KEY_SITES];
};

static const struct fake_key fake_keys_init[] = {
	{ "fake_key", false, 2, { 0x1800, 0x1808 } },
	{ "fake_key_on", true, 1, { 0x1818 } },
};

#define FAKE_NR_KEYS	(sizeof(fake_keys_init) / sizeof(fake_keys_init[0]))

static const uint64_t fake_sc_targets[] = { 0x1000, 0x1020 };	/* lib_add, lib_mul */

struct fake_be {
	struct symtab *st;
	struct fake_key keys[FAKE_NR_KEYS];
	uint64_t sc_current;		/* the static call's function, 0 = NULL */
	struct fake_lp lps[FAKE_MAX_LPS];
	unsigned int nr_lps;
	uint8_t mem[FAKE_MEM_SIZE], orig[FAKE_MEM_SIZE];
	struct fake_probe probes[FAKE_MAX_PROBES];
	unsigned int nr_probes, vcpus, hits_per_run;
	uint64_t iterations;
	bool booted, destroyed, lp_stuck;
};

static const struct sym fake_syms[] = {
	{ 0x1000, 0x20, 'T', "lib_add" },
	{ 0x1020, 0x20, 'T', "lib_mul" },
	{ 0x1040, 0x10, 'T', "lib_sum" },
	{ 0x1060, 0x8, 'T', "lib_nop" },
	{ 0x2000, 0x8, 'D', "lib_calls_add" },
	{ 0x2800, 0, 'N', "a_label" },
};

/* A jump site: NOP5 while disabled, JMP rel32 to site + 0x10 while enabled. */
static void fake_key_form(bool enabled, uint8_t *b)
{
	int32_t rel = 0x10 - 5;

	if (!enabled) {
		memcpy(b, "\x0f\x1f\x44\x00\x00", 5);
		return;
	}
	b[0] = 0xe9;
	memcpy(b + 1, &rel, 4);
}

/* The trampoline (jmp func, or ret for NULL) and the site (call func, or NOP5). */
static void fake_sc_form(uint64_t func, uint8_t *tramp, uint8_t *site)
{
	int32_t rel;

	memcpy(tramp + 5, "\x0f\xb9\xcc", 3);
	if (!func) {
		memcpy(tramp, "\xc3\xcc\xcc\xcc\xcc", 5);
		memcpy(site, "\x0f\x1f\x44\x00\x00", 5);
		return;
	}
	tramp[0] = 0xe9;
	rel = (int32_t)(func - (FAKE_SC_TRAMP + 5));
	memcpy(tramp + 1, &rel, 4);
	site[0] = 0xe8;
	rel = (int32_t)(func - (FAKE_SC_SITE + 5));
	memcpy(site + 1, &rel, 4);
}

struct fake_be *fake_be_new(void)
{
	struct fake_be *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->hits_per_run = 3;
	/* lib_add: lea (%rdi,%rsi),%rax; ret; then int3 padding */
	memset(f->mem, 0xcc, sizeof(f->mem));
	memcpy(f->mem, "\x48\x8d\x04\x37\xc3", 5);
	memcpy(f->mem + 0x20, "\x48\x89\xf8\x48\x0f\xaf\xc6\xc3", 8);
	memcpy(f->mem + 0x40, "\x0f\x1f\x44\x00\x00\x31\xc0\xc3", 8);
	memcpy(f->mem + 0x60, "\x0f\x1f\x44\x00\x00\x31\xc0\xc3", 8);
	memcpy(f->keys, fake_keys_init, sizeof(f->keys));
	for (size_t i = 0; i < FAKE_NR_KEYS; i++)
		for (size_t j = 0; j < f->keys[i].nr_sites; j++)
			fake_key_form(f->keys[i].enabled,
				      f->mem + (f->keys[i].sites[j] - FAKE_MEM_BASE));
	f->sc_current = fake_sc_targets[0];
	fake_sc_form(f->sc_current, f->mem + (FAKE_SC_TRAMP - FAKE_MEM_BASE),
		     f->mem + (FAKE_SC_SITE - FAKE_MEM_BASE));
	memcpy(f->orig, f->mem, sizeof(f->mem));
	return f;
}

static bool fake_in(uint64_t a, size_t n)
{
	return a >= FAKE_MEM_BASE && n <= FAKE_MEM_SIZE && a - FAKE_MEM_BASE <= FAKE_MEM_SIZE - n;
}

static int fake_boot(void *be, const struct campaign_boot_cfg *cfg, char *msg, size_t len)
{
	struct fake_be *f = be;

	(void)msg;
	(void)len;
	f->st = symtab_from_array(fake_syms, sizeof(fake_syms) / sizeof(fake_syms[0]));
	if (!f->st)
		return -ENOMEM;
	f->vcpus = cfg->vcpus;
	f->booted = true;
	return 0;
}

static const struct symtab *fake_symtab(void *be)
{
	return ((struct fake_be *)be)->st;
}

static int fake_read(void *be, uint64_t addr, void *buf, size_t len)
{
	struct fake_be *f = be;

	if (!fake_in(addr, len))
		return -EFAULT;
	memcpy(buf, f->mem + (addr - FAKE_MEM_BASE), len);
	return 0;
}

/*
 * One hit on every live probe, as a vCPU would deliver while the
 * controller waits for a sync inside a patch: it must come back MISSED.
 */
static void fake_hit_all(struct fake_be *f, unsigned int n);

/*
 * A live probe's INT3 in [a, a + n)?  The real engine refuses to patch or
 * probe there ("live_site"); the fake must too, or its undo would put an
 * INT3 back (a second probe saves the first one's 0xCC as "the original").
 */
static bool fake_live_probe_in(const struct fake_be *f, uint64_t a, size_t n)
{
	for (unsigned int i = 0; i < f->nr_probes; i++)
		if (f->probes[i].live && f->probes[i].addr - a < n)
			return true;
	return false;
}

/* Does site i overlap an earlier site of its batch? */
static bool fake_overlap(const struct campaign_site *s, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (s[i].at < s[j].at + s[j].len && s[j].at < s[i].at + s[i].len)
			return true;
	return false;
}

static int fake_apply(struct fake_be *f, struct campaign_site *s, size_t n, bool restore,
		      struct campaign_patch_out *out)
{
	bool refused = false;

	fake_hit_all(f, 1);
	for (size_t i = 0; i < n; i++) {
		s[i].refused[0] = 0;
		/* Check before pointing: mem + (at - base) may be out of bounds. */
		if (!fake_in(s[i].at, s[i].len)) {
			snprintf(s[i].refused, sizeof(s[i].refused), "0x%llx: not mapped",
				 (unsigned long long)s[i].at);
			refused = true;
		} else if (fake_live_probe_in(f, s[i].at, s[i].len)) {
			snprintf(s[i].refused, sizeof(s[i].refused), "live_site");
			refused = true;
		} else if (fake_overlap(s, i)) {
			/* as batch_sort(): an undo in any order could not restore both */
			snprintf(s[i].refused, sizeof(s[i].refused),
				 "overlaps a site of the same batch");
			refused = true;
		} else if (!restore && s[i].has_old &&
			   memcmp(f->mem + (s[i].at - FAKE_MEM_BASE), s[i].old, s[i].len)) {
			snprintf(s[i].refused, sizeof(s[i].refused), "old bytes differ");
			refused = true;
		}
	}
	out->ok = !refused;
	out->syncs = refused ? 0 : 3;
	out->us = 1.5;
	if (refused)
		return 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = f->mem + (s[i].at - FAKE_MEM_BASE);

		if (restore) {
			memcpy(p, s[i].old, s[i].len);
		} else {
			memcpy(s[i].old, p, s[i].len);
			memcpy(p, s[i].new_bytes, s[i].len);
		}
	}
	return 0;
}

static int fake_patch(void *be, struct campaign_site *s, size_t n, struct campaign_patch_out *out)
{
	return fake_apply(be, s, n, false, out);
}

static int fake_unpatch(void *be, struct campaign_site *s, size_t n,
			struct campaign_patch_out *out)
{
	return fake_apply(be, s, n, true, out);
}

static void *fake_probe_add(void *be, uint64_t addr, uint64_t max_hits,
			    struct campaign_probe *cp, const char **kind, char *reason, size_t len)
{
	struct fake_be *f = be;
	struct fake_probe *p;

	if (!fake_in(addr, 1)) {
		snprintf(reason, len, "not_mapped");
		return NULL;
	}
	if (addr == FAKE_PROBE_REFUSED) {
		snprintf(reason, len, "not_insn_boundary");
		return NULL;
	}
	if (fake_live_probe_in(f, addr, 1)) {
		snprintf(reason, len, "live_site");
		return NULL;
	}
	if (f->nr_probes == FAKE_MAX_PROBES) {
		snprintf(reason, len, "too_many_probes");
		return NULL;
	}
	p = &f->probes[f->nr_probes++];
	p->addr = addr;
	p->max_hits = max_hits;
	p->cp = cp;
	p->live = true;
	p->saved = f->mem[addr - FAKE_MEM_BASE];
	f->mem[addr - FAKE_MEM_BASE] = 0xcc;
	*kind = "int3";
	return p;
}

static int fake_probe_remove(void *be, void *h, char *msg, size_t len)
{
	struct fake_be *f = be;
	struct fake_probe *p = h;

	(void)msg;
	(void)len;
	if (p->live)
		f->mem[p->addr - FAKE_MEM_BASE] = p->saved;
	p->live = false;
	p->cnt.removed = true;
	return 0;
}

static void fake_probe_counts(void *be, void *h, struct campaign_counts *c)
{
	(void)be;
	*c = ((struct fake_probe *)h)->cnt;
}

static void fake_probe_reap(void *be)
{
	struct fake_be *f = be;

	for (unsigned int i = 0; i < f->nr_probes; i++)
		if (f->probes[i].live && f->probes[i].max_hits &&
		    f->probes[i].cnt.hits >= f->probes[i].max_hits)
			fake_probe_remove(f, &f->probes[i], NULL, 0);
}

static void fake_hit_all(struct fake_be *f, unsigned int hits)
{
	for (unsigned int i = 0; i < f->nr_probes; i++) {
		struct fake_probe *p = &f->probes[i];

		for (unsigned int n = 0; n < hits; n++) {
			struct kvm_regs regs = { .rip = p->addr, .rdi = n, .rsi = 2 };
			unsigned int vcpu = n % (f->vcpus ? f->vcpus : 1);
			struct campaign_hit h = { vcpu, (int)vcpu * 8, &regs };

			if (!p->live || (p->max_hits && p->cnt.hits >= p->max_hits))
				break;
			if (campaign_probe_hit(p->cp, &h) == CAMPAIGN_MISSED) {
				p->cnt.missed++;
			} else {
				p->cnt.hits++;
				p->cnt.per_vcpu[vcpu]++;
			}
		}
	}
}

static int fake_static_keys(void *be, struct campaign_static_key **keys, size_t *n,
			    char *msg, size_t len)
{
	struct fake_be *f = be;

	*n = 0;
	*keys = calloc(FAKE_NR_KEYS, sizeof(**keys));
	if (!*keys) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < FAKE_NR_KEYS; i++) {
		snprintf((*keys)[i].name, sizeof((*keys)[i].name), "%s", f->keys[i].name);
		(*keys)[i].enabled = f->keys[i].enabled;
		(*keys)[i].sites = f->keys[i].nr_sites;
	}
	*n = FAKE_NR_KEYS;
	return 0;
}

/* Is the 5-byte site at a as want says, and free of probes?  Else why not, in msg. */
static bool fake_site_ok(struct fake_be *f, uint64_t a, const uint8_t *want, char *msg,
			 size_t len)
{
	if (fake_live_probe_in(f, a, 5)) {
		snprintf(msg, len, "0x%llx: live_site", (unsigned long long)a);
		return false;
	}
	if (memcmp(f->mem + (a - FAKE_MEM_BASE), want, 5)) {
		snprintf(msg, len, "unexpected op at 0x%llx", (unsigned long long)a);
		return false;
	}
	return true;
}

static int fake_static_key_set(void *be, const char *name, bool enable, bool *changed,
			       size_t *sites, struct campaign_patch_out *out)
{
	struct fake_be *f = be;
	struct fake_key *k = NULL;
	uint8_t want[5];

	*changed = false;
	*sites = 0;
	for (size_t i = 0; i < FAKE_NR_KEYS; i++)
		if (!strcmp(f->keys[i].name, name))
			k = &f->keys[i];
	if (!k)
		return -ENOENT;
	out->ok = true;
	if (k->enabled == enable)
		return 0;
	fake_hit_all(f, 1);
	for (size_t j = 0; j < k->nr_sites; j++) {
		fake_key_form(k->enabled, want);
		if (!fake_site_ok(f, k->sites[j], want, out->error, sizeof(out->error))) {
			out->ok = false;
			return 0;
		}
	}
	for (size_t j = 0; j < k->nr_sites; j++)
		fake_key_form(enable, f->mem + (k->sites[j] - FAKE_MEM_BASE));
	k->enabled = enable;
	*changed = true;
	*sites = k->nr_sites;
	out->syncs = 3;
	return 0;
}

static int fake_static_calls(void *be, struct campaign_static_call **calls, size_t *n,
			     char *msg, size_t len)
{
	struct fake_be *f = be;
	struct campaign_static_call *c;

	*n = 0;
	*calls = c = calloc(1, sizeof(**calls));
	if (!c) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	snprintf(c->name, sizeof(c->name), "fake_call");
	c->current = f->sc_current;
	c->sites = 1;
	c->nr_targets = sizeof(fake_sc_targets) / sizeof(fake_sc_targets[0]);
	memcpy(c->targets, fake_sc_targets, sizeof(fake_sc_targets));
	*n = 1;
	return 0;
}

static int fake_static_call_update(void *be, const char *name, uint64_t target, size_t *sites,
				   size_t *stw, struct campaign_patch_out *out)
{
	struct fake_be *f = be;
	uint8_t tramp[8], site[5];
	bool known = !target;

	*sites = *stw = 0;
	if (strcmp(name, "fake_call"))
		return -ENOENT;
	for (size_t i = 0; i < sizeof(fake_sc_targets) / sizeof(fake_sc_targets[0]); i++)
		known |= target == fake_sc_targets[i];
	if (!known) {
		snprintf(out->error, sizeof(out->error), "0x%llx is not a target of %s",
			 (unsigned long long)target, name);
		return 0;
	}
	fake_hit_all(f, 1);
	fake_sc_form(f->sc_current, tramp, site);
	if (!fake_site_ok(f, FAKE_SC_TRAMP, tramp, out->error, sizeof(out->error)) ||
	    !fake_site_ok(f, FAKE_SC_SITE, site, out->error, sizeof(out->error)))
		return 0;
	fake_sc_form(target, f->mem + (FAKE_SC_TRAMP - FAKE_MEM_BASE),
		     f->mem + (FAKE_SC_SITE - FAKE_MEM_BASE));
	f->sc_current = target;
	*sites = 1;
	out->ok = true;
	out->syncs = 3;
	return 0;
}

/* The engine's refusals of a patch itself (patcher/livepatch.c, klp_new). */
static int fake_lp_check(const struct fake_be *f, const struct klp_func_spec *fs, size_t n,
			 const struct sym **olds, char *msg, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		const struct sym *o = symtab_find(f->st, fs[i].old);
		const struct sym *nw = symtab_find(f->st, fs[i].new);

		if (!o || o->type != 'T' || !nw || nw->type != 'T') {
			snprintf(msg, len, "'%s' -> '%s': no such function", fs[i].old, fs[i].new);
			return -EINVAL;
		}
		if (o == nw) {
			snprintf(msg, len, "'%s' cannot replace itself", o->name);
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++)
			if (olds[j] == o) {
				snprintf(msg, len, "old '%s' is listed twice", o->name);
				return -EINVAL;
			}
		olds[i] = o;
	}
	return 0;
}

static int fake_lp_new(void *be, const struct klp_func_spec *fs, size_t n, unsigned int retry_ms,
		       void **h, char *msg, size_t len)
{
	const struct sym *olds[KLP_MAX_FUNCS];
	struct fake_be *f = be;
	struct fake_lp *lp;

	(void)retry_ms;
	if (n > KLP_MAX_FUNCS || fake_lp_check(f, fs, n, olds, msg, len))
		return -EINVAL;
	if (f->nr_lps == FAKE_MAX_LPS) {
		snprintf(msg, len, "out of fake livepatches");
		return -ENOMEM;
	}
	lp = &f->lps[f->nr_lps++];
	memcpy(lp->olds, olds, n * sizeof(olds[0]));
	lp->nr = n;
	lp->old = olds[0];
	lp->stuck = f->lp_stuck;
	*h = lp;
	return 0;
}

/*
 * Why lp may not start a transition now, as the engine says it (klp_begin):
 * one transition at a time, one enabled patch per function, and each
 * entry an fentry NOP5 ("unexpected op at" names the first that is not).
 */
static bool fake_lp_refused(const struct fake_be *f, const struct fake_lp *lp, bool enable,
			    char *msg, size_t len)
{
	for (unsigned int i = 0; i < f->nr_lps; i++) {
		const struct fake_lp *o = &f->lps[i];

		if (o == lp)
			continue;
		if (o->state == KLP_PATCHING || o->state == KLP_UNPATCHING) {
			snprintf(msg, len, "another livepatch is in transition");
			return true;
		}
		for (size_t j = 0; enable && o->state != KLP_UNPATCHED && j < o->nr; j++)
			for (size_t k = 0; k < lp->nr; k++)
				if (o->olds[j] == lp->olds[k]) {
					snprintf(msg, len, "'%s' is replaced by another enabled "
						 "livepatch", lp->olds[k]->name);
					return true;
				}
	}
	for (size_t k = 0; enable && k < lp->nr; k++)
		if (memcmp(f->mem + (lp->olds[k]->addr - FAKE_MEM_BASE), "\x0f\x1f\x44\x00\x00", 5)) {
			snprintf(msg, len, "unexpected op at %s", lp->olds[k]->name);
			return true;
		}
	return false;
}

static void fake_lp_try(struct fake_lp *lp)
{
	struct klp_retry *r;

	if (lp->state != KLP_PATCHING && lp->state != KLP_UNPATCHING)
		return;
	if (lp->left && (!lp->stuck || lp->forced))
		lp->left--;
	if (!lp->left)
		lp->state = lp->state == KLP_PATCHING ? KLP_PATCHED : KLP_UNPATCHED;
	if (lp->nr_hist < KLP_HISTORY) {
		r = &lp->hist[lp->nr_hist++];
		*r = (struct klp_retry){ lp->retries, 0.01 * lp->retries, !lp->left, lp->left };
	}
	lp->retries++;
}

static void fake_lp_begin(struct fake_lp *lp, enum klp_state to)
{
	lp->state = to;
	lp->retries = 0;
	lp->nr_hist = 0;
	lp->left = FAKE_LP_RETRIES;
	lp->syncs += 3;
	lp->us += 2.5;
	lp->s = (struct klp_straggler){ .task = 1, .vcpu = 0, .reason = "sleeping on function",
					.addr = lp->old->addr + 3 };
	snprintf(lp->s.func, sizeof(lp->s.func), "%s", lp->old->name);
	snprintf(lp->s.detail, sizeof(lp->s.detail), "%s+0x3", lp->old->name);
	fake_lp_try(lp);
}

static int fake_lp_op(void *be, void *h, char op, struct campaign_patch_out *out)
{
	struct fake_be *f = be;
	struct fake_lp *lp = h;
	bool begin = (op == 'e' && lp->state == KLP_UNPATCHED) ||
		     (op == 'd' && lp->state == KLP_PATCHED && !lp->forced);

	out->ok = true;
	if (begin && fake_lp_refused(f, lp, op == 'e', out->error, sizeof(out->error)))
		;	/* refused: out->error says why */
	else if (op == 'e' && lp->state == KLP_UNPATCHED)
		fake_lp_begin(lp, KLP_PATCHING);
	else if (op == 'd' && lp->forced)
		snprintf(out->error, sizeof(out->error), "forced: it can never be removed");
	else if (op == 'd' && lp->state == KLP_PATCHED)
		fake_lp_begin(lp, KLP_UNPATCHING);
	else if ((op == 'd' && lp->state == KLP_PATCHING) ||
		 (op == 'e' && lp->state == KLP_UNPATCHING))
		lp->state = op == 'd' ? KLP_UNPATCHING : KLP_PATCHING;	/* reversal */
	else if (op == 'f' && (lp->state == KLP_PATCHING || lp->state == KLP_UNPATCHING)) {
		lp->forced = true;
		lp->left = 1;
		fake_lp_try(lp);
	} else if (op == 'f')
		snprintf(out->error, sizeof(out->error), "no transition to force");
	else if (op == 't')
		fake_lp_try(lp);
	out->ok = !out->error[0];
	return 0;
}

static void fake_lp_info(void *be, void *h, struct klp_info *in)
{
	struct fake_lp *lp = h;
	bool moving = lp->state == KLP_PATCHING || lp->state == KLP_UNPATCHING;

	(void)be;
	*in = (struct klp_info){ .state = lp->state, .forced = lp->forced,
				 .retries = lp->retries, .switched = lp->retries && !lp->left,
				 .syncs = lp->syncs, .us = lp->us, .nr_pending = moving && lp->left,
				 .pending = &lp->s, .nr_history = lp->nr_hist,
				 .history = lp->hist };
}

/* Every live probe is hit hits_per_run times, as if by the guest; livepatches retry. */
static void fake_run(void *be, unsigned int ms)
{
	struct fake_be *f = be;

	(void)ms;
	f->iterations += 100;
	fake_hit_all(f, f->hits_per_run);
	for (unsigned int i = 0; i < f->nr_lps; i++)
		fake_lp_try(&f->lps[i]);
}

static int fake_stats(void *be, struct campaign_guest_stats *st)
{
	struct fake_be *f = be;

	memset(st, 0, sizeof(*st));
	st->iterations = f->iterations;
	st->healthy = true;
	st->nr_tasks = 2;
	st->tasks[0] = (struct campaign_task_stats){ 0, 0, f->iterations / 2, 0 };
	st->tasks[1] = (struct campaign_task_stats){ 1, 8, f->iterations / 2, 0 };
	return 0;
}

static void fake_destroy(void *be)
{
	((struct fake_be *)be)->destroyed = true;
}

bool fake_be_booted(const struct fake_be *f)
{
	return f->booted;
}

bool fake_be_pristine(const struct fake_be *f)
{
	for (size_t i = 0; i < FAKE_NR_KEYS; i++)
		if (f->keys[i].enabled != fake_keys_init[i].enabled)
			return false;
	return f->sc_current == fake_sc_targets[0] && !memcmp(f->mem, f->orig, sizeof(f->mem));
}

unsigned int fake_be_live_patches(const struct fake_be *f, bool forced_too)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < f->nr_lps; i++)
		n += f->lps[i].state != KLP_UNPATCHED && (forced_too || !f->lps[i].forced);
	return n;
}

unsigned int fake_be_live_probes(const struct fake_be *f)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < f->nr_probes; i++)
		n += f->probes[i].live;
	return n;
}

void fake_be_set_hits_per_run(struct fake_be *f, unsigned int n)
{
	f->hits_per_run = n;
}

void fake_be_set_lp_stuck(struct fake_be *f, bool stuck)
{
	f->lp_stuck = stuck;
}

void fake_be_free(struct fake_be *f)
{
	if (f)
		symtab_free(f->st);
	free(f);
}

const struct campaign_ops fake_ops = {
	.boot = fake_boot,
	.symtab = fake_symtab,
	.read = fake_read,
	.patch = fake_patch,
	.unpatch = fake_unpatch,
	.probe_add = fake_probe_add,
	.probe_remove = fake_probe_remove,
	.probe_counts = fake_probe_counts,
	.probe_reap = fake_probe_reap,
	.run = fake_run,
	.stats = fake_stats,
	.destroy = fake_destroy,
	.static_keys = fake_static_keys,
	.static_key_set = fake_static_key_set,
	.static_calls = fake_static_calls,
	.static_call_update = fake_static_call_update,
	.livepatch_new = fake_lp_new,
	.livepatch_op = fake_lp_op,
	.livepatch_info = fake_lp_info,
};
