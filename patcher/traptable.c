// SPDX-License-Identifier: MIT
/*
 * traptable.c - the live-site table and the trap hook.
 *
 * The hook runs on vCPU threads.  The patching thread waits in vmm_sync()
 * and vmm_pause() for those very threads to come round their loop, so if
 * the hook could block on anything the patching thread holds while it
 * waits, a vCPU trapping on one of our INT3s would never acknowledge and
 * the patcher would never let go: the deadlock of seed 003 (docs/design.md; a CPU spinning
 * in #BP while the patching CPU waits for it).  Here it cannot happen by
 * construction: the hook takes no lock at all.  It loads the current
 * snapshot with one acquire load, bsearches an immutable array, emulates,
 * bumps atomic counters and returns.
 *
 * Publication: a snapshot is fully built, then published with a release
 * store, so a hook that sees the pointer sees the entries.  It is never
 * modified afterwards; a change means a new snapshot.
 *
 * Reclamation (RCU style): a vCPU thread acknowledges a sync at the top of
 * its run loop, which is outside any hook invocation - a quiescent state.
 * A hook that loaded snapshot S did so before the vCPU's next
 * acknowledgement.  So once S has been replaced, and a vmm_sync() that
 * *started after* the replacement has returned successfully, every online
 * vCPU has passed a quiescent state after the replacement and no hook can
 * still hold S.  (Offline vCPUs park at the top of their loop too, so they
 * cannot be inside a hook.)  traptable_mark() before the sync and
 * traptable_reclaim() after it implement exactly that; a failed sync
 * reclaims nothing and the snapshots wait for the next good one.
 *
 * The retired list is touched only by patching threads, under p->lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "patcher_internal.h"

void traptable_init(struct poke_table *t)
{
	memset(t, 0, sizeof(*t));
	atomic_init(&t->cur, NULL);
}

void traptable_destroy(struct poke_table *t)
{
	struct poke_snapshot *s, *next;

	for (s = t->retired; s; s = next) {
		next = s->next_retired;
		free(s);
	}
	t->retired = NULL;
	free(atomic_load_explicit(&t->cur, memory_order_relaxed));
	atomic_store_explicit(&t->cur, NULL, memory_order_relaxed);
}

static int traptable_live_cmp(const void *a, const void *b)
{
	const struct poke_live *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static struct poke_snapshot *traptable_snapshot_alloc(size_t n)
{
	struct poke_snapshot *s = calloc(1, sizeof(*s) + n * sizeof(s->e[0]));

	if (s)
		s->n = n;
	return s;
}

/* Replace the current snapshot; the old one waits for a grace period. */
static void traptable_publish(struct poke_table *t, struct poke_snapshot *s)
{
	struct poke_snapshot *old;

	old = atomic_exchange_explicit(&t->cur, s, memory_order_acq_rel);
	if (!old)
		return;
	old->retired_seq = ++t->retire_seq;
	old->next_retired = t->retired;
	t->retired = old;
}

static bool traptable_live_sorted(const struct poke_live *e, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (e[i - 1].addr > e[i].addr)
			return false;
	return true;
}

void traptable_live_of(const struct poke_site *site, struct poke_live *e)
{
	memset(e, 0, sizeof(*e));
	e->addr = site->addr;
	e->len = site->len;
	e->role = LIVE_SITE;
	e->emu = site->emu;
	memcpy(e->old, site->old, sizeof(site->old));
}

/*
 * The current snapshot is sorted and batches arrive sorted (finish()
 * sorts them), so adding is a merge, O(have + n): the per-site cost of a
 * batch must stay far below one sync for a 256-site batch to cost about
 * as much as one site.  add[] is sorted in place if it is not.
 */
static int traptable_merge(struct poke_table *t, struct poke_live *add, size_t n)
{
	struct poke_snapshot *cur = atomic_load_explicit(&t->cur, memory_order_relaxed);
	size_t have = cur ? cur->n : 0, i, j = 0, k = 0;
	struct poke_snapshot *s;

	s = traptable_snapshot_alloc(have + n);
	if (!s)
		return -ENOMEM;
	/* Sorted so the hook can bsearch (2aebf5ee43bf: an unsorted array misses). */
	if (!traptable_live_sorted(add, n))
		qsort(add, n, sizeof(add[0]), traptable_live_cmp);
	for (i = 0; i < have || j < n;)
		s->e[k++] = j == n || (i < have && cur->e[i].addr <= add[j].addr) ?
			    cur->e[i++] : add[j++];
	traptable_publish(t, s);
	return 0;
}

int traptable_add(struct poke_table *t, const struct poke_site *sites, size_t n)
{
	struct poke_live *add;
	size_t i;
	int r;

	if (!n)
		return 0;
	add = malloc(n * sizeof(*add));
	if (!add)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		traptable_live_of(&sites[i], &add[i]);
	r = traptable_merge(t, add, n);
	free(add);
	return r;
}

int traptable_add_live(struct poke_table *t, const struct poke_live *e, size_t n)
{
	struct poke_live *add;
	int r;

	if (!n)
		return 0;
	add = malloc(n * sizeof(*add));
	if (!add)
		return -ENOMEM;
	memcpy(add, e, n * sizeof(*add));
	r = traptable_merge(t, add, n);
	free(add);
	return r;
}

/*
 * One snapshot with the entry at e->addr replaced: no moment without an
 * entry there, so an INT3 at addr is never misfiled as foreign.  An
 * optimized probe widens its head entry to the displaced region this way.
 */
int traptable_replace(struct poke_table *t, const struct poke_live *e)
{
	struct poke_snapshot *cur = atomic_load_explicit(&t->cur, memory_order_relaxed);
	struct poke_snapshot *s;
	size_t i;

	if (!cur)
		return -ENOENT;
	for (i = 0; i < cur->n && cur->e[i].addr != e->addr; i++)
		;
	if (i == cur->n)
		return -ENOENT;
	s = traptable_snapshot_alloc(cur->n);
	if (!s)
		return -ENOMEM;
	memcpy(s->e, cur->e, cur->n * sizeof(cur->e[0]));
	s->e[i] = *e;
	traptable_publish(t, s);
	return 0;
}

static int traptable_addr_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * A merge walk over the sorted snapshot and the sorted addresses to drop.
 * Why not a search per entry: retiring a 4096-site batch from a table of
 * 4096 by linear search was 16.7 M compares, the dominant cost of the
 * whole batch (bench poke: 69x a single site).  drop[] is sorted in place.
 */
static int traptable_drop(struct poke_table *t, uint64_t *drop, size_t n)
{
	struct poke_snapshot *cur = atomic_load_explicit(&t->cur, memory_order_relaxed);
	struct poke_snapshot *s;
	size_t i, j = 0, k = 0;
	bool sorted = true;

	s = traptable_snapshot_alloc(cur->n);
	if (!s)
		return -ENOMEM;
	for (i = 1; i < n; i++)
		sorted &= drop[i - 1] <= drop[i];
	if (!sorted)
		qsort(drop, n, sizeof(*drop), traptable_addr_cmp);
	for (i = 0; i < cur->n; i++) {
		while (j < n && drop[j] < cur->e[i].addr)
			j++;
		if (j == n || drop[j] != cur->e[i].addr)
			s->e[k++] = cur->e[i];
	}
	s->n = k;
	traptable_publish(t, s);
	return 0;
}

int traptable_remove(struct poke_table *t, const struct poke_site *sites, size_t n)
{
	uint64_t *drop;
	size_t i;
	int r;

	if (!atomic_load_explicit(&t->cur, memory_order_relaxed) || !n)
		return 0;
	drop = malloc(n * sizeof(*drop));
	if (!drop)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		drop[i] = sites[i].addr;
	r = traptable_drop(t, drop, n);
	free(drop);
	return r;
}

int traptable_remove_addrs(struct poke_table *t, const uint64_t *addrs, size_t n)
{
	uint64_t *drop;
	int r;

	if (!atomic_load_explicit(&t->cur, memory_order_relaxed) || !n)
		return 0;
	drop = malloc(n * sizeof(*drop));
	if (!drop)
		return -ENOMEM;
	memcpy(drop, addrs, n * sizeof(*drop));
	r = traptable_drop(t, drop, n);
	free(drop);
	return r;
}

const struct poke_live *traptable_lookup(const struct poke_snapshot *s, uint64_t addr)
{
	struct poke_live key = { .addr = addr };

	if (!s || !s->n)
		return NULL;
	return bsearch(&key, s->e, s->n, sizeof(s->e[0]), traptable_live_cmp);
}

uint64_t traptable_mark(const struct poke_table *t)
{
	return t->retire_seq;
}

void traptable_reclaim(struct poke_table *t, uint64_t mark)
{
	struct poke_snapshot **pp = &t->retired, *s;

	while ((s = *pp)) {
		if (s->retired_seq <= mark) {
			*pp = s->next_retired;
			free(s);
			t->freed++;
		} else {
			pp = &s->next_retired;
		}
	}
}

/*
 * The core syncs between phases free nothing (batch.c), so retired
 * snapshots pile up until an acknowledged sync.  Bound the pile by count
 * and by bytes: a batch retires two snapshots, so a patching loop pays
 * one acknowledged sync in every few batches, and a table of thousands of
 * sites does not hold megabytes of dead copies.
 */
#define TRAPTABLE_DUE_SNAPSHOTS	16u
#define TRAPTABLE_DUE_BYTES	(1u << 20)

bool traptable_reclaim_due(const struct poke_table *t)
{
	const struct poke_snapshot *s;
	size_t n = 0, bytes = 0;

	for (s = t->retired; s; s = s->next_retired) {
		n++;
		bytes += sizeof(*s) + s->n * sizeof(s->e[0]);
		if (n >= TRAPTABLE_DUE_SNAPSHOTS || bytes >= TRAPTABLE_DUE_BYTES)
			return true;
	}
	return false;
}

size_t traptable_pending(const struct poke_table *t)
{
	const struct poke_snapshot *s;
	size_t n = 0;

	for (s = t->retired; s; s = s->next_retired)
		n++;
	return n;
}

/*
 * The emulated CALL's push and RET's pop go to the interrupted code's own
 * stack with that code's rights: a CPL3 stack page must be user and, for
 * the push, writable at every level, as the CPU would check.  A refusal
 * leaves the instruction to the guest, which then takes the real #PF.
 */
static int traptable_hook_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
	const struct vmm_trap *t = ctx;

	if (vmm_gva_access_ok(t->vm, gva, len, false, t->cpl))
		return -EFAULT;
	return vmm_gva_read(t->vm, gva, buf, len);
}

static int traptable_hook_write(void *ctx, uint64_t gva, const void *buf, size_t len)
{
	const struct vmm_trap *t = ctx;

	if (vmm_gva_access_ok(t->vm, gva, len, true, t->cpl))
		return -EFAULT;
	return vmm_gva_write(t->vm, gva, buf, len);
}

/*
 * What a trap at addr is, decided in an order that cannot misfile one of
 * ours as foreign.  A batch publishes the table that lists a site *before*
 * it writes the site's INT3 (batch.c, phase 2).  If we looked the site up
 * in an older snapshot and only then read the byte, a batch could publish
 * and write INT3 in between, and we would see a 0xCC that no snapshot we
 * searched knows: a live vmpoke site misfiled as foreign, and the guest
 * would resume mid-instruction.  So when the byte is INT3 we search again
 * in a snapshot loaded *after* that read: the publication came before the
 * write we saw, and the fence orders our two loads the same way.  The
 * second snapshot is as safe to use as the first: this vCPU has not
 * acknowledged a sync since the hook began (traptable_reclaim()).
 */
enum trap_class traptable_classify(struct poke_table *t, uint64_t addr,
				   bool allow_ghost, bool at_insn_start,
				   trap_read_byte_fn read_byte, void *ctx,
				   const struct poke_live **live)
{
	const struct poke_snapshot *s;
	uint8_t byte, imm;

	s = atomic_load_explicit(&t->cur, memory_order_acquire);
	*live = traptable_lookup(s, addr);
	if (*live)
		return TRAP_LIVE;
	if (read_byte(ctx, addr, &byte))
		return TRAP_FOREIGN;	/* unreadable: let the guest deal with it */
	/*
	 * Where addr is the trapping instruction itself (KVM_EXIT_DEBUG), the
	 * two-byte "int $3" (CD 03) is the guest's own: resuming there as a
	 * ghost would only raise it again, for ever.  Through the doorbell
	 * addr is return address - 1 and that form cannot be told from a
	 * ghost whose new byte is 03 (docs/protocol.md; kprobes alike).
	 */
	if (at_insn_start && byte == 0xcd && !read_byte(ctx, addr + 1, &imm) &&
	    imm == 3)
		return TRAP_FOREIGN;
	if (byte != POKE_INT3)
		return allow_ghost ? TRAP_GHOST : TRAP_FOREIGN;
	atomic_thread_fence(memory_order_seq_cst);
	s = atomic_load_explicit(&t->cur, memory_order_acquire);
	*live = traptable_lookup(s, addr);
	return *live ? TRAP_LIVE : TRAP_FOREIGN;
}

static int traptable_hook_read_byte(void *ctx, uint64_t gva, uint8_t *byte)
{
	return vmm_gva_read(ctx, gva, byte, 1);
}

/*
 * Live site: emulate the queued instruction.  No live site and the byte is
 * no longer INT3: a ghost - the vCPU fetched our INT3 before the last
 * sync, the site has been retired since; resume at addr, which now holds
 * the final instruction (invariant 4, docs/protocol.md).  Otherwise the INT3 is not ours.
 */
enum vmm_trap_verdict traptable_hook(struct vmm_trap *trap, void *opaque)
{
	struct patcher *p = opaque;
	const struct poke_live *e;
	struct poke_mem mem = { traptable_hook_read, traptable_hook_write, trap };
	struct poke_cpu cpu;
	bool ghosts = !atomic_load_explicit(&p->no_ghost, memory_order_relaxed);

	switch (traptable_classify(&p->table, trap->addr, ghosts,
				   trap->path == VMM_TRAP_DEBUG_EXIT,
				   traptable_hook_read_byte, trap->vm, &e)) {
	case TRAP_LIVE:
		if (e->role == LIVE_PROBE || e->role == LIVE_PROBE_DOORBELL)
			return probe_hit(p, e, trap);
		if (e->role == LIVE_PROBE_RET) {
			/* the out-of-line copy ran: go on after the original */
			trap->rip = e->emu.target;
			return VMM_TRAP_HANDLED;
		}
		cpu.rip = trap->rip;
		cpu.rsp = trap->rsp;
		cpu.rflags = trap->rflags;
		if (poke_emulate(&e->emu, e->addr, &cpu, &mem))
			atomic_fetch_add(&p->emu_faults, 1);
		trap->rip = cpu.rip;
		trap->rsp = cpu.rsp;
		atomic_fetch_add(&p->trap_hits, 1);
		return VMM_TRAP_HANDLED;
	case TRAP_GHOST:
		trap->rip = trap->addr;
		atomic_fetch_add(&p->ghost_traps, 1);
		return VMM_TRAP_HANDLED;
	case TRAP_FOREIGN:
		break;
	}
	atomic_fetch_add(&p->foreign_traps, 1);
	return VMM_TRAP_FOREIGN;
}
