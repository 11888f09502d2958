// SPDX-License-Identifier: MIT
/*
 * xol.c - the VMM-owned executable region of the guest ABI
 * (VMPOKE_SYM_XOL_START..END), cut into PROBE_SLOT_SIZE slots for
 * out-of-line execution (uprobes' XOL area, kprobes' insn slots).
 *
 * A slot is FREE (never executed since it was last cleared), USED (its
 * probe is armed, or was), or PENDING (its probe is gone, but a task may
 * still be inside: at CPL3 with IF=1 the timer preempts a task anywhere,
 * including between the relocated instruction and the JMP back).  A
 * PENDING slot becomes FREE only when the busy-range check (shadow.c)
 * finds no vCPU RIP, #BP frame or saved task RIP inside it; then its
 * closing INT3's trap entry is retired, and a sync later nobody can be
 * using that entry either.  Only then may new bytes go in.
 *
 * Everything here runs on the controller under p->lock.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe_internal.h"
#include "symtab.h"

int xol_init(struct patcher *p, struct probe_xol *x, char *msg, size_t msglen)
{
	const struct symtab *st = vmm_symtab(p->vm);
	const struct sym *lo = st ? symtab_find(st, VMPOKE_SYM_XOL_START) : NULL;
	const struct sym *hi = st ? symtab_find(st, VMPOKE_SYM_XOL_END) : NULL;
	uint64_t gpa, size;

	memset(x, 0, sizeof(*x));
	if (!lo || !hi) {
		snprintf(msg, msglen, "the image has no %s/%s (guest ABI < 2)",
			 VMPOKE_SYM_XOL_START, VMPOKE_SYM_XOL_END);
		return -1;
	}
	size = hi->addr - lo->addr;
	/* Guest-supplied: bounded, aligned, and really in guest RAM. */
	if (hi->addr <= lo->addr || size > VMPOKE_XOL_MAX_SIZE || lo->addr % 4096 ||
	    size < PROBE_SLOT_SIZE || vmm_gva_to_gpa(p->vm, lo->addr, &gpa) ||
	    !vmm_gpa_ptr(p->vm, gpa, 1) || vmm_gva_to_gpa(p->vm, hi->addr - 1, &gpa) ||
	    !vmm_gpa_ptr(p->vm, gpa, 1)) {
		snprintf(msg, msglen, "bad XOL region 0x%" PRIx64 "..0x%" PRIx64
			 " (page aligned, at most %u bytes, in guest RAM)",
			 lo->addr, hi->addr, VMPOKE_XOL_MAX_SIZE);
		return -1;
	}
	x->base = lo->addr;
	x->end = hi->addr;
	x->nslots = (unsigned int)(size / PROBE_SLOT_SIZE);
	x->state = calloc(x->nslots, sizeof(*x->state));
	x->ret_entry = calloc(x->nslots, sizeof(*x->ret_entry));
	if (!x->state || !x->ret_entry) {
		xol_free(x);
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	x->ok = true;
	return 0;
}

void xol_free(struct probe_xol *x)
{
	free(x->state);
	free(x->ret_entry);
	memset(x, 0, sizeof(*x));
}

bool xol_contains(const struct probe_xol *x, uint64_t addr)
{
	return x->ok && addr >= x->base && addr < x->end;
}

uint64_t xol_slot_addr(const struct probe_xol *x, int slot)
{
	return x->base + (uint64_t)slot * PROBE_SLOT_SIZE;
}

/*
 * PENDING slots that nothing is inside any more become FREE.  Returns how
 * many did, or -1 (msg) if the check itself failed.
 */
int xol_reclaim(struct patcher *p, struct probe_xol *x, char *msg, size_t msglen)
{
	struct busy_range *r;
	uint64_t *drop;
	int *idx, freed = 0, ret;
	unsigned int i, n = 0, nd = 0;
	char why[768];

	for (i = 0; i < x->nslots; i++)
		n += x->state[i] == XOL_PENDING;
	if (!n)
		return 0;
	r = calloc(n, sizeof(*r));
	idx = calloc(n, sizeof(*idx));
	drop = calloc(n, sizeof(*drop));
	if (!r || !idx || !drop) {
		snprintf(msg, msglen, "out of memory");
		ret = -1;
		goto out;
	}
	for (i = 0, n = 0; i < x->nslots; i++) {
		if (x->state[i] != XOL_PENDING)
			continue;
		idx[n] = (int)i;
		r[n].lo = xol_slot_addr(x, (int)i);
		r[n].hi = r[n].lo + PROBE_SLOT_SIZE;
		snprintf(r[n].what, sizeof(r[n].what), "probe slot %u", i);
		n++;
	}
	ret = busy_scan(p, r, n, why, sizeof(why), NULL);
	if (ret < 0) {
		snprintf(msg, msglen, "slot reuse: %s", why);
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (r[i].busy)
			continue;	/* still in use: try again next time */
		if (x->ret_entry[idx[i]])
			drop[nd++] = x->ret_entry[idx[i]];
	}
	if (nd) {
		uint64_t mark;

		if (traptable_remove_addrs(&p->table, drop, nd)) {
			snprintf(msg, msglen, "out of memory");
			ret = -1;
			goto out;
		}
		/* Grace period: no hook still holds the old entries after this. */
		mark = traptable_mark(&p->table);
		if (vmm_sync(p->vm)) {
			snprintf(msg, msglen, "slot reuse: a vCPU did not acknowledge a sync");
			ret = -1;
			goto out;	/* the slots stay PENDING: nothing reuses them */
		}
		traptable_reclaim(&p->table, mark);
	}
	for (i = 0; i < n; i++) {
		if (r[i].busy)
			continue;
		x->state[idx[i]] = XOL_FREE;
		x->ret_entry[idx[i]] = 0;
		freed++;
	}
	ret = freed;
out:
	free(r);
	free(idx);
	free(drop);
	return ret;
}

/*
 * n contiguous FREE slots (an optimized probe's detour takes several),
 * reclaiming PENDING ones first if there are none; the first's index, or
 * -1 if the region is full.
 */
int xol_alloc_n(struct patcher *p, struct probe_xol *x, unsigned int n, char *msg,
		size_t msglen)
{
	unsigned int i, run;

	msg[0] = '\0';
	for (int pass = 0; pass < 2; pass++) {
		for (i = 0, run = 0; i < x->nslots; i++) {
			run = x->state[i] == XOL_FREE ? run + 1 : 0;
			if (run == n) {
				for (unsigned int k = i + 1 - n; k <= i; k++)
					x->state[k] = XOL_USED;
				return (int)(i + 1 - n);
			}
		}
		if (pass == 0 && xol_reclaim(p, x, msg, msglen) <= 0)
			break;
	}
	if (!msg[0])
		snprintf(msg, msglen, "no %u free out-of-line slot%s of %u (in use, or "
			 "still busy)", n, n == 1 ? "" : "s in a row", x->nslots);
	return -1;
}

int xol_alloc(struct patcher *p, struct probe_xol *x, char *msg, size_t msglen)
{
	return xol_alloc_n(p, x, 1, msg, msglen);
}

/* The slot's probe is gone; the slot waits for the busy-range check. */
void xol_release(struct probe_xol *x, int slot, uint64_t ret_entry)
{
	if (slot < 0 || (unsigned int)slot >= x->nslots)
		return;
	x->state[slot] = XOL_PENDING;
	x->ret_entry[slot] = ret_entry;
}

/* A slot that never ran (its probe was refused after allocation). */
void xol_unuse(struct probe_xol *x, int slot)
{
	if (slot >= 0 && (unsigned int)slot < x->nslots)
		x->state[slot] = XOL_FREE;
}

unsigned int xol_count(const struct probe_xol *x, int state)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < x->nslots; i++)
		n += x->state[i] == state;
	return n;
}
