// SPDX-License-Identifier: MIT
/*
 * shadow.c - the busy-range check: is any context inside these ranges?
 * Built once for every user: the probe-shadow check of sites that cover
 * more than one old instruction (seed 000, invariant 8 in docs/protocol.md;
 * shadow_check() below), and the reuse of a probe's out-of-line slot
 * (xol.c: a task can be preempted inside the slot).  busy_scan() takes any ranges.
 *
 * Once the INT3 at addr is visible everywhere, nothing new can enter
 * (addr, addr + len): a fetch at addr traps and jumps away, branches into
 * the range were refused by site.c.  But something may already be inside:
 * a vCPU executing there, an interrupted context whose saved RIP points
 * there, or a preempted task.  When the tail is rewritten such a context
 * would resume in the middle of the new instruction - the "56 78 c0" of
 * Peter Zijlstra's example.  Linux waits with synchronize_rcu_tasks(); we
 * stop the world and look, which is enough because our guest is small and
 * exports where its contexts live:
 *
 *   1. every vCPU's RIP (offline ones too: they resume there);
 *   2. a vCPU at CPL0 is inside an interrupt or exception; all its gates
 *      are interrupt gates, so it holds a chain of at most two frames
 *      (vmpoke_abi.h, "CPL0 frames"): the entry frame at percpu.rsp0 -
 *      VMPOKE_CPL0_FRAME_SIZE and, when a breakpoint in the timer's callee
 *      nested a #BP under it, that #BP frame.  Inside the #BP stub (whose
 *      CPL0-origin frame the int3 stack gap may have moved down) the frame
 *      is where Capstone says it is at that instruction: the stub is
 *      decoded once, following pushes, pops and %rsp adjustments
 *      (decode_frame_offsets()).  A vCPU parked in the stub before its
 *      doorbell, for a site's own INT3, is not inside on that frame: it
 *      can only resume at the emulated target or, as a ghost, at the site;
 *   3. every RUNNABLE task's saved ctx.rip in vmpoke_tasks.
 *
 * Something inside: back off and retry (sleeping is fine, we hold no vCPU),
 * give up after opts.shadow_retries and let batch.c undo the batch.
 * Guest-supplied values (rsp0, the task table header) are bounds-checked;
 * an unreadable frame is skipped, an inconsistent task table is an error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guest_tables.h"
#include "patcher_internal.h"
#include "symtab.h"

struct shadow_ctx {
	struct patcher *p;
	struct busy_range *r;
	size_t n;
	char *msg;
	size_t msglen;
	unsigned int culprits;	/* contexts found inside, this scan */
};

/*
 * Record every range that holds rip.  All culprits are listed, not just
 * the first: on a host that runs CPL3 natively (kvm_pvm, hardware) a busy
 * vCPU really can sit inside a range when it is paused, and a report that
 * names only that one hides the context the user planted or is hunting
 * for.  Once the message is full the rest is counted, not lost.
 */
static bool shadow_hit(struct shadow_ctx *c, uint64_t rip, const char *who,
		       bool own_int3)
{
	bool hit = false;
	char at[96];
	size_t i, used;

	for (i = 0; i < c->n; i++) {
		struct busy_range *r = &c->r[i];

		if (rip < r->lo || rip >= r->hi)
			continue;
		/*
		 * Parked in the #BP stub before its doorbell, for a site's
		 * own INT3: the frame says addr + 1, but the vCPU can only
		 * resume at the emulated target or, as a ghost, at addr.
		 */
		if (own_int3 && r->own_int3 && rip == r->own_int3)
			continue;
		hit = true;
		r->busy = true;
		c->culprits++;
		used = strnlen(c->msg, c->msglen);
		if (used + 1 >= c->msglen)
			continue;
		site_where(c->p, rip, at, sizeof(at));
		snprintf(c->msg + used, c->msglen - used, "%s%s at %s inside %s",
			 used ? "; " : "", who, at, r->what);
	}
	return hit;
}

void shadow_free(struct patcher *p)
{
	for (size_t i = 0; i < sizeof(p->stubs) / sizeof(p->stubs[0]); i++) {
		free(p->stubs[i].off);
		p->stubs[i].off = NULL;
	}
	p->stubs_decoded = false;
}

/* Decode the #BP stubs once (guest text they live in is never patched). */
static void shadow_decode_stubs(struct patcher *p)
{
	static const char *const names[] = { VMPOKE_SYM_BP_ENTRY, VMPOKE_SYM_BP_HANDLER };
	const struct symtab *st = vmm_symtab(p->vm);
	size_t i;

	if (p->stubs_decoded)
		return;
	p->stubs_decoded = true;
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const struct sym *fn = st ? symtab_find(st, names[i]) : NULL;
		struct shadow_stub *sb = &p->stubs[i];
		uint8_t *code;

		if (!fn || !fn->size || fn->size > 4096)
			continue;
		code = malloc(fn->size);
		sb->off = calloc(fn->size, sizeof(*sb->off));
		if (!code || !sb->off || vmm_gva_read(p->vm, fn->addr, code, fn->size) ||
		    decode_frame_offsets(code, fn->size, fn->addr, sb->off, &sb->doorbell)) {
			free(sb->off);
			sb->off = NULL;
		} else {
			sb->start = fn->addr;
			sb->size = fn->size;
		}
		free(code);
	}
}

/*
 * The frame of a vCPU whose RIP is in a #BP stub: 1 and *frame when the
 * decoded stub says where it is, -1 when the RIP is in a stub at a place
 * the decoder could not pin down (the caller then reads nothing from the
 * stack rather than a wrong slot), 0 when the RIP is in no stub.
 * *before_doorbell: the stub has yet to ring the VMM for this frame.
 */
static int shadow_stub_frame(struct patcher *p, uint64_t rip, uint64_t rsp,
			     uint64_t *frame, bool *before_doorbell)
{
	for (size_t i = 0; i < sizeof(p->stubs) / sizeof(p->stubs[0]); i++) {
		const struct shadow_stub *sb = &p->stubs[i];

		if (!sb->off || rip < sb->start || rip >= sb->start + sb->size)
			continue;
		if (sb->off[rip - sb->start] < 0)
			return -1;
		*frame = rsp + (uint64_t)sb->off[rip - sb->start];
		*before_doorbell = sb->doorbell && rip <= sb->doorbell;
		return 1;
	}
	return 0;
}

/*
 * A vCPU's contexts: its RIP (offline vCPUs too: they resume there), and at
 * CPL0 every frame of its chain (vmpoke_abi.h, "CPL0 frames"): the frame a
 * #BP stub holds, where the decoded stub says at this RIP, and the entry
 * frame at rsp0 - VMPOKE_CPL0_FRAME_SIZE under it when the stub's trap came
 * from CPL0 - a breakpoint hit in the timer's callee nests there, and the
 * task the timer interrupted resumes from the entry frame.  A place in a
 * stub the decoder could not pin down gives no stub frame (never a wrong
 * slot); the entry frame is read all the same.
 */
static bool shadow_vcpu(struct shadow_ctx *c, unsigned int id)
{
	struct gtab_frame f[VMPOKE_CPL0_MAX_FRAMES];
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint64_t stub = 0;
	bool hit, early = false;
	unsigned int i, n;
	char who[64];

	if (vmm_vcpu_get_regs(c->p->vm, id, &regs))
		return false;	/* never ran: no context to check */
	snprintf(who, sizeof(who), "vcpu %u rip", id);
	hit = shadow_hit(c, regs.rip, who, false);
	if (vmm_vcpu_get_sregs(c->p->vm, id, &sregs) || (sregs.cs.selector & 3))
		return hit;
	if (shadow_stub_frame(c->p, regs.rip, regs.rsp, &stub, &early) <= 0) {
		stub = 0;
		early = false;
	}
	n = vmm_cpl0_frames(c->p->vm, id, stub, f);
	for (i = 0; i < n; i++) {
		bool in_stub = stub && f[i].at == stub;

		snprintf(who, sizeof(who), in_stub ? "vcpu %u #BP frame rip" :
			 "vcpu %u interrupted rip", id);
		hit |= shadow_hit(c, f[i].rip, who, in_stub && early);
	}
	return hit;
}

/* -1: the table is malformed, -3: out of memory (msg says why); 0: clear; 1: hit. */
static int shadow_tasks(struct shadow_ctx *c)
{
	const struct symtab *st = vmm_symtab(c->p->vm);
	struct vmpoke_task_table *tab;
	char who[64];
	uint32_t i;
	int ret = 0;

	if (!st || !symtab_find(st, VMPOKE_SYM_TASKS))
		return 0;	/* a guest without tasks */
	tab = malloc(sizeof(*tab));
	if (!tab) {
		snprintf(c->msg, c->msglen, "%s: out of memory", VMPOKE_SYM_TASKS);
		return -3;
	}
	if (vmm_tasks_read(c->p->vm, tab, c->msg, c->msglen)) {
		free(tab);
		return -1;
	}
	for (i = 0; i < tab->nr_tasks; i++) {
		const struct vmpoke_task *t = &tab->tasks[i];

		if (t->state != VMPOKE_TASK_RUNNABLE)
			continue;
		snprintf(who, sizeof(who), "task %u (vcpu %u) saved rip", t->id, t->vcpu);
		if (shadow_hit(c, t->ctx.rip, who, false))
			ret = 1;
	}
	free(tab);
	return ret;
}

/*
 * One look at the stopped world: -1/-3 error, 0 clear, 1 something inside.
 * Every context is looked at, so the message lists every culprit.
 */
static int shadow_scan(struct shadow_ctx *c)
{
	unsigned int id, nr = vmm_nr_vcpus(c->p->vm);
	bool hit = false;
	int ret;

	c->culprits = 0;
	for (id = 0; id < nr; id++)
		hit |= shadow_vcpu(c, id);
	ret = shadow_tasks(c);
	if (ret < 0)
		return ret;
	return hit || ret;
}

/*
 * One look at the stopped world; when nothing is inside, fn(ctx) runs
 * before the world resumes (stop-the-world writes).  Same returns as
 * busy_scan(); *err is fn's verdict.
 */
static int busy_scan_run(struct patcher *p, struct busy_range *r, size_t n,
			 enum poke_err (*fn)(void *ctx), void *ctx, enum poke_err *err,
			 char *msg, size_t msglen, unsigned int *culprits)
{
	struct shadow_ctx c = { .p = p, .r = r, .n = n, .msg = msg, .msglen = msglen };
	int ret, paused;

	for (size_t i = 0; i < n; i++)
		r[i].busy = false;
	msg[0] = '\0';
	*err = POKE_OK;
	shadow_decode_stubs(p);
	/* -EINVAL: not started yet, so the world is as still as it gets */
	paused = vmm_pause(p->vm);
	if (paused && paused != -EINVAL) {
		snprintf(msg, msglen, "vmm_pause failed for the busy-range check");
		return -2;
	}
	ret = shadow_scan(&c);
	/* Clear: the world is still stopped for the caller's writes. */
	if (ret == 0 && fn)
		*err = fn(ctx);
	if (!paused)
		vmm_resume(p->vm);
	if (culprits)
		*culprits = c.culprits;
	return ret;
}

int busy_scan(struct patcher *p, struct busy_range *r, size_t n,
	      char *msg, size_t msglen, unsigned int *culprits)
{
	enum poke_err err;

	return busy_scan_run(p, r, n, NULL, NULL, &err, msg, msglen, culprits);
}

enum poke_err shadow_run(struct patcher *p, const struct poke_site *sites,
			 size_t n, bool every, enum poke_err (*fn)(void *ctx),
			 void *ctx, char *msg, size_t msglen)
{
	struct busy_range *r;
	char why[768];
	unsigned int attempt, culprits = 0;
	enum poke_err err;
	size_t i, k = 0, first = n;
	int ret;

	r = calloc(n ? n : 1, sizeof(*r));
	if (!r) {
		snprintf(msg, msglen, "%s: out of memory", n ? sites[0].where : "");
		return POKE_E_NOMEM;
	}
	for (i = 0; i < n; i++) {
		if (!every && sites[i].old_insns <= 1)
			continue;	/* single-instruction sites have no shadow */
		if (first == n)
			first = i;
		/* strictly inside: (addr, addr + len) */
		r[k].lo = sites[i].addr + 1;
		r[k].hi = sites[i].addr + sites[i].len;
		r[k].own_int3 = sites[i].addr + 1;
		snprintf(r[k].what, sizeof(r[k].what), "site %s (%u bytes)",
			 sites[i].where, sites[i].len);
		k++;
	}
	if (!k) {
		free(r);
		return POKE_OK;
	}
	for (attempt = 0;; attempt++) {
		ret = busy_scan_run(p, r, k, fn, ctx, &err, why, sizeof(why), &culprits);
		if (ret == 0) {
			free(r);
			return err;
		}
		if (ret < 0) {
			snprintf(msg, msglen, "%s: shadow check: %s", sites[first].where, why);
			free(r);
			return ret == -2 ? POKE_E_SYNC : ret == -3 ? POKE_E_NOMEM :
			       POKE_E_GUEST_TABLE;
		}
		if (attempt >= p->opts.shadow_retries)
			break;
		atomic_fetch_add(&p->shadow_retries, 1);
		usleep(p->opts.shadow_backoff_us);
	}
	free(r);
	atomic_fetch_add(&p->shadow_aborts, 1);
	snprintf(msg, msglen, "%s (%u context%s inside, after %u retries)", why, culprits,
		 culprits == 1 ? "" : "s", p->opts.shadow_retries);
	return POKE_E_SHADOW_BUSY;
}

enum poke_err shadow_check(struct patcher *p, const struct poke_site *sites,
			   size_t n, char *msg, size_t msglen)
{
	return shadow_run(p, sites, n, false, NULL, NULL, msg, msglen);
}
