// SPDX-License-Identifier: MIT
/*
 * test_patch_kvm.c - the patching engine against the running guest on a
 * real /dev/kvm: the guest's tasks call every exported site at CPL3 and
 * check each result against the set its variants may return, so a patch
 * that tears, or a trap emulated wrongly, ends the run with a check
 * failure.  Each test boots its own VM (scenario HOT unless it says
 * otherwise) and ends by asserting the run is still healthy.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patcher.h"
#include "symtab.h"
#include "testlib.h"
#include "test_vmm_util.h"
#include "vmm.h"
#include "../patcher/patcher_internal.h"
#include "../vmm/vmm_internal.h"

#define BOOT_TIMEOUT_MS	120000	/* nested KVM under TCG is slow */

struct env {
	struct vm *vm;
	struct patcher *p;
	struct vmpoke_site_table sites;
	uint8_t orig[VMPOKE_MAX_SITES][POKE_MAX_LEN];	/* bytes at boot */
	unsigned int nr_vcpus;
};

static bool env_boot(struct env *e, enum vmpoke_scenario scn, unsigned int vcpus,
		     const struct patcher_opts *opts)
{
	struct vm_config cfg = {
		.image = testlib_image(), .nr_vcpus = vcpus, .mem_mib = 64,
		.tasks = 2, .hz = 1000, .scenario = scn, .seed = 7, .quiet = true,
	};

	/*
	 * No tick for the guest's own int3s on trap path (a): under kvm_amd
	 * without NRIPS a re-injected #BP that meets a pending interrupt is
	 * lost (int3_reinject suite; README, "Trap path (a)"), and this
	 * scenario counts every one.
	 */
	if (scn == VMPOKE_SCN_INT3 && vmm_trap_path_env() == VMM_TRAP_DEBUG_EXIT)
		cfg.hz = 0;
	char msg[256];
	int code, r;

	memset(e, 0, sizeof(*e));
	e->nr_vcpus = vcpus;
	e->vm = vmm_create(&cfg, &code);
	EXPECT_TRUE_MSG(e->vm != NULL, "vmm_create(%s) failed: exit %d", cfg.image, code);
	if (!e->vm)
		return false;
	e->p = patcher_create(e->vm, opts);
	EXPECT_NOT_NULL(e->p);
	if (!e->p)
		return false;
	r = vmm_sites_read(e->vm, &e->sites, msg, sizeof(msg));
	EXPECT_TRUE_MSG(r == 0, "%s: %s", cfg.image, msg);
	if (r)
		return false;
	for (uint32_t i = 0; i < e->sites.nr_sites && i < VMPOKE_MAX_SITES; i++)
		if (e->sites.sites[i].len > POKE_MAX_LEN ||
		    vmm_gva_read(e->vm, e->sites.sites[i].addr, e->orig[i],
				 e->sites.sites[i].len))
			return false;
	if (vmm_start(e->vm))
		return false;
	EXPECT_TRUE_MSG(!vmm_wait_hcall(e->vm, VMPOKE_HC_READY, vcpus, BOOT_TIMEOUT_MS),
			"the guest did not report READY on %u vCPUs", vcpus);
	return true;
}

/*
 * No check failure or fault, and the run either still going (we stop it)
 * or finished cleanly: scenario INT3 ends by itself with DONE, result 0,
 * once every task has verified its own int3 count, which on a quiet host
 * can happen before we get here.
 */
static void env_end(struct env *e)
{
	struct vmm_result res;
	enum vmm_outcome o;

	if (!e->vm)
		return;
	EXPECT_EQ_U64(0, vmm_hcall_count(e->vm, VMPOKE_HC_CHECK_FAIL));
	EXPECT_EQ_U64(0, vmm_hcall_count(e->vm, VMPOKE_HC_FAULT));
	patcher_destroy(e->p);
	vmm_stop(e->vm);
	o = vmm_wait(e->vm, BOOT_TIMEOUT_MS, &res);
	EXPECT_TRUE_MSG(o == VMM_STOPPED || o == VMM_DONE,
			"run ended with outcome %d: %s", o, res.message);
	vmm_destroy(e->vm);
	e->vm = NULL;
}

static const struct vmpoke_site_desc *site_of(struct env *e, uint32_t kind,
					      unsigned int nth)
{
	uint32_t i;

	for (i = 0; i < e->sites.nr_sites; i++)
		if (e->sites.sites[i].kind == kind && !nth--)
			return &e->sites.sites[i];
	EXPECT_TRUE_MSG(false, "the guest exports no site #%u of kind %u", nth, kind);
	return NULL;
}

static void put32(uint8_t *b, int64_t v)
{
	uint32_t u = (uint32_t)v;

	memcpy(b, &u, 4);
}

/* The bytes of variant `variant` (0 = the original) of a site, len bytes. */
static void site_variant(struct env *e, const struct vmpoke_site_desc *d,
			 unsigned int variant, uint8_t *out)
{
	static const uint8_t nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
	uint8_t cur[POKE_MAX_LEN];

	EXPECT_EQ(vmm_gva_read(e->vm, d->addr, cur, d->len), 0);
	memset(out, POKE_INT3, POKE_MAX_LEN);
	switch (d->kind) {
	case VMPOKE_SITE_NOP5_JMP32:
		if (!variant) {
			memcpy(out, nop5, 5);
		} else {
			out[0] = 0xe9;
			put32(out + 1, (int64_t)(d->target[0] - (d->addr + 5)));
		}
		break;
	case VMPOKE_SITE_NOP2_JMP8:
		out[0] = variant ? 0xeb : 0x66;
		out[1] = variant ? (uint8_t)(d->target[0] - (d->addr + 2)) : 0x90;
		break;
	case VMPOKE_SITE_CALL32:
		out[0] = 0xe8;
		put32(out + 1, (int64_t)(d->target[variant % d->nr_targets] - (d->addr + 5)));
		break;
	case VMPOKE_SITE_JCC32:
		out[0] = 0x0f;
		out[1] = cur[1];	/* keep the condition */
		put32(out + 2, (int64_t)(d->target[variant % d->nr_targets] - (d->addr + 6)));
		break;
	default:
		if (!variant) {		/* MULTI: the original instructions */
			memcpy(out, e->orig[d - e->sites.sites], d->len);
			break;
		}
		out[0] = 0xe9;		/* ... or a jump to the equivalent block */
		put32(out + 1, (int64_t)(d->target[0] - (d->addr + 5)));
		break;
	}
}

static void expect_bytes(struct env *e, const struct vmpoke_site_desc *d,
			 const uint8_t *want, const char *what)
{
	uint8_t cur[POKE_MAX_LEN];

	EXPECT_EQ(vmm_gva_read(e->vm, d->addr, cur, d->len), 0);
	EXPECT_TRUE_MSG(!memcmp(cur, want, d->len), "site 0x%llx (%s): guest bytes "
			"are not the %s bytes", (unsigned long long)d->addr,
			d->kind == VMPOKE_SITE_MULTI ? "multi" : "single", what);
}

/* Patch site d from variant `from` to `to`; returns the engine's verdict. */
static enum poke_err flip(struct env *e, const struct vmpoke_site_desc *d,
			  unsigned int from, unsigned int to, char *msg, size_t msglen)
{
	uint8_t old[POKE_MAX_LEN], new[POKE_MAX_LEN];

	struct poke_site s;
	struct poke_batch *bt;
	enum poke_err err;

	site_variant(e, d, from, old);
	site_variant(e, d, to, new);
	if (d->kind != VMPOKE_SITE_MULTI || to)
		return poke_single(e->p, d->addr, old, new, d->len, msg, msglen);
	/*
	 * Back to the original instructions of a MULTI site: several
	 * instructions, so the hook emulates the JMP they replace (optprobe
	 * unoptimize does the same with its INT3).
	 */
	err = poke_site_prepare(e->p, &s, d->addr, old, new, d->len, old, msg, msglen);
	if (err)
		return err;
	bt = poke_batch_new(e->p);
	err = poke_batch_add(bt, &s);
	if (!err)
		err = poke_batch_finish(bt, msg, msglen);
	poke_batch_free(bt);
	return err;
}

/* Let the tasks run over the patched code for a while. */
/* flip(), retried while a context natively inside a MULTI range aborts it. */
static enum poke_err flip_until_done(struct env *e, const struct vmpoke_site_desc *d,
				     unsigned int from, unsigned int to, char *msg,
				     size_t msglen)
{
	enum poke_err err = POKE_E_SHADOW_BUSY;

	for (int i = 0; i < 50 && err == POKE_E_SHADOW_BUSY; i++)
		err = flip(e, d, from, to, msg, msglen);
	return err;
}

static void let_run(void)
{
	usleep(100000);
}

static void test_kvm_old_mismatch(void)
{
	struct env e = { 0 };
	const struct vmpoke_site_desc *a, *b;
	struct poke_site sa, sb;
	uint8_t olda[POKE_MAX_LEN], newa[POKE_MAX_LEN], oldb[POKE_MAX_LEN], newb[POKE_MAX_LEN];
	struct poke_stats st0, st1;
	struct poke_batch *bt;
	char msg[512];

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 2, NULL))
		goto out;
	a = site_of(&e, VMPOKE_SITE_NOP5_JMP32, 0);
	b = site_of(&e, VMPOKE_SITE_NOP2_JMP8, 0);
	if (!a || !b)
		goto out;
	site_variant(&e, a, 0, olda);
	site_variant(&e, a, 1, newa);
	site_variant(&e, b, 0, oldb);
	site_variant(&e, b, 1, newb);
	/* Expected old bytes that are not there: refused at prepare. */
	EXPECT_EQ(poke_site_prepare(e.p, &sa, a->addr, newa, newa, a->len,
					  NULL, msg, sizeof(msg)), POKE_E_OLD_MISMATCH);
	EXPECT_TRUE_MSG(strstr(msg, "site_nop5_a+0x") == msg, "message: %s", msg);
	/*
	 * And at finish: b's expectation goes stale after prepare.  The good
	 * site a must not be written either, and no sync may happen.
	 */
	EXPECT_EQ_FATAL(poke_site_prepare(e.p, &sa, a->addr, olda, newa, a->len,
						NULL, msg, sizeof(msg)), POKE_OK);
	EXPECT_EQ_FATAL(poke_site_prepare(e.p, &sb, b->addr, oldb, newb, b->len,
						NULL, msg, sizeof(msg)), POKE_OK);
	sb.old[1] ^= 0xff;
	patcher_stats(e.p, &st0);
	bt = poke_batch_new(e.p);
	EXPECT_EQ(poke_batch_add(bt, &sa), POKE_OK);
	EXPECT_EQ(poke_batch_add(bt, &sb), POKE_OK);
	EXPECT_EQ(poke_batch_finish(bt, msg, sizeof(msg)), POKE_E_OLD_MISMATCH);
	EXPECT_TRUE_MSG(strstr(msg, "site_nop2_a+0x") == msg, "message: %s", msg);
	poke_batch_free(bt);
	patcher_stats(e.p, &st1);
	EXPECT_EQ_U64(st0.syncs, st1.syncs);
	expect_bytes(&e, a, olda, "old");
	expect_bytes(&e, b, oldb, "old");
out:
	env_end(&e);
}

/*
 * Every exported site in one batch, added in descending address order;
 * three syncs for the lot; then back, one site at a time.
 */
static void test_kvm_batch_all_sites(void)
{
	uint8_t old[VMPOKE_MAX_SITES][POKE_MAX_LEN], new[VMPOKE_MAX_SITES][POKE_MAX_LEN];
	struct poke_stats st0, st1;
	enum poke_err err;
	int tries = 0;
	struct poke_batch *bt;
	struct poke_site s;
	struct env e = { 0 };
	char msg[512];
	uint32_t i, n;

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 2, NULL))
		goto out;
	n = e.sites.nr_sites;
	bt = poke_batch_new(e.p);
	for (i = n; i-- > 0;) {
		const struct vmpoke_site_desc *d = &e.sites.sites[i];

		site_variant(&e, d, 0, old[i]);
		site_variant(&e, d, 1, new[i]);
		EXPECT_EQ(poke_site_prepare(e.p, &s, d->addr, old[i], new[i], d->len,
						  NULL, msg, sizeof(msg)), POKE_OK);
		EXPECT_TRUE_MSG(!msg[0], "site %u: %s", i, msg);
		EXPECT_EQ(poke_batch_add(bt, &s), POKE_OK);
	}
	/*
	 * HOT runs the MULTI sites natively on kvm_pvm and hardware, so a
	 * vCPU or a preempted task may sit inside one for every retry of the
	 * shadow check: a correct abort that undid the batch.  Try again, as
	 * a user would; count the syncs of the batch that went through.
	 */
	do {
		patcher_stats(e.p, &st0);
		err = poke_batch_finish(bt, msg, sizeof(msg));
	} while (err == POKE_E_SHADOW_BUSY && ++tries < 50);
	EXPECT_EQ(err, POKE_OK);
	EXPECT_TRUE_MSG(!msg[0], "%s", msg);
	poke_batch_free(bt);
	patcher_stats(e.p, &st1);
	EXPECT_EQ_U64(3, st1.syncs - st0.syncs);	/* not one per site */
	EXPECT_EQ_U64(n, st1.patches - st0.patches);
	for (i = 0; i < n; i++)
		expect_bytes(&e, &e.sites.sites[i], new[i], "new");
	let_run();
	for (i = 0; i < n; i++) {
		EXPECT_EQ(flip_until_done(&e, &e.sites.sites[i], 1, 0, msg, sizeof(msg)), POKE_OK);
		EXPECT_TRUE_MSG(!msg[0], "site %u back: %s", i, msg);
		expect_bytes(&e, &e.sites.sites[i], old[i], "old");
	}
	let_run();
out:
	env_end(&e);
}

/* A 5-byte site across a 4 KiB page boundary, flipped back and forth. */
static void test_kvm_page_crossing(void)
{
	const struct vmpoke_site_desc *d = NULL;
	uint8_t want[POKE_MAX_LEN];
	struct env e = { 0 };
	char msg[512];
	unsigned int k;
	uint32_t i;

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 2, NULL))
		goto out;
	for (i = 0; i < e.sites.nr_sites; i++)
		if (e.sites.sites[i].flags & VMPOKE_SITEF_STRADDLE_PAGE)
			d = &e.sites.sites[i];
	EXPECT_TRUE_MSG(d != NULL, "the guest exports no page-crossing site");
	if (!d)
		goto out;
	EXPECT_TRUE_MSG((d->addr & 0xfff) + d->len > 0x1000, "site 0x%llx does not "
			"cross a page", (unsigned long long)d->addr);
	for (k = 0; k < 6; k++) {
		EXPECT_EQ(flip(&e, d, k & 1, !(k & 1), msg, sizeof(msg)), POKE_OK);
		EXPECT_TRUE_MSG(!msg[0], "flip %u: %s", k, msg);
		site_variant(&e, d, !(k & 1), want);
		expect_bytes(&e, d, want, k & 1 ? "old" : "new");
		let_run();
	}
out:
	env_end(&e);
}

/*
 * The hook itself on real guest memory, deterministically: a live site is
 * emulated from the queue, a retired site whose byte is no longer INT3 is
 * a ghost (resume at the address), a 0xCC we do not own is foreign.
 */
static void test_kvm_hook_verdicts(void)
{
	const struct vmpoke_site_desc *d, *c;
	uint8_t old[POKE_MAX_LEN], new[POKE_MAX_LEN], byte;
	struct poke_stats st0, st1;
	struct vmm_trap t;
	struct poke_site s;
	struct env e = { 0 };
	char msg[512];
	uint64_t pad;

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 1, NULL))
		goto out;
	d = site_of(&e, VMPOKE_SITE_NOP5_JMP32, 0);
	c = site_of(&e, VMPOKE_SITE_CALL32, 0);
	if (!d || !c)
		goto out;
	site_variant(&e, d, 0, old);
	site_variant(&e, d, 1, new);
	EXPECT_EQ_FATAL(poke_site_prepare(e.p, &s, d->addr, old, new, d->len,
						NULL, msg, sizeof(msg)), POKE_OK);
	patcher_stats(e.p, &st0);
	/* Live: the queued JMP, never the NOP5 in memory. */
	pthread_mutex_lock(&e.p->lock);
	EXPECT_EQ(traptable_add(&e.p->table, &s, 1), 0);
	pthread_mutex_unlock(&e.p->lock);
	t = (struct vmm_trap){ .vm = e.vm, .addr = d->addr, .rip = d->addr + 1,
			       .rsp = 0x8000, .rflags = 2 };
	EXPECT_EQ(traptable_hook(&t, e.p), VMM_TRAP_HANDLED);
	EXPECT_EQ_U64(d->target[0], t.rip);
	/* Retired, byte not INT3: ghost. */
	pthread_mutex_lock(&e.p->lock);
	EXPECT_EQ(traptable_remove(&e.p->table, &s, 1), 0);
	pthread_mutex_unlock(&e.p->lock);
	t.rip = d->addr + 1;
	EXPECT_EQ(traptable_hook(&t, e.p), VMM_TRAP_HANDLED);
	EXPECT_EQ_U64(d->addr, t.rip);
	/* A 0xCC that is not ours: the padding after the function. */
	pad = c->addr + c->len + 1;	/* ret, then 0xcc padding (sites.S) */
	EXPECT_EQ(vmm_gva_read(e.vm, pad, &byte, 1), 0);
	EXPECT_EQ_U64(POKE_INT3, byte);
	t.addr = pad;
	t.rip = pad + 1;
	EXPECT_EQ(traptable_hook(&t, e.p), VMM_TRAP_FOREIGN);
	EXPECT_EQ_U64(pad + 1, t.rip);
	patcher_stats(e.p, &st1);
	EXPECT_EQ_U64(1, st1.trap_hits - st0.trap_hits);
	EXPECT_EQ_U64(1, st1.ghost_traps - st0.ghost_traps);
	EXPECT_EQ_U64(1, st1.foreign_traps - st0.foreign_traps);
out:
	env_end(&e);
}

/* vCPU id's CPL0 frame, through the validated per-vCPU reader. */
static uint64_t cpl0_frame(struct env *e, unsigned int id)
{
	uint64_t frame = 0;

	EXPECT_EQ(vmm_cpl0_frame(e->vm, id, &frame), 0);
	return frame;
}

/*
 * A trap still in flight after its site was retired, planted (on the
 * doorbell path a kick can take a vCPU out of guest mode in the #BP stub
 * before its doorbell; the natural race is rare under TCG): vCPU 1, parked
 * at CPL3 at RIP R, is made to look as if it had just hit an INT3 at R -
 * at the stub's first instruction, with the CPU's frame (R + 1 and its own
 * CS, RFLAGS, RSP, SS) at rsp0 - 40.  No site is live and the byte at R is
 * no INT3: the hook files it a ghost, and the task resumes at R as if
 * nothing happened (its own checks would see anything else).
 * Path (b) only: on path (a) vmpoke's INT3s arrive as debug exits, so a
 * ring is a #BP already handed back as foreign; the VMM answers FOREIGN
 * without asking the hook again (trap.c).  There the frame says R (the
 * guest's own handler resumes there) and the test checks exactly that:
 * no hook call, no ghost, and the guest counted one foreign #BP.
 */
static void test_kvm_ghost_traps(void)
{
	const struct sym *bp;
	struct kvm_regs regs, r;
	struct kvm_sregs sregs, sr;
	struct poke_stats st0, st1;
	struct env e = { 0 };
	uint64_t frame[5], at;
	uint8_t byte = POKE_INT3;
	struct vmm_vcpu_stats vs0, vs1;
	struct vmpoke_percpu pc0, pc1;
	char msg[256];
	bool path_a;
	int tries;

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 2, NULL))
		goto out;
	path_a = vmm_trap_path(e.vm) == VMM_TRAP_DEBUG_EXIT;
	bp = symtab_find(vmm_symtab(e.vm), VMPOKE_SYM_BP_ENTRY);
	EXPECT_NOT_NULL_FATAL(bp);
	for (tries = 0; tries < 50; tries++) {	/* parked at CPL3, not in the tick */
		EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
		EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e.vm, 1, &regs), 0);
		EXPECT_EQ_FATAL(vmm_vcpu_get_sregs(e.vm, 1, &sregs), 0);
		if ((sregs.cs.selector & 3) == 3)
			break;
		EXPECT_EQ_FATAL(vmm_vcpu_online(e.vm, 1), 0);
		usleep(1000);
	}
	EXPECT_EQ_FATAL((sregs.cs.selector & 3), 3);
	EXPECT_EQ(vmm_gva_read(e.vm, regs.rip, &byte, 1), 0);
	EXPECT_NE_FATAL(byte, POKE_INT3);
	at = cpl0_frame(&e, 1);		/* rsp0 - 40, where the CPU puts it */
	frame[0] = path_a ? regs.rip : regs.rip + 1;
	frame[1] = sregs.cs.selector;
	frame[2] = regs.rflags;
	frame[3] = regs.rsp;
	frame[4] = sregs.ss.selector;
	EXPECT_EQ(vmm_gva_write(e.vm, at, frame, sizeof(frame)), 0);
	r = regs;
	r.rip = bp->addr;
	r.rsp = at;
	r.rflags = 0x2;			/* an interrupt gate cleared IF */
	sr = sregs;
	sr.cs.selector = 0x8;		/* the guest's kernel CS and DS: CPL0 */
	sr.cs.dpl = 0;
	sr.ss.selector = 0x10;
	sr.ss.dpl = 0;
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &r), 0);
	EXPECT_EQ(vmm_vcpu_set_sregs(e.vm, 1, &sr), 0);
	patcher_stats(e.p, &st0);
	vmm_vcpu_stats(e.vm, 1, &vs0);
	EXPECT_EQ(vmm_percpu_read(e.vm, 1, &pc0, msg, sizeof(msg)), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	let_run();
	patcher_stats(e.p, &st1);
	vmm_vcpu_stats(e.vm, 1, &vs1);
	EXPECT_EQ(vmm_percpu_read(e.vm, 1, &pc1, msg, sizeof(msg)), 0);
	EXPECT_EQ_U64(path_a ? 0 : 1, st1.ghost_traps - st0.ghost_traps);
	EXPECT_EQ_U64(0, st1.foreign_traps - st0.foreign_traps);
	EXPECT_EQ_U64(0, st1.trap_hits - st0.trap_hits);
	EXPECT_EQ_U64(path_a ? 0 : 1, vs1.traps - vs0.traps);
	EXPECT_EQ_U64(path_a ? 1 : 0, pc1.foreign_bp - pc0.foreign_bp);
out:
	env_end(&e);	/* the task's own checks: it resumed where it was */
}

/* The guest's own int3s pass through the hook untouched (FOREIGN). */
/*
 * The hook's emulated push honours the page tables as the CPU would: a
 * live CALL trapped at CPL3 with its stack in a read-only page is not
 * emulated (rip stays at the site: the guest will take the #PF itself),
 * at CPL0 (CR0.WP clear) the push lands.  The page is low memory no one
 * uses, made read-only in the guest's own page table for the test.
 */
static void test_kvm_hook_stack_rights(void)
{
	const uint64_t page = 0x9000, pte_at = VMPOKE_PT_GPA + 8 * (page >> 12);
	const struct vmpoke_site_desc *c;
	uint8_t old[POKE_MAX_LEN], new[POKE_MAX_LEN];
	uint64_t pte, ro, slot = 0x1111;
	struct vmm_trap t;
	struct poke_site s;
	struct env e = { 0 };
	char msg[512];

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 1, NULL))
		goto out;
	c = site_of(&e, VMPOKE_SITE_CALL32, 0);
	if (!c)
		goto out;
	site_variant(&e, c, 0, old);
	site_variant(&e, c, 1, new);
	EXPECT_EQ_FATAL(poke_site_prepare(e.p, &s, c->addr, old, new, c->len,
						NULL, msg, sizeof(msg)), POKE_OK);
	EXPECT_EQ_FATAL(vmm_gva_read(e.vm, pte_at, &pte, 8), 0);
	EXPECT_EQ_FATAL((pte & 0x7), 0x7);	/* present, writable, user */
	ro = pte & ~0x2ull;
	EXPECT_EQ(vmm_gva_write(e.vm, pte_at, &ro, 8), 0);
	EXPECT_EQ(vmm_gva_write(e.vm, page + 0xff8, &slot, 8), 0);
	pthread_mutex_lock(&e.p->lock);
	EXPECT_EQ(traptable_add(&e.p->table, &s, 1), 0);
	pthread_mutex_unlock(&e.p->lock);
	t = (struct vmm_trap){ .vm = e.vm, .addr = c->addr, .rip = c->addr + 1,
			       .rsp = page + 0x1000, .rflags = 2, .cpl = 3 };
	EXPECT_EQ(traptable_hook(&t, e.p), VMM_TRAP_HANDLED);
	EXPECT_EQ_U64(c->addr, t.rip);
	EXPECT_EQ_U64(page + 0x1000, t.rsp);
	EXPECT_EQ(vmm_gva_read(e.vm, page + 0xff8, &slot, 8), 0);
	EXPECT_EQ_U64(0x1111, slot);
	t = (struct vmm_trap){ .vm = e.vm, .addr = c->addr, .rip = c->addr + 1,
			       .rsp = page + 0x1000, .rflags = 2, .cpl = 0 };
	EXPECT_EQ(traptable_hook(&t, e.p), VMM_TRAP_HANDLED);
	EXPECT_EQ_U64(s.emu.target, t.rip);
	EXPECT_EQ(vmm_gva_read(e.vm, page + 0xff8, &slot, 8), 0);
	EXPECT_EQ_U64(c->addr + c->len, slot);
	pthread_mutex_lock(&e.p->lock);
	EXPECT_EQ(traptable_remove(&e.p->table, &s, 1), 0);
	pthread_mutex_unlock(&e.p->lock);
	EXPECT_EQ(vmm_gva_write(e.vm, pte_at, &pte, 8), 0);
out:
	env_end(&e);
}

static void test_kvm_foreign_int3(void)
{
	struct poke_stats st;
	struct env e = { 0 };

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_INT3, 2, NULL))
		goto out;
	let_run();
	let_run();
	patcher_stats(e.p, &st);
	EXPECT_TRUE_MSG(st.foreign_traps > 0, "no foreign trap seen");
	EXPECT_EQ_U64(0, st.trap_hits);
	EXPECT_EQ_U64(0, st.ghost_traps);
out:
	env_end(&e);	/* the tasks check their own int3 counts */
}

static bool multi_site(struct env *e, unsigned int nth, struct poke_site *s,
		       const struct vmpoke_site_desc **dp)
{
	const struct vmpoke_site_desc *d = site_of(e, VMPOKE_SITE_MULTI, nth);
	uint8_t old[POKE_MAX_LEN], new[POKE_MAX_LEN];
	char msg[512];

	*dp = d;
	if (!d)
		return false;
	site_variant(e, d, 0, old);
	site_variant(e, d, 1, new);
	EXPECT_EQ(poke_site_prepare(e->p, s, d->addr, old, new, d->len,
					  NULL, msg, sizeof(msg)), POKE_OK);
	EXPECT_TRUE_MSG(s->old_insns > 1, "%s: %u instructions", s->where, s->old_insns);
	return !msg[0];
}

static enum poke_err run_one(struct env *e, const struct poke_site *s,
			     char *msg, size_t msglen)
{
	struct poke_batch *bt = poke_batch_new(e->p);
	enum poke_err err = poke_batch_add(bt, s);

	if (!err)
		err = poke_batch_finish(bt, msg, msglen);
	poke_batch_free(bt);
	return err;
}

/* KVM, a HOT guest on 2 vCPUs, and its nth multi-instruction site prepared. */
static bool shadow_boot(struct env *e, const struct patcher_opts *opts, unsigned int nth,
			struct poke_site *s, const struct vmpoke_site_desc **dp)
{
	return testlib_require_kvm() && env_boot(e, VMPOKE_SCN_HOT, 2, opts) &&
	       multi_site(e, nth, s, dp);
}

/*
 * After the planted context is gone the batch must go through, but the HOT
 * workload really executes the site, so some other vCPU or task may sit in
 * the range at that moment: a correct, retryable shadow abort.  Retry as a
 * user would; a batch that never goes through still fails the test.
 */
static enum poke_err run_until_done(struct env *e, const struct poke_site *s,
				    char *msg, size_t msglen)
{
	enum poke_err err = POKE_E_SHADOW_BUSY;

	for (int i = 0; i < 50 && err == POKE_E_SHADOW_BUSY; i++)
		err = run_one(e, s, msg, msglen);
	return err;
}

/*
 * The shadow abort names the planted context exactly: who, where its RIP
 * is, and the site with its length.  Other culprits may be listed beside
 * it (a vCPU running the site natively), so look for ours among them.
 */
static void expect_culprit(struct env *e, const char *msg, const char *who,
			   uint64_t rip, const struct poke_site *s)
{
	char at[96], want[256];

	site_where(e->p, rip, at, sizeof(at));
	snprintf(want, sizeof(want), "%s at %s inside site %s (%u bytes)",
		 who, at, s->where, s->len);
	EXPECT_TRUE_MSG(strstr(msg, want) != NULL, "expected \"%s\" among the culprits in: %s",
			want, msg);
}

/*
 * A vCPU parked (offline) with its RIP inside a multi-instruction range:
 * the batch must retry, give up, and leave the old bytes; with the RIP
 * put back it must succeed.
 */
static void test_kvm_shadow_vcpu(void)
{
	struct patcher_opts opts = { .shadow_retries = 3, .shadow_backoff_us = 1000 };
	const struct vmpoke_site_desc *d;
	struct kvm_regs saved, regs;
	struct poke_stats st0, st1;
	struct poke_site s;
	struct env e = { 0 };
	char msg[1024];

	if (!shadow_boot(&e, &opts, 0, &s, &d))
		goto out;
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e.vm, 1, &saved), 0);
	regs = saved;
	regs.rip = d->addr + 2;		/* the second instruction */
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &regs), 0);
	patcher_stats(e.p, &st0);
	EXPECT_EQ(run_one(&e, &s, msg, sizeof(msg)), POKE_E_SHADOW_BUSY);
	/*
	 * vCPU 0 runs the site natively on kvm_pvm and hardware, so it may be
	 * inside too: the message lists every culprit, and ours must be one.
	 */
	expect_culprit(&e, msg, "vcpu 1 rip", d->addr + 2, &s);
	patcher_stats(e.p, &st1);
	EXPECT_EQ_U64(3, st1.shadow_retries - st0.shadow_retries);
	EXPECT_EQ_U64(1, st1.shadow_aborts - st0.shadow_aborts);
	expect_bytes(&e, d, s.old, "old");
	/* RIP back where it was: the same batch goes through. */
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &saved), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	EXPECT_EQ(run_until_done(&e, &s, msg, sizeof(msg)), POKE_OK);
	EXPECT_TRUE_MSG(!msg[0], "%s", msg);
	expect_bytes(&e, d, s.new, "new");
	let_run();
out:
	env_end(&e);
}

/*
 * Offline vCPU 1 and make it look as if it were at CPL0 at rip with stack
 * rsp, the saved state in *regs / *sregs for plant_undo().
 */
static void plant_cpl0(struct env *e, uint64_t rip, uint64_t rsp,
		       struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	struct kvm_regs r;
	struct kvm_sregs sr;

	EXPECT_EQ_FATAL(vmm_vcpu_offline(e->vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e->vm, 1, regs), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_sregs(e->vm, 1, sregs), 0);
	r = *regs;
	sr = *sregs;
	r.rip = rip;
	r.rsp = rsp;
	sr.cs.selector = 0x8;		/* the guest's kernel CS: CPL0 */
	sr.cs.dpl = 0;
	EXPECT_EQ(vmm_vcpu_set_regs(e->vm, 1, &r), 0);
	EXPECT_EQ(vmm_vcpu_set_sregs(e->vm, 1, &sr), 0);
}

static void plant_undo(struct env *e, const struct kvm_regs *regs,
		       const struct kvm_sregs *sregs)
{
	EXPECT_EQ(vmm_vcpu_set_regs(e->vm, 1, regs), 0);
	EXPECT_EQ(vmm_vcpu_set_sregs(e->vm, 1, sregs), 0);
	EXPECT_EQ(vmm_vcpu_online(e->vm, 1), 0);
}

/*
 * A vCPU at CPL0 (in an interrupt handler, say) whose interrupted RIP, in
 * the frame at rsp0 - VMPOKE_CPL0_FRAME_SIZE, lies inside a multi-instruction range: planted,
 * so the CPL0-frame check is covered every run, not by chance.
 */
static void test_kvm_shadow_frame(void)
{
	struct patcher_opts opts = { .shadow_retries = 2, .shadow_backoff_us = 1000 };
	const struct vmpoke_site_desc *d;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint64_t frame, saved = 0, fake;
	struct poke_site s;
	struct env e = { 0 };
	char msg[1024];

	if (!shadow_boot(&e, &opts, 0, &s, &d))
		goto out;
	frame = cpl0_frame(&e, 1);
	plant_cpl0(&e, d->addr + d->len + 0x100, frame - 64, &regs, &sregs);
	EXPECT_EQ(vmm_gva_read(e.vm, frame, &saved, sizeof(saved)), 0);
	fake = d->addr + 2;
	EXPECT_EQ(vmm_gva_write(e.vm, frame, &fake, sizeof(fake)), 0);
	EXPECT_EQ(run_one(&e, &s, msg, sizeof(msg)), POKE_E_SHADOW_BUSY);
	expect_culprit(&e, msg, "vcpu 1 interrupted rip", fake, &s);
	expect_bytes(&e, d, s.old, "old");
	EXPECT_EQ(vmm_gva_write(e.vm, frame, &saved, sizeof(saved)), 0);
	plant_undo(&e, &regs, &sregs);
	EXPECT_EQ(run_until_done(&e, &s, msg, sizeof(msg)), POKE_OK);
	expect_bytes(&e, d, s.new, "new");
	let_run();
out:
	env_end(&e);
}

/* The address of the first instruction of sym matching byte op after at. */
static uint64_t stub_insn(struct env *e, const char *sym, uint8_t op, unsigned int nth)
{
	const struct sym *fn = symtab_find(vmm_symtab(e->vm), sym);
	uint8_t code[256];

	EXPECT_NOT_NULL_FATAL(fn);
	EXPECT_TRUE_FATAL(fn->size <= sizeof(code));
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, fn->addr, code, fn->size), 0);
	for (uint64_t i = 0; i < fn->size; i++)
		if (code[i] == op && !nth--)
			return fn->addr + i;
	CU_FAIL_FATAL("opcode not found in the stub");
	return 0;
}

/* vCPU 1 at rip in the stub with stack[0..n) = words: the frame's RIP is inside. */
static void expect_stub_culprit(struct env *e, const struct poke_site *s,
				const struct vmpoke_site_desc *d, uint64_t rip,
				uint64_t stack, const uint64_t *words, unsigned int n)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char msg[1024];

	EXPECT_EQ(vmm_gva_write(e->vm, stack, words, n * 8), 0);
	plant_cpl0(e, rip, stack, &regs, &sregs);
	EXPECT_EQ(run_one(e, s, msg, sizeof(msg)), POKE_E_SHADOW_BUSY);
	expect_culprit(e, msg, "vcpu 1 #BP frame rip", words[n - 2], s);
	expect_bytes(e, d, s->old, "old");
	plant_undo(e, &regs, &sregs);
}

/*
 * A vCPU parked inside the #BP stub: the frame is found by decoding the
 * stub (at its first instruction the frame is at %rsp, after the push at
 * %rsp + 8), and a vCPU that has yet to ring the doorbell for the site's
 * own INT3 (frame RIP = site + 1) is not inside, while one that got past
 * the doorbell with that frame (the guest's handler would resume it there)
 * is.
 */
static void test_kvm_shadow_bp_stub(void)
{
	struct patcher_opts opts = { .shadow_retries = 2, .shadow_backoff_us = 1000 };
	const struct vmpoke_site_desc *d;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint64_t stack, entry, in, pop, frame[6], saved[6], cs3 = 0x2b;
	struct poke_site s;
	struct env e = { 0 };
	char msg[1024];

	if (!shadow_boot(&e, &opts, 0, &s, &d))
		goto out;
	entry = symtab_find(vmm_symtab(e.vm), VMPOKE_SYM_BP_ENTRY)->addr;
	in = stub_insn(&e, VMPOKE_SYM_BP_ENTRY, 0xe4, 0);	/* inb $imm8, %al */
	pop = stub_insn(&e, VMPOKE_SYM_BP_ENTRY, 0x58, 1);	/* the foreign path's pop */
	stack = cpl0_frame(&e, 1) + VMPOKE_CPL0_FRAME_SIZE - 1024;	/* rsp0 - 1024 */
	EXPECT_EQ(vmm_gva_read(e.vm, stack, saved, sizeof(saved)), 0);

	/* At the stub's first instruction: the frame is at %rsp. */
	frame[0] = d->addr + 2;
	frame[1] = cs3;
	expect_stub_culprit(&e, &s, d, entry, stack, frame, 2);
	/* Past the doorbell with frame RIP = site + 1: it resumes inside. */
	frame[0] = 0;
	frame[1] = d->addr + 1;
	frame[2] = cs3;
	expect_stub_culprit(&e, &s, d, pop, stack, frame, 3);

	/* At the doorbell for the site's own INT3: not inside. */
	plant_cpl0(&e, in, stack, &regs, &sregs);
	EXPECT_EQ(run_until_done(&e, &s, msg, sizeof(msg)), POKE_OK);
	EXPECT_TRUE_MSG(!msg[0], "%s", msg);
	expect_bytes(&e, d, s.new, "new");
	plant_undo(&e, &regs, &sregs);
	EXPECT_EQ(vmm_gva_write(e.vm, stack, saved, sizeof(saved)), 0);
	let_run();
out:
	env_end(&e);
}

/*
 * A breakpoint hit in the timer's callee at CPL0 (sc_tick's site in
 * sched_tick_hook(), where the host traps a CPL0 INT3) nests a #BP frame
 * under the timer's entry frame (vmpoke_abi.h, "CPL0 frames").  Planted on
 * vCPU 1: parked at the #BP stub's doorbell, with the #BP frame (from CPL0)
 * below the task context and the call into sched_tick_hook() on its kernel
 * stack, and the timer's frame at rsp0 - 40 holding the task's RIP.  An
 * interrupted RIP inside the range must be found at both levels; with the
 * #BP frame at the site's own INT3 and the task outside, the batch goes on.
 */
static void nested_plant(struct env *e, uint64_t entry, uint64_t task_rip, uint64_t stack,
			 uint64_t bp_rip)
{
	uint64_t tf[5] = { task_rip, 0x2b, 0x202, 0x7ff000, 0x33 };
	uint64_t bp[6] = { 0, bp_rip, 0x8, 0x2, stack + 8 + VMPOKE_CPL0_FRAME_SIZE, 0x10 };

	EXPECT_EQ(vmm_gva_write(e->vm, entry, tf, sizeof(tf)), 0);
	EXPECT_EQ(vmm_gva_write(e->vm, stack, bp, sizeof(bp)), 0);
}

static void test_kvm_shadow_nested_frame(void)
{
	struct patcher_opts opts = { .shadow_retries = 2, .shadow_backoff_us = 1000 };
	const struct vmpoke_site_desc *d;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	uint64_t in, entry, stack, outside, saved_entry[5], saved_bp[6];
	struct poke_site s;
	struct env e = { 0 };
	char msg[1024];

	if (!shadow_boot(&e, &opts, 0, &s, &d))
		goto out;
	in = stub_insn(&e, VMPOKE_SYM_BP_ENTRY, 0xe4, 0);	/* inb: frame at %rsp + 8 */
	entry = cpl0_frame(&e, 1);
	/* Under the 15 saved task registers, the return into the timer and a C frame. */
	stack = ((entry - 15 * 8 - 8 - 32) & ~15ull) - VMPOKE_CPL0_FRAME_SIZE - 8;
	outside = d->addr + d->len + 0x100;
	plant_cpl0(&e, in, stack, &regs, &sregs);	/* offline first: the stack is live */
	EXPECT_EQ(vmm_gva_read(e.vm, entry, saved_entry, sizeof(saved_entry)), 0);
	EXPECT_EQ(vmm_gva_read(e.vm, stack, saved_bp, sizeof(saved_bp)), 0);

	/* The task the timer interrupted is inside: the outer level. */
	nested_plant(&e, entry, d->addr + 2, stack, outside);
	EXPECT_EQ(run_one(&e, &s, msg, sizeof(msg)), POKE_E_SHADOW_BUSY);
	expect_culprit(&e, msg, "vcpu 1 interrupted rip", d->addr + 2, &s);
	expect_bytes(&e, d, s.old, "old");
	/* The nested #BP frame is inside: the inner level. */
	nested_plant(&e, entry, outside, stack, d->addr + 3);
	EXPECT_EQ(run_one(&e, &s, msg, sizeof(msg)), POKE_E_SHADOW_BUSY);
	expect_culprit(&e, msg, "vcpu 1 #BP frame rip", d->addr + 3, &s);
	expect_bytes(&e, d, s.old, "old");
	/* The #BP frame at the site's own INT3, before the doorbell: not inside. */
	nested_plant(&e, entry, outside, stack, d->addr + 1);
	EXPECT_EQ(run_until_done(&e, &s, msg, sizeof(msg)), POKE_OK);
	EXPECT_TRUE_MSG(!msg[0], "%s", msg);
	expect_bytes(&e, d, s.new, "new");

	EXPECT_EQ(vmm_gva_write(e.vm, entry, saved_entry, sizeof(saved_entry)), 0);
	EXPECT_EQ(vmm_gva_write(e.vm, stack, saved_bp, sizeof(saved_bp)), 0);
	plant_undo(&e, &regs, &sregs);
	let_run();
out:
	env_end(&e);
}

/* A preempted task whose saved RIP is inside the range (seed 000, docs/design.md). */
static void test_kvm_shadow_task(void)
{
	struct patcher_opts opts = { .shadow_retries = 2, .shadow_backoff_us = 1000 };
	const size_t hdr = offsetof(struct vmpoke_task_table, tasks);
	static struct vmpoke_task_table h;
	const struct vmpoke_site_desc *d;
	struct vmpoke_task task;
	uint64_t tab, at = 0, saved_rip = 0, fake;
	struct poke_site s;
	struct env e = { 0 };
	char msg[1024], want[64];
	uint32_t i;

	if (!shadow_boot(&e, &opts, 1, &s, &d))
		goto out;
	tab = symtab_find(vmm_symtab(e.vm), VMPOKE_SYM_TASKS)->addr;
	/* vCPU 1 parked: its RUNNABLE tasks cannot run while we fake one. */
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_tasks_read(e.vm, &h, msg, sizeof(msg)), 0);
	for (i = 0; i < h.nr_tasks; i++) {
		task = h.tasks[i];
		if (task.vcpu == 1 && task.state == VMPOKE_TASK_RUNNABLE) {
			at = tab + hdr + i * sizeof(task) +
			     offsetof(struct vmpoke_task, ctx.rip);
			saved_rip = task.ctx.rip;
			break;
		}
	}
	EXPECT_TRUE_MSG(at != 0, "no RUNNABLE task on vcpu 1 (%u tasks)", h.nr_tasks);
	if (!at) {
		vmm_vcpu_online(e.vm, 1);
		goto out;
	}
	fake = d->addr + 3;
	EXPECT_EQ(vmm_gva_write(e.vm, at, &fake, sizeof(fake)), 0);
	EXPECT_EQ(run_one(&e, &s, msg, sizeof(msg)), POKE_E_SHADOW_BUSY);
	snprintf(want, sizeof(want), "task %u (vcpu 1) saved rip", task.id);
	expect_culprit(&e, msg, want, fake, &s);
	expect_bytes(&e, d, s.old, "old");
	EXPECT_EQ(vmm_gva_write(e.vm, at, &saved_rip, sizeof(saved_rip)), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	EXPECT_EQ(run_until_done(&e, &s, msg, sizeof(msg)), POKE_OK);
	EXPECT_TRUE_MSG(!msg[0], "%s", msg);
	expect_bytes(&e, d, s.new, "new");
	let_run();
out:
	env_end(&e);
}

static const uint8_t nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };

/*
 * A 5-byte CALL in guest_boot: kernel (CPL0) text that ran once at boot and
 * never runs again, so even an INT3 there is safe on kvm_pvm.  Prepared as
 * NOP5 into *s; its original bytes in orig.
 */
static bool cpl0_boot_site(struct env *e, struct poke_site *s, uint8_t *orig)
{
	const struct sym *fn = symtab_find(vmm_symtab(e->vm), "guest_boot");
	uint8_t code[4096];
	char msg[512];

	EXPECT_NOT_NULL_FATAL(fn);
	EXPECT_TRUE_FATAL(fn->size <= sizeof(code));
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, fn->addr, code, fn->size), 0);
	for (uint64_t i = 0; i + 5 <= fn->size; i++) {
		if (code[i] != 0xe8 || poke_site_prepare(e->p, s, fn->addr + i, NULL, nop5,
							 5, NULL, msg, sizeof(msg)))
			continue;
		memcpy(orig, code + i, 5);
		EXPECT_TRUE_MSG(patcher_addr_is_cpl0(e->p, s->addr), "%s is not CPL0 text",
				s->where);
		return true;
	}
	CU_FAIL("no patchable CALL in guest_boot");
	return false;
}

static uint64_t kvm_syncs(struct env *e)
{
	struct poke_stats st;

	patcher_stats(e->p, &st);
	return st.syncs;
}

/*
 * CPL0 text written stop-the-world: no INT3, no sync; a vCPU whose RIP is
 * inside the instruction makes it retry and give up, old bytes intact; in a
 * batch with a CPL3 site only that one goes through the breakpoint protocol.
 */
static void test_kvm_cpl0_stop_the_world(void)
{
	struct patcher_opts opts = { .shadow_retries = 2, .shadow_backoff_us = 1000,
				     .cpl0_patch = POKE_CPL0_STOP_THE_WORLD };
	const struct vmpoke_site_desc *d;
	struct kvm_regs saved, regs;
	struct poke_site s, back, u;
	uint8_t orig[5], cur[5], old[POKE_MAX_LEN], new[POKE_MAX_LEN];
	struct poke_batch *bt;
	struct env e = { 0 };
	uint64_t syncs;
	char msg[1024];

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 2, &opts) ||
	    !cpl0_boot_site(&e, &s, orig))
		goto out;
	EXPECT_EQ(s.method, POKE_METHOD_STOP_THE_WORLD);
	EXPECT_FALSE(patcher_cpl0_trappable(e.p));
	d = site_of(&e, VMPOKE_SITE_NOP5_JMP32, 0);
	EXPECT_NOT_NULL_FATAL(d);
	EXPECT_FALSE(patcher_addr_is_cpl0(e.p, d->addr));

	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e.vm, 1, &saved), 0);
	regs = saved;
	regs.rip = s.addr + 2;
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &regs), 0);
	EXPECT_EQ(run_one(&e, &s, msg, sizeof(msg)), POKE_E_SHADOW_BUSY);
	expect_culprit(&e, msg, "vcpu 1 rip", s.addr + 2, &s);
	EXPECT_EQ(vmm_gva_read(e.vm, s.addr, cur, 5), 0);
	EXPECT_TRUE(!memcmp(cur, orig, 5));
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &saved), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);

	/* Mixed: the CPL3 site alone costs the three syncs. */
	site_variant(&e, d, 0, old);
	site_variant(&e, d, 1, new);
	EXPECT_EQ_FATAL(poke_site_prepare(e.p, &u, d->addr, old, new, d->len, NULL,
						msg, sizeof(msg)), POKE_OK);
	EXPECT_EQ(u.method, POKE_METHOD_BREAKPOINT);
	syncs = kvm_syncs(&e);
	bt = poke_batch_new(e.p);
	EXPECT_EQ(poke_batch_add(bt, &s), POKE_OK);
	EXPECT_EQ(poke_batch_add(bt, &u), POKE_OK);
	EXPECT_EQ(poke_batch_finish(bt, msg, sizeof(msg)), POKE_OK);
	poke_batch_free(bt);
	EXPECT_EQ_U64(3, kvm_syncs(&e) - syncs);
	EXPECT_EQ(vmm_gva_read(e.vm, s.addr, cur, 5), 0);
	EXPECT_TRUE(!memcmp(cur, nop5, 5));
	expect_bytes(&e, d, new, "new");

	/* Back to the CALL, alone: no sync at all. */
	EXPECT_EQ_FATAL(poke_site_prepare(e.p, &back, s.addr, nop5, orig, 5, NULL,
						msg, sizeof(msg)), POKE_OK);
	syncs = kvm_syncs(&e);
	EXPECT_EQ(run_one(&e, &back, msg, sizeof(msg)), POKE_OK);
	EXPECT_EQ_U64(0, kvm_syncs(&e) - syncs);
	EXPECT_EQ(vmm_gva_read(e.vm, s.addr, cur, 5), 0);
	EXPECT_TRUE(!memcmp(cur, orig, 5));
	let_run();
out:
	env_end(&e);
}

/* Forced breakpoint in CPL0 text: the three-sync protocol (safe here: never run). */
static void test_kvm_cpl0_breakpoint_forced(void)
{
	struct patcher_opts opts = { .cpl0_patch = POKE_CPL0_BREAKPOINT };
	struct poke_site s;
	uint8_t orig[5], cur[5];
	struct env e = { 0 };
	uint64_t syncs;
	char msg[512];

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 2, &opts) ||
	    !cpl0_boot_site(&e, &s, orig))
		goto out;
	EXPECT_EQ(s.method, POKE_METHOD_BREAKPOINT);
	EXPECT_TRUE(patcher_cpl0_trappable(e.p));
	syncs = kvm_syncs(&e);
	EXPECT_EQ(run_one(&e, &s, msg, sizeof(msg)), POKE_OK);
	EXPECT_EQ_U64(3, kvm_syncs(&e) - syncs);
	EXPECT_EQ(vmm_gva_read(e.vm, s.addr, cur, 5), 0);
	EXPECT_TRUE(!memcmp(cur, nop5, 5));
	let_run();
out:
	env_end(&e);
}

static void expect_refusal(struct env *e, uint64_t addr, const void *new, size_t len,
			   enum poke_err want, const char *prefix)
{
	struct poke_site s;
	char msg[512];
	enum poke_err got = poke_site_prepare(e->p, &s, addr, NULL, new, len, NULL,
					      msg, sizeof(msg));

	EXPECT_TRUE_MSG(got == want, "0x%llx: expected %s, got %s (%s)",
			(unsigned long long)addr, poke_strerror(want),
			poke_strerror(got), msg);
	EXPECT_TRUE_MSG(strncmp(msg, prefix, strlen(prefix)) == 0 && strstr(msg, ": "),
			"message does not start with \"%s\": %s", prefix, msg);
}

/*
 * Jumps the function scan cannot see: a jump table in the function refuses
 * a multi-instruction range (a single instruction has no inside), and a
 * site whose new JMP lands inside another site of the same batch refuses
 * the batch before anything is written.
 */
static void expect_jump_refusals(struct env *e, const struct vmpoke_site_desc *n5,
				 const struct vmpoke_site_desc *ma)
{
	static const uint8_t nop2[2] = { 0x66, 0x90 };
	const struct sym *jt = symtab_find(vmm_symtab(e->vm), "site_jump_table");
	uint8_t jmp5[5] = { 0xe9 }, old[POKE_MAX_LEN], new[POKE_MAX_LEN];
	struct poke_site s1, s2;
	struct poke_batch *bt;
	uint64_t syncs;
	char msg[512];

	EXPECT_NOT_NULL_FATAL(jt);
	put32(jmp5 + 1, (int64_t)(jt->addr + 0x12) - (int64_t)(jt->addr + 5));
	expect_refusal(e, jt->addr, jmp5, 5, POKE_E_JUMP_INTO, "site_jump_table+0x");
	EXPECT_TRUE_MSG(poke_site_prepare(e->p, &s1, jt->addr, NULL, nop2, 2, NULL, msg,
					  sizeof(msg)) == POKE_OK, "%s", msg);

	site_variant(e, n5, 0, old);
	put32(jmp5 + 1, (int64_t)(ma->addr + 2) - (int64_t)(n5->addr + 5));
	EXPECT_EQ_FATAL(poke_site_prepare(e->p, &s1, n5->addr, old, jmp5, 5, NULL,
						msg, sizeof(msg)), POKE_OK);
	site_variant(e, ma, 0, old);
	site_variant(e, ma, 1, new);
	EXPECT_EQ_FATAL(poke_site_prepare(e->p, &s2, ma->addr, old, new, ma->len,
						NULL, msg, sizeof(msg)), POKE_OK);
	syncs = kvm_syncs(e);
	bt = poke_batch_new(e->p);
	poke_batch_add(bt, &s1);
	poke_batch_add(bt, &s2);
	EXPECT_EQ(poke_batch_finish(bt, msg, sizeof(msg)), POKE_E_JUMP_INTO);
	EXPECT_TRUE_MSG(strstr(msg, "site_nop5_a+0x") == msg && strstr(msg, "site_multi_a"),
			"message: %s", msg);
	poke_batch_free(bt);
	EXPECT_EQ_U64(0, kvm_syncs(e) - syncs);
	expect_bytes(e, n5, s1.old, "old");
	expect_bytes(e, ma, s2.old, "old");
}

static void test_kvm_refusals(void)
{
	static const uint8_t ret = 0xc3, nops[5] = { 0x90, 0x90, 0x90, 0x90, 0x90 };
	static const uint8_t mov[5] = { 0xb8, 0x01, 0x00, 0x00, 0x00 };
	const struct vmpoke_site_desc *n5, *mb, *ma, *ja, *cb;
	const struct symtab *st;
	uint8_t jmp7[7] = { 0xe9, 0, 0, 0, 0, 0xcc, 0xcc }, jmp8[8], orig, cc = 0xcc;
	uint8_t old[POKE_MAX_LEN], new[POKE_MAX_LEN];
	struct poke_site s1, s2;
	struct poke_batch *bt;
	const struct sym *fn;
	struct env e = { 0 };
	char msg[512];

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 1, NULL))
		goto out;
	st = vmm_symtab(e.vm);
	n5 = site_of(&e, VMPOKE_SITE_NOP5_JMP32, 0);
	ma = site_of(&e, VMPOKE_SITE_MULTI, 0);
	mb = site_of(&e, VMPOKE_SITE_MULTI, 1);
	ja = site_of(&e, VMPOKE_SITE_JCC32, 0);
	cb = site_of(&e, VMPOKE_SITE_CALL32, 1);
	if (!n5 || !ma || !mb || !ja || !cb)
		goto out;
	memset(jmp8, 0xcc, sizeof(jmp8));
	jmp8[0] = 0xe9;
	expect_refusal(&e, symtab_find(st, VMPOKE_SYM_SITES)->addr, &ret, 1,
		       POKE_E_NOSYM, "vmpoke_sites");
	expect_refusal(&e, mb->addr + 1, &ret, 1, POKE_E_BOUNDARY, "site_multi_b+0x");
	expect_refusal(&e, ma->addr, jmp7, 4, POKE_E_BOUNDARY, "site_multi_a+0x");
	expect_refusal(&e, n5->addr, nops, 5, POKE_E_DECODE, "site_nop5_a+0x");
	expect_refusal(&e, n5->addr, mov, 5, POKE_E_EMULATE, "site_nop5_a+0x");
	fn = symtab_find(st, "guest_bp_handler");
	EXPECT_TRUE_MSG(fn != NULL, "no guest_bp_handler symbol");
	if (fn)
		expect_refusal(&e, fn->addr, &ret, 1, POKE_E_ENTRY_TEXT, "guest_bp_handler");
	/* ret; xorq $0xa1,%rax - the JNZ targets the xorq, inside the range. */
	expect_refusal(&e, ja->target[0] - 1, jmp7, 7, POKE_E_JUMP_INTO, "site_jcc_a+0x");
	/* call; incq %rax - the call returns inside the range. */
	expect_refusal(&e, cb->addr, jmp8, 8, POKE_E_JUMP_INTO, "site_call_b+0x");
	expect_refusal(&e, n5->addr, &ret, 0, POKE_E_INVAL, "site_nop5_a+0x");
	/* A foreign INT3 on code no task runs: nop5_a's jump target. */
	EXPECT_EQ(vmm_gva_read(e.vm, n5->target[0], &orig, 1), 0);
	EXPECT_EQ(vmm_gva_write(e.vm, n5->target[0], &cc, 1), 0);
	expect_refusal(&e, n5->target[0], &ret, 1, POKE_E_FOREIGN_INT3, "site_nop5_a+0x");
	EXPECT_EQ(vmm_gva_write(e.vm, n5->target[0], &orig, 1), 0);
	/* Two sites on the same bytes in one batch. */
	site_variant(&e, n5, 0, old);
	site_variant(&e, n5, 1, new);
	EXPECT_EQ(poke_site_prepare(e.p, &s1, n5->addr, old, new, 5, NULL,
					  msg, sizeof(msg)), POKE_OK);
	s2 = s1;
	bt = poke_batch_new(e.p);
	poke_batch_add(bt, &s1);
	poke_batch_add(bt, &s2);
	EXPECT_EQ(poke_batch_finish(bt, msg, sizeof(msg)), POKE_E_OVERLAP);
	EXPECT_TRUE_MSG(strstr(msg, "site_nop5_a+0x") == msg, "message: %s", msg);
	poke_batch_free(bt);
	expect_bytes(&e, n5, old, "old");
	expect_jump_refusals(&e, n5, ma);
out:
	env_end(&e);
}

/* The CALL in function fn of scenario CPL0's kernel text, prepared v1 -> v2 or back. */
static bool cpl0_call(struct env *e, const char *fn_name, bool to_v2, struct poke_site *s)
{
	const struct symtab *st = vmm_symtab(e->vm);
	const struct sym *fn = symtab_find(st, fn_name);
	const struct sym *v1 = symtab_find(st, "cpl0_callee_v1");
	const struct sym *v2 = symtab_find(st, "cpl0_callee_v2");
	uint8_t code[64], old[5] = { 0xe8 }, new[5] = { 0xe8 };
	char msg[512];

	EXPECT_TRUE_FATAL(fn && v1 && v2 && fn->size <= sizeof(code));
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, fn->addr, code, fn->size), 0);
	for (uint64_t i = 0; i + 5 <= fn->size; i++) {
		uint64_t at = fn->addr + i;

		if (code[i] != 0xe8)
			continue;
		put32(old + 1, (int64_t)(to_v2 ? v1 : v2)->addr - (int64_t)(at + 5));
		put32(new + 1, (int64_t)(to_v2 ? v2 : v1)->addr - (int64_t)(at + 5));
		EXPECT_TRUE_MSG(poke_site_prepare(e->p, s, at, old, new, 5, NULL, msg,
						  sizeof(msg)) == POKE_OK, "%s", msg);
		return !msg[0];
	}
	CU_FAIL("no CALL in the CPL0 site function");
	return false;
}

/*
 * Scenario CPL0: every vCPU calls the two CALL sites of kernel text (at a
 * 16- and an 8-byte aligned %rsp) at CPL0 and checks each result, while
 * both are flipped between their callees, batch after batch, with the
 * given method.  Any lost return address, skipped or torn CALL ends the
 * run with a check failure or a fault (env_end).
 */
static void cpl0_flips(enum poke_cpl0_patch how, unsigned int batches)
{
	struct patcher_opts opts = { .cpl0_patch = how };
	struct poke_site sa, sb;
	struct poke_stats st0, st1;
	struct poke_batch *bt;
	struct env e = { 0 };
	char msg[512];

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_CPL0, 2, &opts))
		goto out;
	patcher_stats(e.p, &st0);
	for (unsigned int i = 0; i < batches; i++) {
		if (!cpl0_call(&e, "cpl0_site_call_a", !(i & 1), &sa) ||
		    !cpl0_call(&e, "cpl0_site_call_b", !(i & 1), &sb))
			break;
		EXPECT_EQ(sa.method, how == POKE_CPL0_BREAKPOINT ?
				POKE_METHOD_BREAKPOINT : POKE_METHOD_STOP_THE_WORLD);
		bt = poke_batch_new(e.p);
		poke_batch_add(bt, &sa);
		poke_batch_add(bt, &sb);
		EXPECT_TRUE_MSG(poke_batch_finish(bt, msg, sizeof(msg)) == POKE_OK, "%s", msg);
		poke_batch_free(bt);
		if (vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL) ||
		    vmm_hcall_count(e.vm, VMPOKE_HC_FAULT))
			break;
	}
	patcher_stats(e.p, &st1);
	if (how == POKE_CPL0_BREAKPOINT) {
		EXPECT_EQ_U64(3 * batches, st1.syncs - st0.syncs);
		EXPECT_TRUE_MSG(st1.trap_hits > st0.trap_hits, "no CPL0 INT3 was hit in %u "
				"batches", batches);
	} else {
		EXPECT_EQ_U64(0, st1.syncs - st0.syncs);
	}
	let_run();
out:
	env_end(&e);
}

/* Runs everywhere: kernel text patched with every vCPU stopped. */
static void test_kvm_cpl0_running_stop_the_world(void)
{
	cpl0_flips(POKE_CPL0_STOP_THE_WORLD, 200);
}

/*
 * Only where a CPL0 INT3 is trapped (the nested KVM, hardware): the CALL
 * is emulated at CPL0 through the doorbell at both alignments, and the
 * callee must return to the right place (the int3 stack gap).
 */
static void test_kvm_cpl0_running_breakpoint(void)
{
	cpl0_flips(POKE_CPL0_BREAKPOINT, 400);
}

TEST_SUITE_IF(cpl0_int3, "cpl0_int3_kvm", vmt_cpl0_int3_unavailable,
	      TEST(test_kvm_cpl0_running_breakpoint))

/* --- the write log, and the paths only it can reach -------------------- */

struct wlog_entry {
	uint64_t addr;
	unsigned int off, n;
	uint8_t bytes[POKE_MAX_LEN];
	char what[32];
};

struct wlog {
	struct vm *vm;
	struct wlog_entry e[512];
	unsigned int n;
	const char *corrupt_what;	/* make this write's read-back fail... */
	uint64_t corrupt_addr;		/* ...on this site */
	bool corrupted;
	const char *change_after;	/* a third party writes after this phase */
	uint64_t change_at;
	bool changed;
};

static void wlog_write(void *opaque, const struct poke_site *s, unsigned int off,
		       const uint8_t *bytes, unsigned int n, const char *what)
{
	static const uint8_t cc = POKE_INT3;
	struct wlog *l = opaque;

	if (l->n < sizeof(l->e) / sizeof(l->e[0])) {
		struct wlog_entry *e = &l->e[l->n++];

		e->addr = s->addr;
		e->off = off;
		e->n = n;
		memcpy(e->bytes, bytes, n);
		snprintf(e->what, sizeof(e->what), "%s", what);
	}
	/*
	 * An INT3 where the read-back looks: a live site's INT3 is safe for
	 * the running guest (the hook emulates), and the write did not land.
	 */
	if (l->corrupt_what && !l->corrupted && s->addr == l->corrupt_addr &&
	    !strcmp(what, l->corrupt_what) && bytes[0] != POKE_INT3) {
		l->corrupted = true;
		EXPECT_EQ(vmm_gva_write(l->vm, s->addr + off, &cc, 1), 0);
	}
}

static void wlog_phase(void *opaque, const char *name, uint64_t t0, uint64_t t1)
{
	static const uint8_t cc = POKE_INT3;
	struct wlog *l = opaque;

	(void)t0;
	(void)t1;
	if (l->change_after && !l->changed && !strcmp(name, l->change_after)) {
		l->changed = true;
		EXPECT_EQ(vmm_gva_write(l->vm, l->change_at, &cc, 1), 0);
	}
}

/* The index of the first entry for site addr with what, from `from`; -1 if none. */
static int wlog_find(const struct wlog *l, uint64_t addr, const char *what, int from)
{
	for (int i = from; i < (int)l->n; i++)
		if (l->e[i].addr == addr && !strcmp(l->e[i].what, what))
			return i;
	return -1;
}

/* Three sites (MULTI, NOP5, NOP2) of a HOT guest, prepared 0 -> 1, logged. */
static bool wlog_boot(struct env *e, struct wlog *l, struct poke_site *s,
		      const struct vmpoke_site_desc **d)
{
	static const uint32_t kinds[3] = { VMPOKE_SITE_MULTI, VMPOKE_SITE_NOP5_JMP32,
					   VMPOKE_SITE_NOP2_JMP8 };
	struct patcher_opts opts = { .write_log = wlog_write, .write_log_opaque = l,
				     .phase = wlog_phase, .phase_opaque = l };
	uint8_t old[POKE_MAX_LEN], new[POKE_MAX_LEN];
	char msg[512];

	memset(l, 0, sizeof(*l));
	if (!testlib_require_kvm() || !env_boot(e, VMPOKE_SCN_HOT, 2, &opts))
		return false;
	l->vm = e->vm;
	for (int i = 0; i < 3; i++) {
		d[i] = site_of(e, kinds[i], 0);
		if (!d[i])
			return false;
		site_variant(e, d[i], 0, old);
		site_variant(e, d[i], 1, new);
		EXPECT_EQ_FATAL(poke_site_prepare(e->p, &s[i], d[i]->addr, old, new,
							d[i]->len, NULL, msg, sizeof(msg)), POKE_OK);
	}
	return true;
}

static enum poke_err wlog_batch(struct env *e, struct wlog *l, const struct poke_site *s,
				char *msg, size_t msglen)
{
	enum poke_err err = POKE_E_SHADOW_BUSY;

	/* HOT runs the MULTI site natively: a shadow abort is a retry. */
	for (int tries = 0; tries < 50 && err == POKE_E_SHADOW_BUSY; tries++) {
		struct poke_batch *bt = poke_batch_new(e->p);

		l->n = 0;
		for (int i = 0; i < 3; i++)
			poke_batch_add(bt, &s[i]);
		err = poke_batch_finish(bt, msg, msglen);
		poke_batch_free(bt);
	}
	return err;
}

/*
 * Every guest write of a batch, in order: per site INT3, then the tail,
 * then the head, and per phase all sites before the next phase.
 */
static void test_kvm_write_log_order(void)
{
	const struct vmpoke_site_desc *d[3];
	struct poke_site s[3];
	struct wlog *l = calloc(1, sizeof(*l));
	struct env e = { 0 };
	int last_int3 = -1, first_tail = 1 << 30, last_tail = -1, first_head = 1 << 30;
	char msg[512];

	EXPECT_NOT_NULL_FATAL(l);
	if (!wlog_boot(&e, l, s, d))
		goto out;
	EXPECT_EQ_FATAL(wlog_batch(&e, l, s, msg, sizeof(msg)), POKE_OK);
	EXPECT_EQ_U64(9, l->n);
	for (int i = 0; i < 3; i++) {
		int a = wlog_find(l, s[i].addr, "INT3", 0);
		int b = wlog_find(l, s[i].addr, "new tail", 0);
		int c = wlog_find(l, s[i].addr, "new head", 0);

		EXPECT_TRUE_MSG(a >= 0 && b > a && c > b, "%s: INT3 at %d, tail at %d, "
				"head at %d", s[i].where, a, b, c);
		if (a < 0 || b < 0 || c < 0)
			continue;
		EXPECT_EQ(l->e[a].off, 0);
		EXPECT_EQ(l->e[a].n, 1);
		EXPECT_EQ(l->e[a].bytes[0], POKE_INT3);
		EXPECT_EQ(l->e[b].off, 1);
		EXPECT_EQ(l->e[b].n, s[i].len - 1u);
		EXPECT_TRUE(!memcmp(l->e[b].bytes, s[i].new + 1, s[i].len - 1u));
		EXPECT_EQ(l->e[c].off, 0);
		EXPECT_EQ(l->e[c].n, 1);
		EXPECT_EQ(l->e[c].bytes[0], s[i].new[0]);
		last_int3 = a > last_int3 ? a : last_int3;
		first_tail = b < first_tail ? b : first_tail;
		last_tail = b > last_tail ? b : last_tail;
		first_head = c < first_head ? c : first_head;
		expect_bytes(&e, d[i], s[i].new, "new");
	}
	EXPECT_TRUE_MSG(last_int3 < first_tail && last_tail < first_head,
			"phases interleave: last INT3 %d, tails %d..%d, first head %d",
			last_int3, first_tail, last_tail, first_head);
	let_run();
out:
	env_end(&e);
	free(l);
}

/*
 * A read-back failure after tails (and a head) were written: the batch is
 * undone through the protocol - heads back to INT3, old tails, old heads -
 * and every site holds its old bytes again.
 */
static void rollback_after(const char *what, unsigned int victim)
{
	const struct vmpoke_site_desc *d[3];
	struct poke_site s[3];
	struct wlog *l = calloc(1, sizeof(*l));
	struct env e = { 0 };
	char msg[512];
	int undo, tail, head;

	EXPECT_NOT_NULL_FATAL(l);
	if (!wlog_boot(&e, l, s, d))
		goto out;
	l->corrupt_what = what;
	l->corrupt_addr = s[victim].addr;
	EXPECT_EQ(wlog_batch(&e, l, s, msg, sizeof(msg)), POKE_E_READBACK);
	EXPECT_TRUE(l->corrupted);
	EXPECT_TRUE_MSG(strstr(msg, "read-back") && strstr(msg, "batch undone, old bytes "
							     "restored"), "%s", msg);
	for (int i = 0; i < 3; i++)
		expect_bytes(&e, d[i], s[i].old, "old");
	/* Undo order for the victim: (INT3 again,) old tail, then old head. */
	undo = wlog_find(l, s[victim].addr, "INT3 (undo)", 0);
	tail = wlog_find(l, s[victim].addr, "old tail", 0);
	head = wlog_find(l, s[victim].addr, "old head", 0);
	EXPECT_TRUE_MSG(tail >= 0 && head > tail && (undo < 0 || undo < tail),
			"undo %d, old tail %d, old head %d", undo, tail, head);
	let_run();
out:
	env_end(&e);
	free(l);
}

static void test_kvm_rollback_after_tails(void)
{
	rollback_after("new tail", 2);		/* the last site's tail */
}

static void test_kvm_rollback_after_heads(void)
{
	rollback_after("new head", 1);		/* the MULTI site's head is new already */
}

/*
 * Someone else writes a site between the tail sync and the heads: the
 * re-check refuses to go on, the batch is undone, the old bytes are back.
 */
static void test_kvm_bytes_change_between_phases(void)
{
	const struct vmpoke_site_desc *d[3];
	struct poke_site s[3];
	struct wlog *l = calloc(1, sizeof(*l));
	struct env e = { 0 };
	char msg[512];

	EXPECT_NOT_NULL_FATAL(l);
	if (!wlog_boot(&e, l, s, d))
		goto out;
	l->change_after = "tails";
	l->change_at = s[1].addr + 2;	/* in the NOP5's new tail, under its INT3 */
	EXPECT_EQ(wlog_batch(&e, l, s, msg, sizeof(msg)), POKE_E_OLD_MISMATCH);
	EXPECT_TRUE(l->changed);
	EXPECT_TRUE_MSG(strstr(msg, "bytes changed under the batch before the heads") &&
			strstr(msg, "old bytes restored"), "%s", msg);
	for (int i = 0; i < 3; i++)
		expect_bytes(&e, d[i], s[i].old, "old");
	EXPECT_TRUE_MSG(wlog_find(l, s[0].addr, "new head", 0) < 0, "a head was written");
	let_run();
out:
	env_end(&e);
	free(l);
}

struct hotplug_arg {
	struct vm *vm;
	atomic_bool stop;
	unsigned int cycles;
};

static void *hotplug_thread(void *arg)
{
	struct hotplug_arg *h = arg;

	while (!atomic_load(&h->stop)) {
		if (vmm_vcpu_offline(h->vm, 1))
			break;
		usleep(300);
		if (vmm_vcpu_online(h->vm, 1))
			break;
		usleep(300);
		h->cycles++;
	}
	return NULL;
}

/* Batches keep working while another thread offlines/onlines a vCPU. */
static void test_kvm_hotplug_during_batches(void)
{
	struct hotplug_arg h = { 0 };
	unsigned int round, ok = 0, i;
	bool is_new[VMPOKE_MAX_SITES] = { false };
	struct env e = { 0 };
	pthread_t th;
	char msg[512];

	if (!testlib_require_kvm() || !env_boot(&e, VMPOKE_SCN_HOT, 2, NULL))
		goto out;
	h.vm = e.vm;
	EXPECT_EQ_FATAL(pthread_create(&th, NULL, hotplug_thread, &h), 0);
	for (round = 0; round < 40; round++) {
		i = round % e.sites.nr_sites;
		const struct vmpoke_site_desc *d = &e.sites.sites[i];
		enum poke_err err = flip(&e, d, is_new[i], !is_new[i], msg, sizeof(msg));

		/* A parked vCPU may sit in a multi range: undone is fine too. */
		EXPECT_TRUE_MSG(err == POKE_OK || err == POKE_E_SHADOW_BUSY,
				"round %u: %s: %s", round, poke_strerror(err), msg);
		if (err == POKE_OK) {
			is_new[i] = !is_new[i];
			ok++;
		}
	}
	atomic_store(&h.stop, true);
	pthread_join(th, NULL);
	vmm_vcpu_online(e.vm, 1);
	EXPECT_TRUE_MSG(ok > 0 && h.cycles > 0, "%u batches ok, %u hotplug cycles",
			ok, h.cycles);
	for (i = 0; i < e.sites.nr_sites; i++) {
		uint8_t want[POKE_MAX_LEN];

		site_variant(&e, &e.sites.sites[i], is_new[i], want);
		expect_bytes(&e, &e.sites.sites[i], want, is_new[i] ? "new" : "old");
	}
	let_run();
out:
	env_end(&e);
}

TEST_SUITE(patch_kvm, "patch_kvm", true,
	   TEST(test_kvm_old_mismatch),
	   TEST(test_kvm_cpl0_stop_the_world), TEST(test_kvm_cpl0_breakpoint_forced),
	   TEST(test_kvm_cpl0_running_stop_the_world),
	   TEST(test_kvm_write_log_order), TEST(test_kvm_rollback_after_tails),
	   TEST(test_kvm_rollback_after_heads), TEST(test_kvm_bytes_change_between_phases),
	   TEST(test_kvm_batch_all_sites),
	   TEST(test_kvm_page_crossing),
	   TEST(test_kvm_hook_verdicts), TEST(test_kvm_hook_stack_rights),
	   TEST(test_kvm_ghost_traps),
	   TEST(test_kvm_foreign_int3),
	   TEST(test_kvm_shadow_vcpu), TEST(test_kvm_shadow_frame),
	   TEST(test_kvm_shadow_bp_stub), TEST(test_kvm_shadow_nested_frame),
	   TEST(test_kvm_shadow_task),
	   TEST(test_kvm_refusals),
	   TEST(test_kvm_hotplug_during_batches))
