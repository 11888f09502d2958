// SPDX-License-Identifier: MIT
/*
 * optprobe.c - optimized probes (issue 9; Linux's optprobes, from outside
 * the guest): an armed INT3 probe's head becomes a JMP rel32 to a detour
 * in the VMM-owned XOL region, and a hit costs no VM exit at all.
 *
 * The detour (OPTPROBE_SIZE bytes, OPTPROBE_SLOTS contiguous XOL slots):
 *
 *   base:        lea -128(%rsp),%rsp       step over a red zone
 *                pushfq; push %rax; push %rcx
 *                mov %gs:vcpu,%eax         the ABI's per-vCPU block: GS is
 *                and $63,%eax              its base at CPL3 too
 *                lea counters(%rip),%rcx
 *                incq (%rcx,%rax,8)        per-vCPU: one instruction, so a
 *                                          preempted task loses no count and
 *                                          no other vCPU writes this word
 *                pop %rcx; pop %rax; popfq; lea 128(%rsp),%rsp
 *   body:        the displaced region, relocated (relocate_region.c),
 *                then JMP addr + len (or push literal; jmp callee)
 *   base + 256:  u64 counters[VMPOKE_MAX_VCPUS], read by the VMM
 *
 * With a handler the detour cannot count alone: its first instruction is
 * `mov %rax, VMPOKE_MMIO_CMD(VMPOKE_HC_PROBE)` (48 A3 imm64), one exit
 * with every register still the probed context's; a LIVE_PROBE_DOORBELL
 * entry at the address after it sends the exit to probe_hit() as a hit on
 * the head, which counts, runs the handler and resumes at body (or where
 * the handler said).  No #BP, no CPL0 stub: cheaper than an INT3 hit.
 *
 * Optimizing (the probe is already an armed INT3 probe, p->lock held):
 *   1. relocate the region and write the detour (its slots are FREE:
 *      nothing executes them, a plain write is safe);
 *   2. pr->via = body, sync: from now on an INT3 hit runs the handler
 *      path and resumes in the detour's copy, never in the INT3 probe's
 *      slot, which would jump back into the region (setup_detour_execution);
 *   3. the probe shadow (seed 000): no vCPU RIP, #BP frame or preempted
 *      task inside (addr, addr + len) or in the INT3 probe's slot, retried
 *      as batches are; still busy: stay INT3 ("shadow_busy");
 *   4. the head entry widens to the region (one snapshot), so site_recover
 *      gives decoders the original bytes and nothing else patches there;
 *   5. the JMP through the protocol: INT3, tail, sync, head E9, sync.
 * Unoptimizing: INT3 + the original tail through the protocol (final head
 * INT3), via = 0, sync, the entry narrows back, and the detour is retired:
 * freed only when the busy-range check finds nobody inside it (a task may
 * be preempted in it for as long as it likes).  Its counters are copied
 * to the host then, so no hit is ever lost.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "probe_internal.h"
#include "relocate.h"
#include "symtab.h"

#define OPTPROBE_JMP_LEN	5

_Static_assert(VMPOKE_MAX_VCPUS == 64, "the prologue masks the vCPU id with 63");
_Static_assert(OPTPROBE_SIZE % PROBE_SLOT_SIZE == 0, "detours are whole slots");

static void put32(uint8_t *p, int64_t v)
{
	uint32_t u = (uint32_t)(int32_t)v;

	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
}

size_t optprobe_prologue(uint64_t base, uint8_t *out, size_t outcap)
{
	static const uint8_t tmpl[] = {
		0x48, 0x8d, 0x64, 0x24, 0x80,			/* lea -0x80(%rsp),%rsp */
		0x9c, 0x50, 0x51,				/* pushfq; push %rax; push %rcx */
		0x65, 0x8b, 0x04, 0x25, 0, 0, 0, 0,		/* mov %gs:vcpu,%eax */
		0x83, 0xe0, VMPOKE_MAX_VCPUS - 1,		/* and $63,%eax */
		0x48, 0x8d, 0x0d, 0, 0, 0, 0,			/* lea counters(%rip),%rcx */
		0x48, 0xff, 0x04, 0xc1,				/* incq (%rcx,%rax,8) */
		0x59, 0x58, 0x9d,				/* pop %rcx; pop %rax; popfq */
		0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0,		/* lea 0x80(%rsp),%rsp */
	};
	const size_t vcpu_at = 12, lea_end = 26;

	if (outcap < sizeof(tmpl))
		return 0;
	memcpy(out, tmpl, sizeof(tmpl));
	put32(out + vcpu_at, offsetof(struct vmpoke_percpu, vcpu));
	put32(out + lea_end - 4, (int64_t)OPTPROBE_CODE_SIZE - (int64_t)lea_end);
	(void)base;	/* the counters are RIP-relative: the same bytes anywhere */
	return sizeof(tmpl);
}

/* Live entries other than the probe's own head, as relocator ranges. */
static size_t optprobe_live_ranges(struct patcher *p, const struct probe *pr,
				   struct relocate_range **out)
{
	const struct poke_snapshot *s = atomic_load_explicit(&p->table.cur,
							     memory_order_acquire);
	size_t n = 0;

	*out = NULL;
	if (!s || !s->n)
		return 0;
	*out = calloc(s->n, sizeof(**out));
	if (!*out)
		return 0;
	for (size_t i = 0; i < s->n; i++) {
		if (s->e[i].addr == pr->addr)
			continue;
		(*out)[n].lo = s->e[i].addr;
		(*out)[n].hi = s->e[i].addr + (s->e[i].len ? s->e[i].len : 1);
		n++;
	}
	return n;
}

static void optprobe_unuse(struct probe_xol *x, int slot)
{
	for (int i = 0; i < OPTPROBE_SLOTS; i++)
		xol_unuse(x, slot + i);
}

static void optprobe_retire(struct probe *pr, struct optprobe_detour *d)
{
	atomic_store(&d->state, DETOUR_RETIRED);
	d->next = pr->retired;
	atomic_store_explicit(&pr->retired, d, memory_order_release);
}

/*
 * The ranges of the probe shadow: (addr, addr + len), and every piece of
 * out-of-line code that jumps back into the original text when it is
 * done - the probe's own INT3 slot, every PENDING slot (a removed probe's,
 * which may sit at or before addr: its JMP back or closing INT3 lands at
 * that probe's addr + insn length), every retired detour not yet freed
 * (its JMP back lands at its region's end).  A context in any of them may
 * come back into the middle of the new JMP, seed 000's bug; which of them
 * aim inside is not worth tracking, they are few and short-lived.
 */
static size_t optprobe_shadow_ranges(struct patcher *p, struct probe *pr, size_t len,
				     struct busy_range **out)
{
	struct probe_xol *x = probe_xol_of(p);
	size_t n = 0, cap = 2 + (x ? x->nslots : 0);
	struct busy_range *r = calloc(cap, sizeof(*r));

	*out = r;
	if (!r)
		return 0;
	r[n].lo = pr->addr + 1;
	r[n].hi = pr->addr + len;
	r[n].own_int3 = pr->addr + 1;
	snprintf(r[n].what, sizeof(r[n].what), "displaced range of %s (%zu bytes)",
		 pr->where, len);
	n++;
	if (pr->slot >= 0) {
		r[n].lo = pr->slot_addr;
		r[n].hi = pr->slot_addr + PROBE_SLOT_SIZE;
		snprintf(r[n].what, sizeof(r[n].what), "out-of-line slot of %s", pr->where);
		n++;
	}
	for (unsigned int i = 0; x && i < x->nslots && n < cap; i++) {
		if (x->state[i] != XOL_PENDING)
			continue;
		r[n].lo = xol_slot_addr(x, (int)i);
		r[n].hi = r[n].lo + PROBE_SLOT_SIZE;
		snprintf(r[n].what, sizeof(r[n].what), "pending slot %u", i);
		n++;
	}
	for (struct probe *q = probe_list(p); q && n < cap; q = q->next) {
		for (struct optprobe_detour *d = q->retired; d && n < cap; d = d->next) {
			if (atomic_load(&d->state) != DETOUR_RETIRED)
				continue;
			r[n].lo = d->base;
			r[n].hi = d->base + OPTPROBE_CODE_SIZE;
			snprintf(r[n].what, sizeof(r[n].what), "retired detour of %s", q->where);
			n++;
		}
	}
	return n;
}

/* Nobody inside the shadow: 0; busy after the retries: 1; -1 on error. */
static int optprobe_shadow(struct patcher *p, struct probe *pr, size_t len,
			   char *why, size_t whylen)
{
	struct busy_range *r;
	size_t n = optprobe_shadow_ranges(p, pr, len, &r);
	int ret = -1;

	if (!n) {
		snprintf(why, whylen, "out of memory");
		free(r);
		return -1;
	}
	for (unsigned int attempt = 0;; attempt++) {
		ret = busy_scan(p, r, n, why, whylen, NULL);
		if (ret <= 0 || attempt >= p->opts.shadow_retries)
			break;
		atomic_fetch_add(&p->shadow_retries, 1);
		usleep(p->opts.shadow_backoff_us);
	}
	free(r);
	return ret;
}

static int optprobe_refuse(struct probe *pr, const char **reason, const char *name,
			   char *detail, size_t dlen, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static int optprobe_refuse(struct probe *pr, const char **reason, const char *name,
			   char *detail, size_t dlen, const char *fmt, ...)
{
	va_list ap;

	*reason = name;
	snprintf(pr->opt_refused, sizeof(pr->opt_refused), "%s", name);
	if (detail && dlen && fmt) {
		va_start(ap, fmt);
		vsnprintf(detail, dlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* The doorbell a detour with a handler starts with; its length. */
static size_t optprobe_doorbell(uint8_t *out)
{
	uint64_t a = VMPOKE_MMIO_CMD(VMPOKE_HC_PROBE);

	out[0] = 0x48;		/* mov %rax, moffs64 */
	out[1] = 0xa3;
	for (int i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(a >> (8 * i));
	return 10;
}

/* With a handler: publish the doorbell's entry (before anything can ring). */
static int optprobe_publish_doorbell(struct patcher *p, struct probe *pr,
				     struct optprobe_detour *d)
{
	struct poke_live e;

	memset(&e, 0, sizeof(e));
	e.addr = d->body;
	e.len = 1;
	e.role = LIVE_PROBE_DOORBELL;
	e.probe = pr;
	if (traptable_add_live(&p->table, &e, 1))
		return -1;
	d->doorbell = e.addr;
	return 0;
}

/*
 * gcc moves unlikely blocks to "<fn>.cold", which jump back into <fn>: for
 * jump_into_range that text is part of the function too (the relocator
 * sees only <fn>).  1 with *off if one of its direct jumps lands in
 * (addr, addr + 5), 0 if none (or no such part), -1 if it cannot be read.
 */
static int optprobe_cold_jumps(struct patcher *p, const struct probe *pr, uint64_t *off)
{
	const struct symtab *st = vmm_symtab(p->vm);
	const struct sym *fn, *cold;
	uint64_t o, from, to = 0;
	char name[160];
	uint8_t *b;

	fn = st ? symtab_lookup(st, pr->addr, &o) : NULL;
	if (!fn || snprintf(name, sizeof(name), "%s.cold", fn->name) >= (int)sizeof(name))
		return 0;
	cold = symtab_find(st, name);
	if (!cold || !cold->size || cold->size > POKE_MAX_FUNC_SIZE)
		return 0;
	b = malloc(cold->size);
	if (!b || vmm_gva_read(p->vm, cold->addr, b, cold->size)) {
		free(b);
		return -1;
	}
	site_recover(p, b, cold->addr, cold->size);
	from = decode_jump_into(b, cold->size, cold->addr, pr->addr,
				pr->addr + OPTPROBE_JMP_LEN, 0, 0, &to);
	free(b);
	if (!from)
		return 0;
	*off = to - pr->addr;
	return 1;
}

int optprobe_optimize_locked(struct patcher *p, struct probe *pr, const uint8_t *code,
			     uint64_t fnaddr, size_t fnsize, const char **reason,
			     char *detail, size_t dlen)
{
	struct probe_xol *x = probe_xol_of(p);
	uint8_t buf[OPTPROBE_SIZE], jmp[OPTPROBE_JMP_LEN];
	struct relocate_range *live = NULL;
	struct optprobe_detour *d;
	struct relocate_region rr;
	struct poke_live wide;
	char why[768];
	size_t n, nlive;
	uint64_t base, coldoff = 0;
	int64_t rel;
	int slot, busy;

	pr->opt_refused[0] = '\0';
	if (pr->detour)
		return 0;
	if (pr->opts.handler && patcher_addr_is_cpl0(p, pr->addr))
		return optprobe_refuse(pr, reason, "has_handler", detail, dlen,
				       "a detour's doorbell is a CPL3 MMIO store; this "
				       "is CPL0 text");
	if (pr->opts.max_hits && !pr->opts.handler)
		return optprobe_refuse(pr, reason, "max_hits", detail, dlen,
				       "a detour counts without an exit and cannot "
				       "stop at max_hits");
	if (!x || !x->ok)
		return optprobe_refuse(pr, reason, "no_slot", detail, dlen,
				       "no VMM-owned XOL region in the image");
	switch (optprobe_cold_jumps(p, pr, &coldoff)) {
	case 1:
		optprobe_refuse(pr, reason, "jump_into_range", detail, dlen,
				"a jump in the function's .cold part lands at addr+0x%"
				PRIx64, coldoff);
		snprintf(pr->opt_refused, sizeof(pr->opt_refused),
			 "jump_into_range@+0x%" PRIx64, coldoff);
		return -1;
	case -1:
		return optprobe_refuse(pr, reason, "fault", detail, dlen,
				       "the function's .cold part is not readable");
	default:
		break;
	}
	slot = xol_alloc_n(p, x, OPTPROBE_SLOTS, why, sizeof(why));
	if (slot < 0)
		return optprobe_refuse(pr, reason, "no_slot", detail, dlen, "%s", why);
	base = xol_slot_addr(x, slot);
	memset(buf, 0, sizeof(buf));
	memset(buf, POKE_INT3, OPTPROBE_CODE_SIZE);
	n = pr->opts.handler ? optprobe_doorbell(buf) :
	    optprobe_prologue(base, buf, OPTPROBE_CODE_SIZE);
	nlive = optprobe_live_ranges(p, pr, &live);
	if (relocate_region(code, fnsize, fnaddr, pr->addr, OPTPROBE_JMP_LEN, base + n,
			    live, nlive, buf + n, OPTPROBE_CODE_SIZE - n, &rr, reason,
			    detail, dlen)) {
		free(live);
		optprobe_unuse(x, slot);
		if (!strcmp(*reason, "jump_into_range"))
			snprintf(pr->opt_refused, sizeof(pr->opt_refused),
				 "jump_into_range@+0x%" PRIx64, rr.bad_off);
		else
			snprintf(pr->opt_refused, sizeof(pr->opt_refused), "%s", *reason);
		return -1;
	}
	free(live);
	rel = (int64_t)(base - (pr->addr + OPTPROBE_JMP_LEN));
	if (rr.len > POKE_MAX_LEN || rel < INT32_MIN || rel > INT32_MAX) {
		optprobe_unuse(x, slot);
		return optprobe_refuse(pr, reason, rr.len > POKE_MAX_LEN ? "too_long" :
				       "rip_rel_unreachable", detail, dlen,
				       "region of %zu bytes, detour at 0x%" PRIx64,
				       rr.len, base);
	}
	d = calloc(1, sizeof(*d));
	if (!d || vmm_gva_write(p->vm, base, buf, sizeof(buf))) {
		free(d);
		optprobe_unuse(x, slot);
		return optprobe_refuse(pr, reason, d ? "fault" : "no_memory", detail, dlen,
				       "cannot write the detour at 0x%" PRIx64, base);
	}
	d->slot = slot;
	d->base = base;
	d->body = base + n;
	if (pr->opts.handler && optprobe_publish_doorbell(p, pr, d)) {
		free(d);
		optprobe_unuse(x, slot);
		return optprobe_refuse(pr, reason, "no_memory", detail, dlen,
				       "cannot publish the doorbell's entry");
	}

	/* 2. INT3 hits take the detour's copy; after the sync, every hook does */
	atomic_store(&pr->via, d->body);
	if (vmm_sync(p->vm)) {
		atomic_store(&pr->via, 0);
		optprobe_retire(pr, d);
		return optprobe_refuse(pr, reason, "sync", detail, dlen,
				       "a vCPU did not acknowledge a sync");
	}
	/* 3. the probe shadow (skipped only by the torture injection) */
	busy = p->opts.inject == POKE_INJECT_NO_OPTIMIZE_SHADOW ? 0 :
	       optprobe_shadow(p, pr, rr.len, why, sizeof(why));
	if (busy) {
		atomic_store(&pr->via, 0);
		vmm_sync(p->vm);
		optprobe_retire(pr, d);		/* INT3 hits may have run it */
		if (busy > 0)
			atomic_fetch_add(&p->shadow_aborts, 1);
		return optprobe_refuse(pr, reason, busy > 0 ? "shadow_busy" : "sync",
				       detail, dlen, "%s", why);
	}
	/* 4. the head entry covers the region, with its original bytes */
	wide = pr->head;
	wide.len = (uint8_t)rr.len;
	memcpy(wide.old, code + (pr->addr - fnaddr), rr.len);
	if (traptable_replace(&p->table, &wide)) {
		atomic_store(&pr->via, 0);
		vmm_sync(p->vm);
		optprobe_retire(pr, d);
		return optprobe_refuse(pr, reason, "no_memory", detail, dlen,
				       "cannot widen the trap entry");
	}
	pr->head = wide;
	/* 5. the JMP, through the protocol */
	jmp[0] = 0xe9;
	put32(jmp + 1, rel);
	if (poke_rewrite_locked(p, pr->addr, jmp, sizeof(jmp), pr->where, why,
				sizeof(why))) {
		/* as far as it got: put INT3 + the original tail back */
		uint8_t back[OPTPROBE_JMP_LEN];

		memcpy(back, wide.old, sizeof(back));
		back[0] = POKE_INT3;
		poke_rewrite_locked(p, pr->addr, back, sizeof(back), pr->where, NULL, 0);
		pr->detour = d;
		pr->region_len = (uint8_t)rr.len;
		return optprobe_refuse(pr, reason, "sync", detail, dlen, "%s", why);
	}
	pr->region_len = (uint8_t)rr.len;
	atomic_store_explicit(&pr->detour, d, memory_order_release);
	return 0;
}

int optprobe_unoptimize_locked(struct patcher *p, struct probe *pr, char *msg,
			       size_t msglen)
{
	struct optprobe_detour *d = pr->detour;
	uint8_t back[OPTPROBE_JMP_LEN];
	enum poke_err err;

	if (!d)
		return 0;
	/* INT3 + the original tail; the final head stays INT3 */
	memcpy(back, pr->head.old, sizeof(back));
	back[0] = POKE_INT3;
	err = poke_rewrite_locked(p, pr->addr, back, sizeof(back), pr->where, msg, msglen);
	if (err)
		return -1;	/* still optimized as far as anyone can tell */
	/* INT3 hits run the INT3 probe's own way again */
	atomic_store(&pr->via, 0);
	if (vmm_sync(p->vm)) {
		snprintf(msg, msglen, "%s: sync after unoptimizing timed out", pr->where);
		return -1;
	}
	pr->head.len = pr->insn.len;
	traptable_replace(&p->table, &pr->head);
	pr->region_len = 0;
	atomic_store_explicit(&pr->detour, NULL, memory_order_release);
	optprobe_retire(pr, d);
	optprobe_reap_locked(p, pr);
	return 0;
}

static void optprobe_read_counters(struct patcher *p, const struct optprobe_detour *d,
				   uint64_t *c)
{
	if (vmm_gva_read(p->vm, d->base + OPTPROBE_CODE_SIZE, c,
			 sizeof(uint64_t) * VMPOKE_MAX_VCPUS))
		memset(c, 0, sizeof(uint64_t) * VMPOKE_MAX_VCPUS);
}

void optprobe_reap_locked(struct patcher *p, struct probe *pr)
{
	struct probe_xol *x = probe_xol_of(p);

	for (struct optprobe_detour *d = pr->retired; d; d = d->next) {
		struct busy_range r;
		char why[256];

		if (atomic_load(&d->state) != DETOUR_RETIRED)
			continue;
		memset(&r, 0, sizeof(r));
		r.lo = d->base;
		r.hi = d->base + OPTPROBE_CODE_SIZE;
		snprintf(r.what, sizeof(r.what), "detour of %s", pr->where);
		if (busy_scan(p, &r, 1, why, sizeof(why), NULL))
			continue;	/* someone is inside (or no answer): later */
		if (d->doorbell) {
			/* nobody can ring it now; a sync later nobody holds the entry */
			uint64_t mark;

			if (traptable_remove_addrs(&p->table, &d->doorbell, 1))
				continue;
			mark = traptable_mark(&p->table);
			if (vmm_sync(p->vm))
				continue;	/* retried at the next reap */
			traptable_reclaim(&p->table, mark);
			d->doorbell = 0;
		}
		optprobe_read_counters(p, d, d->final);
		atomic_store_explicit(&d->state, DETOUR_FREED, memory_order_release);
		optprobe_unuse(x, d->slot);
	}
}

/*
 * Controller-exact; from another thread a detour freed and reused in the
 * middle of the read could be misread for that one read.
 */
static void optprobe_add_counts(const struct probe *pr, const struct optprobe_detour *d,
				uint64_t *per_vcpu, uint64_t *total)
{
	uint64_t c[VMPOKE_MAX_VCPUS];

	if (atomic_load_explicit(&d->state, memory_order_acquire) == DETOUR_FREED)
		memcpy(c, d->final, sizeof(c));
	else
		optprobe_read_counters(pr->p, d, c);
	for (unsigned int i = 0; i < VMPOKE_MAX_VCPUS; i++) {
		per_vcpu[i] += c[i];
		*total += c[i];
	}
}

void optprobe_counts(const struct probe *pr, uint64_t *per_vcpu, uint64_t *total)
{
	const struct optprobe_detour *live = atomic_load_explicit(&pr->detour,
								  memory_order_acquire);

	*total = 0;
	if (live)
		optprobe_add_counts(pr, live, per_vcpu, total);
	for (const struct optprobe_detour *d = atomic_load_explicit(&pr->retired,
								    memory_order_acquire);
	     d; d = d->next)
		optprobe_add_counts(pr, d, per_vcpu, total);
}
