// SPDX-License-Identifier: MIT
/*
 * torture_probe.c - `vmpoke torture --kinds probe`: place and remove INT3
 * probes (probe.h) on every instruction of the guest's lib_* functions
 * while its tasks call them and check every result.  Each round toggles
 * one random instruction: a probe there is removed, else one is placed,
 * with a counting handler or none, some with max_hits.  What a run must
 * see (else it counts a failure):
 *   - every handler call saw rip at its probe and the handlers were
 *     called exactly as often as their probes counted hits;
 *   - no probe counted more hits than its max_hits;
 *   - after the last removal the functions' text is byte for byte what
 *     it was before the first probe;
 * besides the guest's own checks and faults, which torture.c counts.  A
 * point the engine refuses by name (probe_reasons[]) is reported once and
 * never tried again, as a site transition is.
 *
 * --kinds optprobe (issue 9): probes are placed as kind AUTO, so every
 * point that allows it becomes a JMP to a detour (counting, or ringing the
 * doorbell for the handler), and a round on a live probe unoptimizes or
 * re-optimizes it half the time instead of removing it.  A point that
 * stays INT3 must say why (probe_opt_refusal()); shadow_busy on a
 * re-optimize is a legal outcome under load.
 */
#include <capstone/capstone.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"
#include "symtab.h"
#include "torture.h"

#define TP_PREFIX	"lib_"
#define TP_MAX_LIVE	16	/* at this many live probes a round removes one */

struct tp_fn {
	uint64_t addr, size;
	uint8_t *orig;			/* the text before any probe */
};

struct tp_point {
	uint64_t addr;
	struct probe *live;		/* NULL: none placed now */
	bool handler;			/* the live probe counts in tp_count() */
	bool refused;			/* the engine refused it once */
};

/* A probe once placed: its counts are read after its removal. */
struct tp_placed {
	struct probe *pr;
	bool handler;
	uint64_t max_hits;
};

struct torture_probes {
	struct patcher *p;
	struct vm *vm;
	struct tp_fn *fns;
	size_t nr_fns;
	struct tp_point *pts;
	size_t nr_pts, nr_live;
	struct tp_placed *placed;
	size_t nr_placed, cap_placed;
	atomic_uint_fast64_t handler_calls, wrong_rip;
	bool optimize;			/* --kinds optprobe */
	struct torture_probe_report r;
};

uint64_t torture_probes_placed(const struct torture_probes *tp)
{
	return tp->r.placed;
}

/* The counting handler: runs on the vCPU thread, so only atomics. */
static enum probe_verdict tp_count(struct probe_hit_ctx *ctx, void *opaque)
{
	struct torture_probes *tp = opaque;

	atomic_fetch_add(&tp->handler_calls, 1);
	if (ctx->regs->rip != probe_addr(ctx->probe))
		atomic_fetch_add(&tp->wrong_rip, 1);
	return PROBE_RESUME;
}

/* Every instruction start of fn, from Capstone, as a point. */
static int tp_add_points(struct torture_probes *tp, const struct tp_fn *fn)
{
	cs_insn *insn;
	size_t n;
	csh h;

	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK) {
		vmm_error("torture: probe: cannot start Capstone");
		return -1;
	}
	n = cs_disasm(h, fn->orig, fn->size, fn->addr, 0, &insn);
	for (size_t i = 0; i < n; i++) {
		struct tp_point *pt = realloc(tp->pts, (tp->nr_pts + 1) * sizeof(*pt));

		if (!pt) {
			cs_free(insn, n);
			cs_close(&h);
			vmm_error("torture: out of memory");
			return -1;
		}
		tp->pts = pt;
		tp->pts[tp->nr_pts++] = (struct tp_point){ .addr = insn[i].address };
	}
	if (n)
		cs_free(insn, n);
	cs_close(&h);
	return 0;
}

static int tp_load(struct torture_probes *tp)
{
	const struct symtab *st = vmm_symtab(tp->vm);
	size_t n = st ? symtab_count(st) : 0;

	for (size_t i = 0; i < n; i++) {
		const struct sym *s = symtab_at(st, i);
		struct tp_fn *fn;

		if ((s->type != 'T' && s->type != 't') || !s->size || s->size > (1u << 20) ||
		    strncmp(s->name, TP_PREFIX, strlen(TP_PREFIX)))
			continue;
		fn = realloc(tp->fns, (tp->nr_fns + 1) * sizeof(*fn));
		if (!fn) {
			vmm_error("torture: out of memory");
			return -1;
		}
		tp->fns = fn;
		fn = &tp->fns[tp->nr_fns];
		fn->addr = s->addr;
		fn->size = s->size;
		fn->orig = malloc(s->size);
		if (!fn->orig) {
			vmm_error("torture: out of memory");
			return -1;
		}
		tp->nr_fns++;
		if (vmm_gva_read(tp->vm, s->addr, fn->orig, s->size)) {
			vmm_error("torture: probe: %s is not mapped", s->name);
			return -1;
		}
		if (tp_add_points(tp, fn))
			return -1;
	}
	if (!tp->nr_pts) {
		vmm_error("torture: the image has no " TP_PREFIX "* functions to probe");
		return -1;
	}
	tp->r.points = (unsigned int)tp->nr_pts;
	return 0;
}

struct torture_probes *torture_probes_new(struct patcher *p, struct vm *vm, bool optimize)
{
	struct torture_probes *tp = calloc(1, sizeof(*tp));

	if (!tp) {
		vmm_error("torture: out of memory");
		return NULL;
	}
	tp->p = p;
	tp->vm = vm;
	tp->optimize = optimize;
	if (tp_load(tp)) {
		torture_probes_free(tp);
		return NULL;
	}
	return tp;
}

static int tp_remove(struct torture_probes *tp, struct tp_point *pt)
{
	char msg[256];

	if (probe_remove(pt->live, msg, sizeof(msg))) {
		vmm_error("torture: probe: %s", msg);
		return -1;
	}
	pt->live = NULL;
	tp->nr_live--;
	tp->r.removed++;
	return 0;
}

/* Refusals that say the engine or guest failed, not that the point is bad. */
static bool tp_reason_fatal(const char *reason)
{
	return !reason || !strcmp(reason, "sync") || !strcmp(reason, "fault") ||
	       !strcmp(reason, "no_memory") || !strcmp(reason, "in_handler");
}

/* optprobe: optimized, or INT3 with a named rule; anything else is a failure. */
static int tp_note_kind(struct torture_probes *tp, struct probe *pr)
{
	const char *why = probe_opt_refusal(pr);

	if (probe_kind_of(pr) == PROBE_KIND_OPTIMIZED) {
		tp->r.optimized++;
		return 0;
	}
	if (!why[0]) {
		vmm_error("torture: probe 0x%" PRIx64 " stayed INT3 without a reason",
			  probe_addr(pr));
		tp->r.failures++;
	} else if (tp_reason_fatal(why)) {
		vmm_error("torture: optimizing 0x%" PRIx64 ": %s", probe_addr(pr), why);
		return -1;
	}
	tp->r.opt_refused++;
	return 0;
}

/* optprobe: a live probe switches kind instead of going away. */
static int tp_switch(struct torture_probes *tp, struct tp_point *pt)
{
	const char *why = NULL;
	char msg[512];

	if (probe_removed(pt->live))	/* reaped at max_hits: nothing to switch */
		return tp_remove(tp, pt);
	if (probe_kind_of(pt->live) == PROBE_KIND_OPTIMIZED) {
		if (probe_unoptimize(pt->live, msg, sizeof(msg))) {
			vmm_error("torture: probe: %s", msg);
			return -1;
		}
		tp->r.unoptimized++;
		return 0;
	}
	if (probe_optimize(pt->live, &why, msg, sizeof(msg))) {
		if (tp_reason_fatal(why)) {
			vmm_error("torture: probe: %s", msg);
			return -1;
		}
		tp->r.opt_refused++;
		return 0;
	}
	tp->r.optimized++;
	return 0;
}

static int tp_place(struct torture_probes *tp, struct tp_point *pt, uint64_t *rng)
{
	uint64_t dice = torture_rand(rng);
	struct probe_opts o = {
		.handler = dice & 1 ? tp_count : NULL,
		.opaque = tp,
		.max_hits = (dice >> 1) % 4 ? 0 : 1 + (dice >> 8) % 64,
		.kind = tp->optimize ? PROBE_KIND_AUTO : PROBE_KIND_INT3,
	};
	const char *reason = NULL;
	struct tp_placed *pl;
	char msg[512];

	if (tp->nr_placed == tp->cap_placed) {
		size_t cap = tp->cap_placed ? 2 * tp->cap_placed : 256;

		pl = realloc(tp->placed, cap * sizeof(*pl));
		if (!pl) {
			vmm_error("torture: out of memory");
			return -1;
		}
		tp->placed = pl;
		tp->cap_placed = cap;
	}
	pt->live = probe_add(tp->p, pt->addr, &o, &reason, msg, sizeof(msg));
	if (!pt->live) {
		if (tp_reason_fatal(reason)) {
			vmm_error("torture: probe: %s", msg);
			return -1;
		}
		vmm_info("torture: probe refused: %s", msg);
		pt->refused = true;
		tp->r.refused++;
		return 0;
	}
	pt->handler = o.handler != NULL;
	if (tp->optimize && tp_note_kind(tp, pt->live))
		return -1;
	tp->placed[tp->nr_placed++] = (struct tp_placed){ pt->live, pt->handler, o.max_hits };
	tp->nr_live++;
	tp->r.placed++;
	return 0;
}

int torture_probes_step(struct torture_probes *tp, uint64_t *rng)
{
	size_t i = (size_t)(torture_rand(rng) % tp->nr_pts);

	/* At the cap, walk on to a live one: it is removed. */
	for (size_t n = 0; tp->nr_live >= TP_MAX_LIVE && n < tp->nr_pts; n++) {
		if (tp->pts[i].live)
			break;
		i = (i + 1) % tp->nr_pts;
	}
	if (tp->pts[i].live && tp->optimize && tp->nr_live < TP_MAX_LIVE &&
	    torture_rand(rng) % 2)
		return tp_switch(tp, &tp->pts[i]);
	if (tp->pts[i].live)
		return tp_remove(tp, &tp->pts[i]);
	if (tp->pts[i].refused)
		return 0;
	return tp_place(tp, &tp->pts[i], rng);
}

/* The promises of the header comment, counted in r->failures. */
static void tp_verify(struct torture_probes *tp)
{
	struct torture_probe_report *r = &tp->r;
	uint64_t handler_hits = 0;

	for (size_t i = 0; i < tp->nr_placed; i++) {
		const struct tp_placed *pl = &tp->placed[i];
		struct probe_counts c;

		probe_counts(pl->pr, &c);
		r->hits += c.hits;
		r->missed += c.missed;
		if (pl->handler)
			handler_hits += c.hits;
		if (pl->max_hits && c.hits > pl->max_hits) {
			vmm_error("torture: probe 0x%" PRIx64 ": %" PRIu64 " hits, max_hits %"
				  PRIu64, probe_addr(pl->pr), c.hits, pl->max_hits);
			r->failures++;
		}
	}
	r->handler_calls = atomic_load(&tp->handler_calls);
	if (r->handler_calls != handler_hits) {
		vmm_error("torture: probe handlers ran %" PRIu64 " times for %" PRIu64
			  " hits", r->handler_calls, handler_hits);
		r->failures++;
	}
	if (atomic_load(&tp->wrong_rip)) {
		vmm_error("torture: %" PRIu64 " probe handler calls saw rip elsewhere than "
			  "their probe", (uint64_t)atomic_load(&tp->wrong_rip));
		r->failures++;
	}
}

/* After the last removal: each function's text as it was. */
static void tp_verify_text(struct torture_probes *tp)
{
	for (size_t i = 0; i < tp->nr_fns; i++) {
		const struct tp_fn *fn = &tp->fns[i];
		uint8_t *now = malloc(fn->size);

		if (!now || vmm_gva_read(tp->vm, fn->addr, now, fn->size) ||
		    memcmp(now, fn->orig, fn->size)) {
			char where[96];

			vmm_error("torture: probe: %s does not read back as it was",
				  vmm_symbolize(tp->vm, fn->addr, where, sizeof(where)));
			tp->r.failures++;
		}
		free(now);
	}
}

int torture_probes_finish(struct torture_probes *tp, bool guest_alive,
			  struct torture_probe_report *r)
{
	int ret = 0;

	for (size_t i = 0; i < tp->nr_pts && guest_alive; i++)
		if (tp->pts[i].live && tp_remove(tp, &tp->pts[i]))
			ret = -1;
	tp_verify(tp);
	if (guest_alive && !ret)
		tp_verify_text(tp);
	*r = tp->r;
	return ret;
}

void torture_probes_free(struct torture_probes *tp)
{
	if (!tp)
		return;
	for (size_t i = 0; i < tp->nr_fns; i++)
		free(tp->fns[i].orig);
	free(tp->fns);
	free(tp->pts);
	free(tp->placed);
	free(tp);
}
