// SPDX-License-Identifier: MIT
/*
 * batch.c - the text_poke_bp protocol (alternative.c's
 * smp_text_poke_batch_finish()) driven from outside the guest.
 *
 * A vCPU may fetch a site at any moment while we write it, and x86 only
 * promises sane results for cross-modified code when the only change a
 * concurrent fetch can observe is between an instruction and INT3.  So
 * every site goes old -> INT3+old tail -> INT3+new tail -> new, with a
 * sync between the steps: at no time can a vCPU decode the old first byte
 * with a new tail, or the new first byte with an old tail.  While a site
 * is INT3 the trap hook emulates the new instruction (traptable.c).
 *
 * Syncs are per phase, not per site: a batch costs three syncs however
 * many sites it has (plus the shadow check's pauses); see poke_sync()
 * for which kind.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "patcher_internal.h"

enum head_state { HEAD_OLD, HEAD_INT3, HEAD_NEW };

/*
 * Each site is translated once per batch, as text_poke maps its page once:
 * host pointers to the (at most two) 4 KiB pages the site spans, bytes
 * [0, split) at lo and [split, len) at hi.  Every later phase reads and
 * writes through them, so the guest's page tables are walked once per site
 * instead of nine times (the per-site cost of a big batch), and a guest
 * that remaps its text mid-batch cannot redirect our writes elsewhere.
 */
struct site_map {
	uint8_t *lo, *hi;
	unsigned int split;
};

/* The state of one finish() run, so a rollback knows what to undo. */
struct batch_run {
	struct patcher *p;
	struct poke_site *s;
	size_t n;
	struct site_map *map;	/* per site, built by batch_check_old() */
	uint8_t *head;		/* enum head_state per site */
	bool *tail;		/* new tail written */
	bool published;		/* sites are in the trap table */
	size_t nstw;		/* sites written stop-the-world */
	struct poke_site *bp;	/* the breakpoint sites (the table's), or s */
	size_t nbp;
	bool stw_new;		/* stop-the-world sites carry new bytes */
	bool stw_undo;		/* batch_stw_write() direction */
	uint64_t tlb_gva;	/* last page translated, and where it is: */
	uint64_t tlb_gpa;	/* sorted sites mostly share pages */
	bool tlb_valid;
	char *msg;
	size_t msglen;
	void (*commit)(void *opaque);	/* poke_batch_on_commit() */
	void *commit_opaque;
};

struct poke_batch *poke_batch_new(struct patcher *p)
{
	struct poke_batch *b = calloc(1, sizeof(*b));

	if (b)
		b->p = p;
	return b;
}

void poke_batch_on_commit(struct poke_batch *b, void (*fn)(void *opaque), void *opaque)
{
	b->commit = fn;
	b->commit_opaque = opaque;
}

/* Every site carries its new bytes and the last sync is still to come. */
static void batch_commit(struct batch_run *r)
{
	if (r->commit)
		r->commit(r->commit_opaque);
}

void poke_batch_free(struct poke_batch *b)
{
	if (!b)
		return;
	free(b->sites);
	free(b);
}

/*
 * No size limit and no ordering requirement: finish() sorts, so an
 * out-of-order add cannot leave an unsorted table behind (2aebf5ee43bf),
 * and the array grows instead of flushing at a chunk boundary.
 */
enum poke_err poke_batch_add(struct poke_batch *b, const struct poke_site *site)
{
	struct poke_site *ns;

	if (!b || !site || !site->len || site->len > POKE_MAX_LEN ||
	    site->emu.kind == POKE_EMU_NONE)
		return POKE_E_INVAL;
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 16;

		ns = realloc(b->sites, cap * sizeof(*ns));
		if (!ns)
			return POKE_E_NOMEM;
		b->sites = ns;
		b->cap = cap;
	}
	b->sites[b->n++] = *site;
	return POKE_OK;
}

static int batch_site_cmp(const void *a, const void *b)
{
	const struct poke_site *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* One page walk per 4 KiB page of the batch, not one per site. */
static int batch_translate(struct batch_run *r, uint64_t gva, uint64_t *gpa)
{
	uint64_t page = gva & ~0xfffull;

	if (!r->tlb_valid || r->tlb_gva != page) {
		if (vmm_gva_to_gpa(r->p->vm, page, &r->tlb_gpa))
			return -1;
		r->tlb_gva = page;
		r->tlb_valid = true;
	}
	*gpa = r->tlb_gpa + (gva & 0xfff);
	return 0;
}

static int batch_map_build(struct batch_run *r, const struct poke_site *s,
			  struct site_map *m)
{
	struct vm *vm = r->p->vm;
	uint64_t gpa, room = 0x1000 - (s->addr & 0xfff);

	m->split = s->len < room ? s->len : (unsigned int)room;
	if (batch_translate(r, s->addr, &gpa))
		return -1;
	m->lo = vmm_gpa_ptr(vm, gpa, m->split);
	m->hi = NULL;
	if (m->split < s->len) {
		if (batch_translate(r, s->addr + m->split, &gpa))
			return -1;
		m->hi = vmm_gpa_ptr(vm, gpa, s->len - m->split);
		if (!m->hi)
			return -1;
	}
	return m->lo ? 0 : -1;
}

/* Copy bytes [off, off + n) of a site between guest and buf. */
static void batch_map_copy(const struct site_map *m, unsigned int off,
			  uint8_t *buf, unsigned int n, bool to_guest)
{
	for (unsigned int i = 0; i < n; i++) {
		unsigned int at = off + i;
		uint8_t *g = at < m->split ? m->lo + at : m->hi + (at - m->split);

		if (to_guest)
			*(volatile uint8_t *)g = buf[i];
		else
			buf[i] = *(volatile uint8_t *)g;
	}
}

static void batch_site_read(struct batch_run *r, const struct poke_site *s,
		      uint8_t *buf)
{
	batch_map_copy(&r->map[s - r->s], 0, buf, s->len, false);
}

/* Write, then read back: a write that did not land must not pass silently. */
static enum poke_err batch_write(struct batch_run *r, const struct poke_site *s,
				 unsigned int off, const uint8_t *bytes,
				 unsigned int n, const char *what)
{
	const struct site_map *m = &r->map[s - r->s];
	uint8_t back[POKE_MAX_LEN];

	batch_map_copy(m, off, (uint8_t *)bytes, n, true);
	if (r->p->opts.write_log)
		r->p->opts.write_log(r->p->opts.write_log_opaque, s, off, bytes, n, what);
	batch_map_copy(m, off, back, n, false);
	if (memcmp(back, bytes, n)) {
		snprintf(r->msg, r->msglen, "%s: read-back of %s differs", s->where, what);
		return POKE_E_READBACK;
	}
	return POKE_OK;
}

/*
 * One sync of the protocol (here and arm.c).  Between phases what matters
 * is that every vCPU has left guest mode since the write and fetches
 * afresh: vmm_sync_core(), the IPI of the kernel's text_poke_sync(), with
 * no vCPU thread to wait for (POKE_SYNC_PHASE).
 *
 * POKE_SYNC_DRAIN is the last sync before entries retire.  The kernel's
 * last IPI also drains its #BP handlers (they run with interrupts off),
 * so no trap of a retired site arrives late.  On the debug-exit path our
 * trap is an exit handled on the vCPU thread, and only an acknowledged
 * sync proves that thread came round: there it drains too, and a late
 * (ghost) trap cannot happen.  On the doorbell path a vCPU can sit in the
 * #BP stub, in guest mode, before its doorbell, which no sync drains
 * (ghost handling covers it, docs/protocol.md), so a core sync will do.
 *
 * What a trap hook may still hold is another matter: retired snapshots
 * (and whatever a caller frees after POKE_SYNC_GRACE) wait for a
 * vmm_sync(), whose acknowledgements are the hook's quiescent states
 * (traptable.c).  So the sync is also the acknowledged one when the
 * retired snapshots are due (traptable_reclaim_due(), a bounded backlog),
 * and every acknowledged sync reclaims.  0, or -errno with *laggard the
 * vCPU that did not acknowledge (-1 if none).
 */
int poke_sync(struct patcher *p, enum poke_sync_kind kind, int *laggard)
{
	bool ack = kind == POKE_SYNC_GRACE ||
		   (kind == POKE_SYNC_DRAIN && vmm_trap_path(p->vm) == VMM_TRAP_DEBUG_EXIT);
	uint64_t mark;

	*laggard = -1;
	atomic_fetch_add(&p->syncs, 1);
	if (!ack && vmm_sync_core_enabled(p->vm) && !traptable_reclaim_due(&p->table)) {
		if (vmm_sync_core(p->vm))
			return -EIO;
		atomic_fetch_add(&p->core_syncs, 1);
		return 0;
	}
	mark = traptable_mark(&p->table);
	if (vmm_sync_laggard(p->vm, laggard))
		return -ETIMEDOUT;
	traptable_reclaim(&p->table, mark);
	return 0;
}

/* INJECT_NO_SYNC skips every sync of the protocol; a grace period stays. */
static enum poke_err batch_sync(struct batch_run *r, const char *after, enum poke_sync_kind kind)
{
	int laggard;

	if (r->p->opts.inject == POKE_INJECT_NO_SYNC && kind != POKE_SYNC_GRACE)
		return POKE_OK;
	if (poke_sync(r->p, kind, &laggard)) {
		/* The vCPU vmm_sync named on stderr, not a guess from counters. */
		snprintf(r->msg, r->msglen, "%s%s: sync after %s timed out: vcpu %d "
			 "did not acknowledge", r->s[0].where,
			 r->n > 1 ? " (and the rest of the batch)" : "", after, laggard);
		return POKE_E_SYNC;
	}
	return POKE_OK;
}

static void batch_retire(struct batch_run *r)
{
	if (!r->published)
		return;
	/* Only fails on ENOMEM; the sites then stay live, which is safe. */
	traptable_remove(&r->p->table, r->bp, r->nbp);
	r->published = false;
}

static bool site_stw(const struct poke_site *s)
{
	return s->method == POKE_METHOD_STOP_THE_WORLD;
}

/* Runs with every vCPU paused and none inside a stop-the-world site. */
static enum poke_err batch_stw_write(void *ctx)
{
	struct batch_run *r = ctx;
	enum poke_err err = POKE_OK;

	for (size_t i = 0; i < r->n && !err; i++) {
		const struct poke_site *s = &r->s[i];

		if (!site_stw(s))
			continue;
		r->stw_new = !r->stw_undo;	/* from the first byte on */
		err = batch_write(r, s, 0, r->stw_undo ? s->old : s->new, s->len,
				  r->stw_undo ? "old bytes (stop-the-world)" :
				  "new bytes (stop-the-world)");
	}
	if (r->stw_undo && !err)
		r->stw_new = false;
	return err;
}

/*
 * Stop-the-world sites (kernel text where a CPL0 INT3 cannot be trapped):
 * pause, check that no RIP, frame or task lies strictly inside any of
 * them, write each whole instruction, resume - in one pause, retried like
 * the shadow check.  A vCPU at the site's first byte executes the whole new
 * instruction when it resumes; nobody can fetch a mix.
 */
static enum poke_err batch_stw(struct batch_run *r, bool undo)
{
	struct poke_site *stw = calloc(r->nstw, sizeof(*stw));
	enum poke_err err;
	size_t i, k = 0;

	if (!stw)
		return POKE_E_NOMEM;
	for (i = 0; i < r->n; i++)
		if (site_stw(&r->s[i]))
			stw[k++] = r->s[i];
	r->stw_undo = undo;
	err = shadow_run(r->p, stw, k, true, batch_stw_write, r, r->msg, r->msglen);
	free(stw);
	return err;
}

static enum poke_err batch_publish(struct batch_run *r)
{
	if (traptable_add(&r->p->table, r->bp, r->nbp)) {
		snprintf(r->msg, r->msglen, "%s: out of memory", r->s[0].where);
		return POKE_E_NOMEM;
	}
	r->published = true;
	return POKE_OK;
}

/*
 * Undo through the same protocol, from wherever finish() stopped, so every
 * site ends as old bytes and no vCPU sees a mix: heads that are already
 * new become INT3 again (sync), new tails become old (sync), INT3 heads
 * become old (sync), then retire.  The first error message is kept; a
 * rollback failure is appended to it.
 */
static void batch_rollback(struct batch_run *r)
{
	static const uint8_t int3 = POKE_INT3;
	char *msg = r->msg;
	size_t msglen = r->msglen, i;
	bool any = false, failed = false;

	r->msg = msg + strlen(msg);
	r->msglen = msglen - strlen(msg);
	if (r->msglen > 14) {
		snprintf(r->msg, r->msglen, "; rollback: ");
		r->msg += 12;
		r->msglen -= 12;
	}
	for (i = 0; i < r->n; i++) {
		if (r->head[i] != HEAD_NEW)
			continue;
		failed |= batch_write(r, &r->s[i], 0, &int3, 1, "INT3 (undo)") != POKE_OK;
		r->head[i] = HEAD_INT3;
		any = true;
	}
	if (any)
		failed |= batch_sync(r, "undo INT3", POKE_SYNC_PHASE) != POKE_OK;
	any = false;
	for (i = 0; i < r->n; i++) {
		if (!r->tail[i])
			continue;
		failed |= batch_write(r, &r->s[i], 1, r->s[i].old + 1,
				      r->s[i].len - 1u, "old tail") != POKE_OK;
		r->tail[i] = false;
		any = true;
	}
	if (any)
		failed |= batch_sync(r, "old tails", POKE_SYNC_PHASE) != POKE_OK;
	any = false;
	for (i = 0; i < r->n; i++) {
		if (r->head[i] != HEAD_INT3)
			continue;
		failed |= batch_write(r, &r->s[i], 0, r->s[i].old, 1, "old head") != POKE_OK;
		r->head[i] = HEAD_OLD;
		any = true;
	}
	if (any)
		failed |= batch_sync(r, "old heads", POKE_SYNC_DRAIN) != POKE_OK;
	batch_retire(r);
	if (r->stw_new)
		failed |= batch_stw(r, true) != POKE_OK;
	if (!failed)
		snprintf(r->msg, r->msglen, "batch undone, old bytes restored");
	r->msg = msg;
	r->msglen = msglen;
}

/*
 * INJECT_NO_INT3 / INJECT_TORN_WRITE: deliberately broken protocols for
 * the torture test - the new bytes go straight over the old ones while
 * vCPUs run, so a concurrent fetch can see a mix.  Never use otherwise.
 */
static enum poke_err batch_direct(struct batch_run *r)
{
	enum poke_err err;
	size_t i;

	for (i = 0; i < r->n; i++) {
		struct poke_site *s = &r->s[i];
		unsigned int half = s->len / 2 ? s->len / 2 : 1;

		if (site_stw(s))
			continue;
		if (r->p->opts.inject == POKE_INJECT_NO_INT3) {
			err = batch_write(r, s, 0, s->new, s->len, "new bytes (no INT3)");
		} else {
			err = batch_write(r, s, 0, s->new, half, "first half (torn)");
			if (!err && half < s->len) {
				usleep(50 + (unsigned int)(random() % 151));
				err = batch_write(r, s, half, s->new + half,
						  s->len - half, "second half (torn)");
			}
		}
		if (err)
			return err;
	}
	return batch_sync(r, "direct writes", POKE_SYNC_PHASE);
}

static enum poke_err batch_check_old(struct batch_run *r)
{
	uint8_t cur[POKE_MAX_LEN];
	size_t i;

	for (i = 0; i < r->n; i++) {
		const struct poke_site *s = &r->s[i];

		if (batch_map_build(r, s, &r->map[i])) {
			snprintf(r->msg, r->msglen, "%s: not mapped in guest memory",
				 s->where);
			return POKE_E_FAULT;
		}
		batch_site_read(r, s, cur);
		if (memcmp(cur, s->old, s->len)) {
			snprintf(r->msg, r->msglen, "%s: guest bytes differ from the "
				 "expected old bytes (first byte 0x%02x, expected "
				 "0x%02x); nothing written", s->where, cur[0], s->old[0]);
			return POKE_E_OLD_MISMATCH;
		}
	}
	return POKE_OK;
}

/*
 * Invariant 7 (docs/protocol.md) between phases: every site must hold exactly what we left
 * there.  A difference means someone else wrote the code under us; go no
 * further and undo.
 */
static enum poke_err batch_recheck(struct batch_run *r, const char *before)
{
	uint8_t cur[POKE_MAX_LEN], want[POKE_MAX_LEN];
	size_t i;

	for (i = 0; i < r->n; i++) {
		const struct poke_site *s = &r->s[i];

		if (site_stw(s))
			continue;
		memcpy(want, r->tail[i] ? s->new : s->old, s->len);
		want[0] = r->head[i] == HEAD_INT3 ? POKE_INT3 :
			  r->head[i] == HEAD_NEW ? s->new[0] : s->old[0];
		batch_site_read(r, s, cur);
		if (memcmp(cur, want, s->len)) {
			snprintf(r->msg, r->msglen, "%s: bytes changed under the "
				 "batch before %s", s->where, before);
			return POKE_E_OLD_MISMATCH;
		}
	}
	return POKE_OK;
}

static int site_key_cmp(const void *key, const void *elem)
{
	uint64_t t = *(const uint64_t *)key;
	const struct poke_site *s = elem;

	return t <= s->addr ? -1 : t >= s->addr + s->len ? 1 : 0;
}

/*
 * Invariant 9 (docs/protocol.md) across the batch: a new branch of one site must not land
 * strictly inside another site of the same batch, whose bytes are being
 * replaced (prepare only saw the function as it was).  Sites are sorted
 * and disjoint, so a bsearch finds the one a target is inside.
 */
static enum poke_err batch_check_targets(struct batch_run *r)
{
	for (size_t i = 0; i < r->n; i++) {
		const struct poke_site *s = &r->s[i], *in;
		uint64_t t = s->emu.target;

		if (s->emu.kind != POKE_EMU_JMP && s->emu.kind != POKE_EMU_CALL &&
		    s->emu.kind != POKE_EMU_JCC)
			continue;
		in = bsearch(&t, r->s, r->n, sizeof(r->s[0]), site_key_cmp);
		if (in && in != s) {
			snprintf(r->msg, r->msglen, "%s: its new branch targets 0x%llx "
				 "inside site %s of the same batch; nothing written",
				 s->where, (unsigned long long)t, in->where);
			return POKE_E_JUMP_INTO;
		}
	}
	return POKE_OK;
}

static enum poke_err batch_sort(struct batch_run *r)
{
	size_t i;

	/* Callers usually add in address order; sorting big structs is not free. */
	for (i = 1; i < r->n; i++)
		if (r->s[i - 1].addr > r->s[i].addr)
			break;
	if (i < r->n)
		qsort(r->s, r->n, sizeof(r->s[0]), batch_site_cmp);
	for (i = 1; i < r->n; i++) {
		if (r->s[i - 1].addr + r->s[i - 1].len > r->s[i].addr) {
			snprintf(r->msg, r->msglen, "%s: overlaps site %s of the same batch",
				 r->s[i].where, r->s[i - 1].where);
			return POKE_E_OVERLAP;
		}
	}
	return batch_check_targets(r);
}

/* A phase has ended: tell whoever draws timelines, and start the next. */
static void batch_phase(struct batch_run *r, const char *name, uint64_t *t0)
{
	const struct patcher_opts *o = &r->p->opts;
	uint64_t now;

	if (!o->phase)
		return;
	now = clock_now_ns();
	o->phase(o->phase_opaque, name, *t0, now);
	*t0 = now;
}

/* The breakpoint sites, in order, for the trap table and the shadow check. */
static enum poke_err batch_split(struct batch_run *r)
{
	size_t i;

	for (i = 0; i < r->n; i++)
		r->nstw += site_stw(&r->s[i]);
	r->nbp = r->n - r->nstw;
	if (!r->nstw) {
		r->bp = r->s;
		return POKE_OK;
	}
	r->bp = calloc(r->nbp ? r->nbp : 1, sizeof(*r->bp));
	if (!r->bp) {
		snprintf(r->msg, r->msglen, "%s: out of memory", r->s[0].where);
		return POKE_E_NOMEM;
	}
	r->nbp = 0;
	for (i = 0; i < r->n; i++)
		if (!site_stw(&r->s[i]))
			r->bp[r->nbp++] = r->s[i];
	return POKE_OK;
}

static enum poke_err batch_protocol(struct batch_run *r)
{
	static const uint8_t int3 = POKE_INT3;
	struct patcher *p = r->p;
	enum poke_inject inject = p->opts.inject;
	uint64_t t0 = p->opts.phase ? clock_now_ns() : 0;
	enum poke_err err;
	bool tails = false;
	size_t i;

	/*
	 * 0. Sorted, disjoint sites: the table is bsearched, and two sites
	 *    sharing bytes would each restore the other's bytes on undo.
	 */
	err = batch_sort(r);
	if (err)
		return err;
	/*
	 * 1. Expected old bytes, all of them, before the first write: a
	 *    mismatch means someone else changed the code (or the caller is
	 *    wrong) and we must write nothing (jump_label's "unexpected op").
	 */
	err = batch_check_old(r);
	if (err)
		return err;
	err = batch_split(r);
	if (err)
		return err;
	if (r->nstw) {
		err = batch_stw(r, false);
		if (err)
			goto undo;
		batch_phase(r, "stop-the-world", &t0);
		if (!r->nbp) {
			batch_commit(r);
			return POKE_OK;
		}
	}
	if (inject == POKE_INJECT_NO_INT3 || inject == POKE_INJECT_TORN_WRITE) {
		batch_commit(r);
		err = batch_direct(r);
		if (err)
			goto undo;
		return POKE_OK;
	}
	/*
	 * 2. Publish first, then INT3: a vCPU can hit the INT3 the moment it
	 *    is written, and the hook must already find the site (invariant
	 *    3).  After the sync no vCPU can still be executing the old first
	 *    byte, so the tail is unused by anyone who has not trapped.
	 */
	if (inject != POKE_INJECT_LATE_PUBLISH) {
		err = batch_publish(r);
		if (err)
			goto undo;
	}
	for (i = 0; i < r->n; i++) {
		if (site_stw(&r->s[i]))
			continue;
		/* Mapped at phase 1, so the write lands: record it first. */
		err = batch_write(r, &r->s[i], 0, &int3, 1, "INT3");
		r->head[i] = HEAD_INT3;
		if (err)
			goto undo;
	}
	err = batch_sync(r, "INT3", POKE_SYNC_PHASE);
	if (err)
		goto undo;
	batch_phase(r, "int3", &t0);
	/*
	 * INJECT_LATE_PUBLISH: the INT3s were live, and synced, before the
	 * hook could find their sites: a hit in between is filed foreign.
	 */
	if (inject == POKE_INJECT_LATE_PUBLISH) {
		err = batch_publish(r);
		if (err)
			goto undo;
	}
	/*
	 * 3. Multi-instruction sites: the INT3 keeps new entries out, but a
	 *    context already inside the range would resume in the new tail.
	 */
	if (inject != POKE_INJECT_NO_SHADOW_CHECK) {
		err = shadow_check(p, r->bp, r->nbp, r->msg, r->msglen);
		if (err)
			goto undo;
		batch_phase(r, "shadow check", &t0);
	}
	/*
	 * 4. Tails.  Nobody executes them now, so order does not matter; the
	 *    sync makes them visible before any vCPU can decode a new head.
	 *    alternative.c: "very likely not necessary ... better safe".
	 */
	err = batch_recheck(r, "the tails");
	if (err)
		goto undo;
	for (i = 0; i < r->n; i++) {
		if (r->s[i].len < 2 || site_stw(&r->s[i]))
			continue;
		err = batch_write(r, &r->s[i], 1, r->s[i].new + 1,
				  r->s[i].len - 1u, "new tail");
		r->tail[i] = true;
		tails = true;
		if (err)
			goto undo;
	}
	if (tails) {
		err = batch_sync(r, "tails", POKE_SYNC_PHASE);
		if (err)
			goto undo;
		batch_phase(r, "tails", &t0);
	}
	/*
	 * INJECT_EARLY_RETIRE: retired between the tail sync and the head
	 * write, ghost handling still on.  A vCPU that traps now finds no
	 * site while the byte is still INT3: filed foreign, the guest's own
	 * handler resumes it at addr + 1, mid-instruction.
	 */
	if (inject == POKE_INJECT_EARLY_RETIRE) {
		batch_retire(r);
		/*
		 * The window is a few microseconds of host code; widen it as
		 * torn-write widens its tear, so vCPUs really run into the
		 * INT3 of a retired site (detection, not its chance, is what
		 * the test measures).
		 */
		usleep(100 + (unsigned int)(random() % 201));
	}
	/*
	 * 5. Heads: INT3 -> new first byte, an INT3/instruction swap that
	 *    is safe for concurrent fetches.  The sync is the point where
	 *    every vCPU has serialized against the final instruction.
	 */
	err = batch_recheck(r, "the heads");
	if (err)
		goto undo;
	for (i = 0; i < r->n; i++) {
		if (site_stw(&r->s[i]))
			continue;
		err = batch_write(r, &r->s[i], 0, r->s[i].new, 1, "new head");
		r->head[i] = HEAD_NEW;
		if (err)
			goto undo;
	}
	/* data that must agree with the text (key->enabled) goes with the heads */
	batch_commit(r);
	err = batch_sync(r, "heads", POKE_SYNC_DRAIN);
	if (err)
		goto undo;
	batch_phase(r, "heads", &t0);
	/*
	 * 6. Retire only now: no vCPU fetches one of these INT3s after the
	 *    head sync.  The sync does NOT drain traps already in flight on
	 *    the doorbell path: a kick is a VM exit, not an interrupt, so it
	 *    can land while a vCPU sits in the #BP stub between the INT3 and
	 *    the doorbell, and that vCPU rings after this retire.  Ghost
	 *    handling (traptable.c) is what makes that correct, as in
	 *    kprobes: the trap finds no live site and a byte that is no
	 *    longer INT3, and resumes at the site, which holds the final
	 *    instruction whole.  The trap holds no host pointer, so the
	 *    snapshot reclaim does not need to wait for it.
	 */
	batch_retire(r);
	/* INJECT_NO_SYNC still must not free a snapshot a hook may hold. */
	if (inject == POKE_INJECT_NO_SYNC)
		batch_sync(r, "retire (reclamation only)", POKE_SYNC_GRACE);
	return POKE_OK;
undo:
	batch_rollback(r);
	return err;
}

enum poke_err poke_batch_finish(struct poke_batch *b, char *msg, size_t msglen)
{
	char dummy[8];
	struct batch_run r = {
		.msg = msg && msglen ? msg : dummy,
		.msglen = msg && msglen ? msglen : sizeof(dummy),
	};
	enum poke_err err;

	if (!b)
		return POKE_E_INVAL;
	r.msg[0] = '\0';
	if (!b->n)
		return POKE_OK;
	r.p = b->p;
	r.commit = b->commit;
	r.commit_opaque = b->commit_opaque;
	r.s = b->sites;
	r.n = b->n;
	r.map = calloc(b->n, sizeof(*r.map));
	r.head = calloc(b->n, sizeof(*r.head));
	r.tail = calloc(b->n, sizeof(*r.tail));
	if (!r.map || !r.head || !r.tail) {
		free(r.map);
		free(r.head);
		free(r.tail);
		return POKE_E_NOMEM;
	}
	pthread_mutex_lock(&b->p->lock);
	err = batch_protocol(&r);
	pthread_mutex_unlock(&b->p->lock);
	free(r.map);
	free(r.head);
	free(r.tail);
	if (r.bp != r.s)
		free(r.bp);
	atomic_fetch_add(&b->p->batches, 1);
	if (!err)
		atomic_fetch_add(&b->p->patches, b->n);
	return err;
}
