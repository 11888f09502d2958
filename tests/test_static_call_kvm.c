// SPDX-License-Identifier: MIT
/*
 * test_static_call_kvm.c - the guest's static call sc_op retargeted from
 * outside on a real /dev/kvm while the HOT tasks call it through every
 * site and check each result against __SCK__sc_op.func (seqlock-fair).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "patcher.h"
#include "static_call.h"
#include "symtab.h"
#include "testlib.h"
#include "test_vmm_util.h"
#include "vmm.h"
#include "guest_tables.h"
#include "../patcher/patcher_internal.h"

struct senv {
	struct vm *vm;
	struct patcher *p;
	struct sc_table *t;
	const struct sc_call *c;
};

static bool senv_start(struct senv *e)
{
	char msg[256];

	memset(e, 0, sizeof(*e));
	if (!vmt_boot_patchable(2, &e->vm, &e->p))
		return false;
	EXPECT_TRUE_MSG(!sc_table_load(testlib_image(), vmm_symtab(e->vm), &e->t, msg,
				       sizeof(msg)), "sc_table_load: %s", msg);
	e->c = sc_call_find(e->t, "sc_op");
	EXPECT_NOT_NULL(e->c);
	return e->c != NULL;
}

static void senv_end(struct senv *e)
{
	sc_table_free(e->t);
	if (e->p)
		patcher_destroy(e->p);
	if (e->vm)
		vmt_finish(e->vm);
}

static uint64_t sym(struct senv *e, const char *name)
{
	const struct sym *s = symtab_find(vmm_symtab(e->vm), name);

	EXPECT_TRUE_MSG(s != NULL, "no symbol %s", name);
	return s ? s->addr : 0;
}

static void settle(void)
{
	usleep(30000);
}

/* The trampoline and every site hold the form for target. */
static void expect_text(struct senv *e, uint64_t target)
{
	uint8_t b[8];

	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, e->c->tramp, b, 8), 0);
	EXPECT_EQ(b[0], target ? 0xe9 : 0xc3);
	EXPECT_EQ(b[5], 0x0f);
	EXPECT_EQ(b[7], 0xcc);
	for (size_t i = 0; i < e->c->nr_sites; i++) {
		const struct sc_site *s = &e->c->sites[i];
		int32_t rel;

		EXPECT_EQ_FATAL(vmm_gva_read(e->vm, s->addr, b, 5), 0);
		if (!target) {
			EXPECT_EQ(b[0], s->tail ? 0xc3 : 0x0f);
			continue;
		}
		EXPECT_EQ(b[0], s->tail ? 0xe9 : 0xe8);
		memcpy(&rel, b + 1, 4);
		EXPECT_EQ(s->addr + 5 + (uint64_t)(int64_t)rel, target);
	}
}

/*
 * Every target and NULL, twice round, the tasks calling all the while;
 * their INT3 hits during the updates emulate the new CALL/JMP/RET.
 */
static void test_sc_update_both_ways(void)
{
	static const char *const order[] = { "sc_op_mul", "sc_op_xor", NULL, "sc_op_add" };
	struct vmpoke_static_call_key k0, k1;
	struct sc_update_out o;
	struct poke_stats st0, st1;
	struct senv e;
	char msg[512];

	if (!senv_start(&e))
		goto out;
	EXPECT_EQ_U64(3, e.c->nr_sites);
	EXPECT_EQ_U64(3, e.c->nr_targets);
	patcher_stats(e.p, &st0);
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < 4; i++) {
			uint64_t target = order[i] ? sym(&e, order[i]) : 0;

			EXPECT_EQ(sc_key_read(e.vm, e.c, &k0), 0);
			EXPECT_TRUE_MSG(!sc_update(e.p, e.vm, e.c, target, &o, msg, sizeof(msg)),
					"sc_op -> %s: %s", order[i] ? order[i] : "NULL", msg);
			EXPECT_EQ(sc_key_read(e.vm, e.c, &k1), 0);
			EXPECT_EQ(k1.func, target);
			EXPECT_EQ(k1.seq, k0.seq + 2);
			EXPECT_EQ_U64(o.stw, 0);	/* all CPL3 text */
			expect_text(&e, target);
			settle();
		}
	patcher_stats(e.p, &st1);
	/* the same target again: nothing to write, no sync */
	EXPECT_EQ(0, sc_update(e.p, e.vm, e.c, sym(&e, "sc_op_add"), &o, msg, sizeof(msg)));
	EXPECT_EQ_U64(0, o.sites);
	settle();
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL));
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_FAULT));
	vmm_info("static call: %llu trap hits during 12 updates",
		 (unsigned long long)(st1.trap_hits - st0.trap_hits));
out:
	senv_end(&e);
}

/* The guest's checks can fail: func changed without the text. */
static void test_sc_checks_bite(void)
{
	struct senv e;
	uint64_t mul;

	if (!senv_start(&e))
		goto out;
	mul = sym(&e, "sc_op_mul");
	settle();
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL));
	EXPECT_EQ(vmm_gva_write(e.vm, e.c->key, &mul, sizeof(mul)), 0);
	settle();
	EXPECT_GT(vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL), 0u);
out:
	senv_end(&e);
}

/*
 * A site that holds neither CALL nor NOP5, or a trampoline without its
 * signature: refused by name, nothing written, key untouched.  An
 * undeclared target is refused too.
 */
static void test_sc_refusals(void)
{
	static const uint8_t junk[5] = { 0x0f, 0x1f, 0x40, 0x00, 0x90 };
	uint8_t before[3][5], after[3][5], tb[8], ta[8], bad_sig[3] = { 0x0f, 0x0b, 0x90 };
	struct vmpoke_static_call_key k0, k1;
	struct sc_update_out o;
	struct senv e;
	char msg[512], where[96];
	const struct sc_site *s;

	if (!senv_start(&e))
		goto out;
	EXPECT_EQ(-EINVAL, sc_update(e.p, e.vm, e.c, sym(&e, "lib_add"), &o, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "is not a target of sc_op");
	/* a non-tail site, planted with other bytes while the vCPUs run */
	s = e.c->sites[0].tail ? &e.c->sites[1] : &e.c->sites[0];
	EXPECT_EQ(vmm_gva_write(e.vm, s->addr, junk, 5), 0);
	for (size_t i = 0; i < 3; i++)
		EXPECT_EQ(vmm_gva_read(e.vm, e.c->sites[i].addr, before[i], 5), 0);
	EXPECT_EQ(vmm_gva_read(e.vm, e.c->tramp, tb, 8), 0);
	EXPECT_EQ(sc_key_read(e.vm, e.c, &k0), 0);
	EXPECT_EQ(-EILSEQ, sc_update(e.p, e.vm, e.c, sym(&e, "sc_op_mul"), &o, msg,
				     sizeof(msg)));
	symtab_format(vmm_symtab(e.vm), s->addr, where, sizeof(where));
	EXPECT_STR_HAS(msg, "unexpected op at ");
	EXPECT_STR_HAS(msg, where);
	for (size_t i = 0; i < 3; i++)
		EXPECT_EQ(vmm_gva_read(e.vm, e.c->sites[i].addr, after[i], 5), 0);
	EXPECT_EQ(vmm_gva_read(e.vm, e.c->tramp, ta, 8), 0);
	EXPECT_EQ(0, memcmp(before, after, sizeof(before)));
	EXPECT_EQ(0, memcmp(tb, ta, sizeof(tb)));
	EXPECT_EQ(sc_key_read(e.vm, e.c, &k1), 0);
	EXPECT_EQ(k0.func, k1.func);
	EXPECT_EQ(k0.seq, k1.seq);
	/* the signature */
	EXPECT_EQ(vmm_gva_write(e.vm, e.c->tramp + 5, bad_sig, 3), 0);
	EXPECT_EQ(-EILSEQ, sc_update(e.p, e.vm, e.c, sym(&e, "sc_op_mul"), &o, msg,
				     sizeof(msg)));
	EXPECT_STR_HAS(msg, "no signature 0f b9 cc");
	EXPECT_EQ(vmm_gva_read(e.vm, e.c->tramp, ta, 5), 0);
	EXPECT_EQ(0, memcmp(tb, ta, 5));
out:
	senv_end(&e);
}

static uint64_t tick_calls(struct senv *e, unsigned int which)
{
	uint64_t v = 0;

	EXPECT_EQ(vmm_gva_read(e->vm, sym(e, "sc_tick_calls") + 8 * which, &v, 8), 0);
	return v;
}

/*
 * sc_tick is called by the timer at CPL0: its trampoline and site are
 * kernel text, written stop-the-world on this host (no CPL0 INT3), and
 * after each update the tick runs the new target only.
 */
static void test_sc_cpl0_tick(void)
{
	const struct sc_call *c;
	struct sc_update_out o;
	uint64_t a0, b0, a1, b1;
	struct senv e;
	char msg[512];

	if (!senv_start(&e) || !(c = sc_call_find(e.t, "sc_tick"))) {
		CU_FAIL("no static call sc_tick");
		goto out;
	}
	EXPECT_EQ_U64(1, c->nr_sites);
	EXPECT_TRUE(patcher_addr_is_cpl0(e.p, c->sites[0].addr));
	EXPECT_TRUE(patcher_addr_is_cpl0(e.p, c->tramp));
	for (int round = 0; round < 3; round++) {
		EXPECT_TRUE_MSG(!sc_update(e.p, e.vm, c, sym(&e, "sc_tick_b"), &o, msg,
					   sizeof(msg)), "sc_tick -> b: %s", msg);
		EXPECT_EQ_U64(2, o.sites);
		if (!patcher_cpl0_trappable(e.p))
			EXPECT_EQ_U64(2, o.stw);
		usleep(20000);	/* a tick that was inside sc_tick_a has left it */
		a0 = tick_calls(&e, 0);
		b0 = tick_calls(&e, 1);
		usleep(50000);
		a1 = tick_calls(&e, 0);
		b1 = tick_calls(&e, 1);
		EXPECT_EQ(a0, a1);
		EXPECT_GT(b1, b0);
		EXPECT_TRUE_MSG(!sc_update(e.p, e.vm, c, sym(&e, "sc_tick_a"), &o, msg,
					   sizeof(msg)), "sc_tick -> a: %s", msg);
		usleep(20000);
		b0 = tick_calls(&e, 1);
		a0 = tick_calls(&e, 0);
		usleep(50000);
		EXPECT_EQ(b0, tick_calls(&e, 1));
		EXPECT_GT(tick_calls(&e, 0), a0);
	}
	/* NULL: the site becomes NOP5, the tick calls nobody */
	EXPECT_EQ(0, sc_update(e.p, e.vm, c, 0, &o, msg, sizeof(msg)));
	usleep(20000);
	a0 = tick_calls(&e, 0);
	b0 = tick_calls(&e, 1);
	usleep(50000);
	EXPECT_EQ(a0, tick_calls(&e, 0));
	EXPECT_EQ(b0, tick_calls(&e, 1));
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_FAULT));
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL));
out:
	senv_end(&e);
}

/*
 * The write log's hook for test_sc_cpl0_tick_breakpoint(): once the INT3
 * is on sc_tick's site, hold the batch (the vCPUs run on) until a timer
 * tick has hit it, so every update really is hit at CPL0 while it is in
 * flight, instead of by chance.  Bounded: 10 s, then the test fails.
 */
struct tick_hit {
	struct patcher *p;
	uint64_t site;
	unsigned int waits, hits;
	atomic_uint walked, bad_walks;
};

/*
 * Wraps the patcher's trap hook: at a CPL0 hit of sc_tick's site, the
 * vCPU's frame chain, walked as the shadow check walks it, must be the
 * timer's entry frame (from CPL3) and, on the doorbell path, the #BP frame
 * from CPL0 nested under it, where the CPU pushed it (the interrupted
 * %rsp rounded down to 16, less the frame) with the site's INT3 + 1.  On
 * the debug-exit path the INT3 exits before any frame is pushed.
 */
static enum vmm_trap_verdict tick_hit_hook(struct vmm_trap *t, void *opaque)
{
	struct tick_hit *w = opaque;
	struct gtab_frame f[VMPOKE_CPL0_MAX_FRAMES];
	uint64_t bp = (t->rsp & ~15ull) - VMPOKE_CPL0_FRAME_SIZE;
	bool doorbell = t->path == VMM_TRAP_DOORBELL;
	unsigned int n;

	if (t->cpl == 0 && t->addr == w->site) {
		n = vmm_cpl0_frames(t->vm, t->vcpu, doorbell ? bp : 0, f);
		atomic_fetch_add(&w->walked, 1);
		if (n != (doorbell ? 2u : 1u) || (f[n - 1].cs & 3) != 3 ||
		    (doorbell && (f[0].at != bp || f[0].rip != w->site + 1 || (f[0].cs & 3))))
			atomic_fetch_add(&w->bad_walks, 1);
	}
	return traptable_hook(t, w->p);
}

static void tick_hit_wait(void *opaque, const struct poke_site *s, unsigned int off,
			  const uint8_t *bytes, unsigned int n, const char *what)
{
	struct tick_hit *w = opaque;
	struct poke_stats st;
	uint64_t base;

	(void)bytes;
	(void)n;
	if (s->addr != w->site || off || strcmp(what, "INT3"))
		return;
	w->waits++;
	patcher_stats(w->p, &st);
	base = st.trap_hits;
	for (int i = 0; i < 2000; i++) {
		usleep(5000);
		patcher_stats(w->p, &st);
		if (st.trap_hits > base) {
			w->hits++;
			return;
		}
	}
}

/*
 * sc_tick's site in sched_tick_hook() with the breakpoint method
 * (VMPOKE_CPL0_PATCH=breakpoint), where the host traps a CPL0 INT3: each
 * update is hit by the timer's call at CPL0 while its INT3 is live, a #BP
 * nested under the timer's frame (vmpoke_abi.h, "CPL0 frames") whose CALL
 * is emulated onto the kernel stack.  After each update the tick runs the
 * new target only, and the guest never faults.  The patcher's hook is
 * wrapped to check each hit's frame chain (tick_hit_hook()).
 */
static void test_sc_cpl0_tick_breakpoint(void)
{
	struct patcher_opts opts = { .cpl0_patch = POKE_CPL0_BREAKPOINT,
				     .write_log = tick_hit_wait };
	struct tick_hit w = { 0 };
	const struct sc_call *c;
	struct sc_update_out o;
	struct senv e = { 0 };
	uint64_t a0, b0;
	char msg[512];

	if (!(e.vm = vmt_boot_ready(2, VMPOKE_SCN_HOT)))
		goto out;
	vmm_set_check_fail_fatal(e.vm, false);
	opts.write_log_opaque = &w;
	e.p = w.p = patcher_create(e.vm, &opts);
	EXPECT_NOT_NULL_FATAL(e.p);
	EXPECT_TRUE_MSG(!sc_table_load(testlib_image(), vmm_symtab(e.vm), &e.t, msg,
				       sizeof(msg)), "sc_table_load: %s", msg);
	c = e.t ? sc_call_find(e.t, "sc_tick") : NULL;
	EXPECT_NOT_NULL_FATAL(c);
	EXPECT_TRUE(patcher_cpl0_trappable(e.p));
	w.site = c->sites[0].addr;
	EXPECT_EQ(vmm_set_trap_hook(e.vm, tick_hit_hook, &w), 0);
	for (int round = 0; round < 4; round++) {
		bool to_b = !(round & 1);

		EXPECT_TRUE_MSG(!sc_update(e.p, e.vm, c, sym(&e, to_b ? "sc_tick_b" :
						"sc_tick_a"), &o, msg, sizeof(msg)),
				"sc_tick round %d: %s", round, msg);
		EXPECT_EQ_U64(0, o.stw);
		EXPECT_EQ_U64(3, o.syncs);
		usleep(20000);	/* a tick inside the old target has left it */
		a0 = tick_calls(&e, 0);
		b0 = tick_calls(&e, 1);
		usleep(50000);
		EXPECT_EQ(to_b ? a0 : b0, tick_calls(&e, to_b ? 0 : 1));
		EXPECT_GT(tick_calls(&e, to_b ? 1 : 0), to_b ? b0 : a0);
	}
	EXPECT_EQ(w.waits, 4u);
	EXPECT_EQ(w.hits, 4u);
	EXPECT_GE(atomic_load(&w.walked), 4u);
	EXPECT_EQ(atomic_load(&w.bad_walks), 0u);
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_FAULT));
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL));
out:
	senv_end(&e);
}

TEST_SUITE(static_call_kvm, "static_call_kvm", true,
	   TEST(test_sc_update_both_ways), TEST(test_sc_checks_bite), TEST(test_sc_refusals),
	   TEST(test_sc_cpl0_tick))

TEST_SUITE_IF(static_call_cpl0_int3, "static_call_breakpoint_kvm", vmt_cpl0_int3_unavailable,
	      TEST(test_sc_cpl0_tick_breakpoint))
