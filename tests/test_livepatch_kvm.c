// SPDX-License-Identifier: MIT
/*
 * test_livepatch_kvm.c - livepatch's per-task transition on a real
 * /dev/kvm, with the guest's livepatch scenario: every task calls lp_mix,
 * lp_hash and lp_sleep and checks each result against its own patch_state
 * (guest/livepatch.c), and the sleeper (the last task of vCPU 0) naps
 * inside lp_sleep.  The tests plant the straggler: they set the nap to
 * "for ever" (lp_sleep_ticks), wait until the sleeper is inside, and let
 * it go when they choose, so nothing depends on where it happens to be.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "livepatch.h"
#include "patcher.h"
#include "symtab.h"
#include "testlib.h"
#include "test_vmm_util.h"
#include "vmm.h"

#define LP_WAIT_S	30	/* bounds of waits for the guest (nested is slow) */

struct lenv {
	struct vm *vm;
	struct patcher *p;
	struct klp *k;
	uint32_t sleeper;	/* task id */
};

static uint64_t sym(struct lenv *e, const char *name)
{
	const struct sym *s = symtab_find(vmm_symtab(e->vm), name);

	EXPECT_TRUE_MSG(s != NULL, "no symbol %s", name);
	return s ? s->addr : 0;
}

static bool lenv_start(struct lenv *e, bool no_stack_check)
{
	struct klp_opts o = { .retry_ms = 50, .no_stack_check = no_stack_check };
	char msg[256];

	memset(e, 0, sizeof(*e));
	e->vm = vmt_boot_ready(2, VMPOKE_SCN_LIVEPATCH);
	if (!e->vm)
		return false;
	vmm_set_check_fail_fatal(e->vm, false);
	e->p = patcher_create(e->vm, NULL);
	EXPECT_NOT_NULL_FATAL(e->p);
	e->k = klp_new(e->p, e->vm, testlib_image(), &o, msg, sizeof(msg));
	EXPECT_TRUE_MSG(e->k != NULL, "klp_new: %s", msg);
	e->sleeper = 1;		/* vCPU 0, slot 1 of 2 (vmt_config) */
	return e->k != NULL;
}

static void lenv_end(struct lenv *e)
{
	klp_free(e->k);
	if (e->p)
		patcher_destroy(e->p);
	if (e->vm)
		vmt_finish(e->vm);
}

static void set_nap(struct lenv *e, uint32_t ticks)
{
	EXPECT_EQ(vmm_gva_write(e->vm, sym(e, "lp_sleep_ticks"), &ticks, 4), 0);
}

static uint32_t read32(struct lenv *e, const char *name)
{
	uint32_t v = 0;

	EXPECT_EQ(vmm_gva_read(e->vm, sym(e, name), &v, 4), 0);
	return v;
}

/* Hold the sleeper inside lp_sleep until release(). */
static bool hold_sleeper(struct lenv *e)
{
	set_nap(e, 0xffffffffu);
	for (int i = 0; i < LP_WAIT_S * 100; i++) {
		if (read32(e, "lp_sleeper_in"))
			return true;
		usleep(10000);
	}
	EXPECT_TRUE_MSG(false, "the sleeper never entered lp_sleep");
	return false;
}

static void release(struct lenv *e)
{
	set_nap(e, 1);
}

static struct klp_patch *patch_new(struct lenv *e)
{
	static const struct klp_func_spec f[] = {
		{ "lp_sleep", "lp_sleep__v2" }, { "lp_mix", "lp_mix__v2" },
	};
	char msg[256];
	struct klp_patch *lp = klp_patch_new(e->k, f, 2, msg, sizeof(msg));

	EXPECT_TRUE_MSG(lp != NULL, "klp_patch_new: %s", msg);
	return lp;
}

static enum klp_state state(const struct klp_patch *lp)
{
	struct klp_info in;

	klp_patch_info(lp, &in);
	return in.state;
}

static bool is_pending(const struct klp_patch *lp, uint32_t task, struct klp_straggler *out)
{
	struct klp_info in;

	klp_patch_info(lp, &in);
	for (size_t i = 0; i < in.nr_pending; i++)
		if (in.pending[i].task == task) {
			if (out)
				*out = in.pending[i];
			return true;
		}
	return false;
}

/* Retry until lp settles in want (bounded); false if it did not. */
static bool tick_until(struct lenv *e, struct klp_patch *lp, enum klp_state want)
{
	char msg[256];

	for (int i = 0; i < LP_WAIT_S * 20 && state(lp) != want; i++) {
		usleep(50000);
		EXPECT_TRUE_MSG(klp_tick(e->k, true, msg, sizeof(msg)) == 0, "klp_tick: %s", msg);
	}
	EXPECT_TRUE_MSG(state(lp) == want, "state %s, want %s", klp_state_name(state(lp)),
			klp_state_name(want));
	if (state(lp) != want) {
		struct klp_info in;

		/* Who held it: the evidence a liveness failure needs. */
		klp_patch_info(lp, &in);
		fprintf(stderr, "\n  %u retries, %u switched, %zu pending:\n", in.retries,
			in.switched, in.nr_pending);
		for (size_t i = 0; i < in.nr_pending; i++)
			fprintf(stderr, "    task %u vcpu %u: %s %s %s\n", in.pending[i].task,
				in.pending[i].vcpu, in.pending[i].reason, in.pending[i].func,
				in.pending[i].detail);
	}
	return state(lp) == want;
}

/* The entry of fn: the fentry NOP5, or a JMP to `to`. */
static void expect_entry(struct lenv *e, const char *fn, const char *to)
{
	uint64_t at = sym(e, fn);
	uint8_t b[5];
	int32_t rel;

	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, at, b, 5), 0);
	if (!to) {
		EXPECT_TRUE_MSG(!memcmp(b, "\x0f\x1f\x44\x00\x00", 5), "%s: not the NOP5", fn);
		return;
	}
	EXPECT_EQ(b[0], 0xe9);
	memcpy(&rel, b + 1, 4);
	EXPECT_EQ_U64(sym(e, to), at + 5 + (uint64_t)(int64_t)rel);
}

static void expect_desc(struct lenv *e, const char *fn, uint32_t want)
{
	char name[64];
	struct vmpoke_klp_func d;

	snprintf(name, sizeof(name), VMPOKE_KLP_FUNC_PREFIX "%s", fn);
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, sym(e, name), &d, sizeof(d)), 0);
	EXPECT_EQ(d.state, want);
}

/* The grace period ends: every stub freed (bounded). */
static void expect_stubs_freed(struct lenv *e)
{
	char msg[256];

	for (int i = 0; i < LP_WAIT_S * 20 && klp_stubs_in_use(e->k); i++) {
		usleep(50000);
		klp_tick(e->k, false, msg, sizeof(msg));
	}
	EXPECT_EQ(klp_stubs_in_use(e->k), 0u);
}

static void expect_no_check_failures(struct lenv *e)
{
	EXPECT_EQ_U64(0, vmm_hcall_count(e->vm, VMPOKE_HC_CHECK_FAIL));
}

/* Boot, hold the sleeper inside lp_sleep, enable patch_new(): or NULL. */
static struct klp_patch *start_enabled(struct lenv *e, bool no_stack_check)
{
	struct klp_patch *lp;
	char msg[256];

	if (!lenv_start(e, no_stack_check) || !hold_sleeper(e) || !(lp = patch_new(e)))
		return NULL;
	EXPECT_TRUE_MSG(klp_enable(lp, msg, sizeof(msg)) == 0, "enable: %s", msg);
	return lp;
}

/* The sleeper blocks inside lp_sleep: a straggler with its frame; then it leaves. */
static void test_kvm_lp_straggler(void)
{
	struct klp_straggler s = { 0 };
	struct klp_patch *lp;
	struct klp_info in;
	struct lenv e;
	char msg[256];
	bool framed = false;

	lp = start_enabled(&e, false);
	if (!lp)
		goto out;
	expect_entry(&e, "lp_sleep", "__klp_stubs_start");	/* the first stub */
	EXPECT_EQ(state(lp), KLP_PATCHING);
	EXPECT_TRUE(is_pending(lp, e.sleeper, NULL));
	expect_desc(&e, "lp_sleep", VMPOKE_KLP_TRANSITION);
	/* Retries: the sleeper stays, reported with its frame in lp_sleep. */
	for (int i = 0; i < LP_WAIT_S * 20 && !framed; i++) {
		usleep(50000);
		EXPECT_EQ(klp_tick(e.k, true, msg, sizeof(msg)), 0);
		EXPECT_TRUE_FATAL(is_pending(lp, e.sleeper, &s));
		framed = !strcmp(s.reason, "sleeping on function");
	}
	EXPECT_TRUE_MSG(framed, "the sleeper was never reported sleeping (last: %s)", s.reason);
	EXPECT_STREQ(s.func, "lp_sleep");
	EXPECT_GE(s.addr, sym(&e, "lp_sleep"));
	EXPECT_LT(s.addr, sym(&e, "lp_sleep__v2"));
	EXPECT_STR_HAS(s.detail, "lp_sleep+0x");
	EXPECT_EQ(s.vcpu, 0u);
	klp_patch_info(lp, &in);
	EXPECT_GE(in.nr_history, 2u);
	EXPECT_EQ(in.history[in.nr_history - 1].pending, (unsigned int)in.nr_pending);
	/* It leaves: the transition completes, the entries JMP straight to v2. */
	release(&e);
	if (!tick_until(&e, lp, KLP_PATCHED))
		goto out;
	expect_entry(&e, "lp_sleep", "lp_sleep__v2");
	expect_entry(&e, "lp_mix", "lp_mix__v2");
	expect_desc(&e, "lp_sleep", VMPOKE_KLP_NEW);
	expect_stubs_freed(&e);
	usleep(200000);
	expect_no_check_failures(&e);
	/* and back */
	EXPECT_TRUE_MSG(klp_disable(lp, msg, sizeof(msg)) == 0, "disable: %s", msg);
	if (tick_until(&e, lp, KLP_UNPATCHED)) {
		expect_entry(&e, "lp_sleep", NULL);
		expect_entry(&e, "lp_mix", NULL);
		expect_desc(&e, "lp_mix", VMPOKE_KLP_OLD);
	}
	expect_stubs_freed(&e);
	usleep(200000);
	expect_no_check_failures(&e);
out:
	lenv_end(&e);
}

/* disable() while the sleeper still holds the transition: it goes back. */
static void test_kvm_lp_reverse(void)
{
	struct klp_patch *lp;
	struct lenv e;
	char msg[256];

	lp = start_enabled(&e, false);
	if (!lp)
		goto out;
	for (int i = 0; i < 4; i++) {
		usleep(50000);
		klp_tick(e.k, true, msg, sizeof(msg));
	}
	EXPECT_EQ(state(lp), KLP_PATCHING);
	EXPECT_TRUE(is_pending(lp, e.sleeper, NULL));
	EXPECT_TRUE_MSG(klp_disable(lp, msg, sizeof(msg)) == 0, "disable: %s", msg);
	/* the sleeper never switched: it is at the target already, still inside */
	EXPECT_FALSE(is_pending(lp, e.sleeper, NULL));
	if (tick_until(&e, lp, KLP_UNPATCHED)) {
		expect_entry(&e, "lp_sleep", NULL);
		expect_entry(&e, "lp_mix", NULL);
		expect_desc(&e, "lp_sleep", VMPOKE_KLP_OLD);
	}
	EXPECT_EQ(read32(&e, "lp_sleeper_in"), 1u);
	release(&e);
	expect_stubs_freed(&e);
	usleep(300000);
	expect_no_check_failures(&e);
out:
	lenv_end(&e);
}

/* force(): every task switched at once, the patch unremovable. */
static void test_kvm_lp_force(void)
{
	struct klp_patch *lp;
	struct klp_info in;
	struct lenv e;
	char msg[256];

	lp = start_enabled(&e, false);
	if (!lp)
		goto out;
	EXPECT_TRUE(is_pending(lp, e.sleeper, NULL));
	/* a reversal (done at once if every switched task can go back) and back */
	EXPECT_TRUE_MSG(klp_disable(lp, msg, sizeof(msg)) == 0, "disable: %s", msg);
	EXPECT_TRUE(state(lp) == KLP_UNPATCHING || state(lp) == KLP_UNPATCHED);
	EXPECT_TRUE_MSG(klp_enable(lp, msg, sizeof(msg)) == 0, "enable: %s", msg);
	EXPECT_EQ(state(lp), KLP_PATCHING);
	EXPECT_TRUE(is_pending(lp, e.sleeper, NULL));
	EXPECT_TRUE_MSG(klp_force(lp, msg, sizeof(msg)) == 0, "force: %s", msg);
	klp_patch_info(lp, &in);
	EXPECT_EQ(in.state, KLP_PATCHED);
	EXPECT_TRUE(in.forced);
	EXPECT_EQ(in.nr_pending, 0u);
	expect_entry(&e, "lp_sleep", "lp_sleep__v2");
	EXPECT_EQ(klp_disable(lp, msg, sizeof(msg)), -EPERM);
	EXPECT_STR_HAS(msg, "forced");
	EXPECT_EQ(klp_force(lp, msg, sizeof(msg)), -EINVAL);
	/* the forced sleeper returns from the old lp_sleep: fair by FORCED */
	release(&e);
	expect_stubs_freed(&e);
	usleep(300000);
	expect_no_check_failures(&e);
out:
	lenv_end(&e);
}

/*
 * --inject no-stack-check: the sleeper is switched while inside lp_sleep
 * and, let go, returns with the old result into code expecting the new.
 */
static void test_kvm_lp_no_stack_check_detected(void)
{
	struct vmpoke_task t;
	struct klp_patch *lp;
	struct lenv e;
	char msg[256];

	lp = start_enabled(&e, true);
	if (!lp)
		goto out;
	if (!tick_until(&e, lp, KLP_PATCHED))
		goto out;
	EXPECT_EQ(read32(&e, "lp_sleeper_in"), 1u);	/* switched while inside */
	release(&e);
	for (int i = 0; i < LP_WAIT_S * 100 && !vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL); i++)
		usleep(10000);
	EXPECT_GT(vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL), 0u);
	EXPECT_EQ_FATAL(vmm_task_read(e.vm, e.sleeper, &t, msg, sizeof(msg)), 0);
	EXPECT_GE(t.check_failures, 1u);
	EXPECT_STR_HAS(t.last_check.what, "lp_sleep: switched inside");
out:
	lenv_end(&e);
}

/*
 * A new transition resets every task's patch_state, so it must not begin
 * while a task can still resume inside a stub of the last one (it would
 * route by the reset state).  Planted: offline vCPU 1 with its RIP in the
 * first stub while a forced transition completes.
 */
static void test_kvm_lp_stub_grace(void)
{
	static const struct klp_func_spec fa[] = { { "lp_mix", "lp_mix__v2" } };
	static const struct klp_func_spec fb[] = { { "lp_hash", "lp_hash__v2" } };
	struct kvm_regs saved, planted;
	struct klp_patch *a, *b;
	struct lenv e;
	char msg[256];

	if (!lenv_start(&e, false))
		goto out;
	a = klp_patch_new(e.k, fa, 1, msg, sizeof(msg));
	b = klp_patch_new(e.k, fb, 1, msg, sizeof(msg));
	EXPECT_TRUE_FATAL(a && b);
	EXPECT_EQ(klp_enable(a, msg, sizeof(msg)), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e.vm, 1, &saved), 0);
	planted = saved;
	planted.rip = sym(&e, VMPOKE_SYM_KLP_STUBS_START) + 9;	/* after the first insn */
	EXPECT_EQ_FATAL(vmm_vcpu_set_regs(e.vm, 1, &planted), 0);
	EXPECT_TRUE_MSG(klp_in_transition(e.k) != a || klp_force(a, msg, sizeof(msg)) == 0,
			"force: %s", msg);
	EXPECT_EQ(state(a), KLP_PATCHED);
	EXPECT_EQ(klp_tick(e.k, true, msg, sizeof(msg)), 0);
	EXPECT_EQ(klp_stubs_in_use(e.k), 1u);		/* its grace period goes on */
	EXPECT_EQ(klp_enable(b, msg, sizeof(msg)), -EAGAIN);
	EXPECT_STR_HAS(msg, "inside a stub");
	EXPECT_EQ(state(b), KLP_UNPATCHED);
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &saved), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	expect_stubs_freed(&e);
	EXPECT_EQ(klp_enable(b, msg, sizeof(msg)), 0);
	tick_until(&e, b, KLP_PATCHED);
	usleep(200000);
	expect_no_check_failures(&e);
out:
	lenv_end(&e);
}

/*
 * Retries follow guest time: with every vCPU offline the guest's clock
 * stands still, and however long the host waits no retry is due; once the
 * vCPUs are back it runs again and so do the retries.
 */
static void test_kvm_lp_guest_clock(void)
{
	struct klp_patch *lp;
	struct klp_info in;
	struct lenv e;
	unsigned int r0;
	char msg[256];

	lp = start_enabled(&e, false);
	if (!lp)
		goto out;
	EXPECT_EQ(state(lp), KLP_PATCHING);
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 0), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	klp_patch_info(lp, &in);
	r0 = in.retries;
	for (int i = 0; i < 10; i++) {		/* 300 ms of host time, 6x retry_ms */
		usleep(30000);
		EXPECT_EQ(klp_tick(e.k, false, msg, sizeof(msg)), 0);
	}
	klp_patch_info(lp, &in);
	EXPECT_EQ(in.retries, r0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 0), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	for (int i = 0; i < LP_WAIT_S * 100 && in.retries == r0; i++) {
		usleep(10000);
		EXPECT_EQ(klp_tick(e.k, false, msg, sizeof(msg)), 0);
		klp_patch_info(lp, &in);
	}
	EXPECT_GT(in.retries, r0);
	release(&e);
	tick_until(&e, lp, KLP_PATCHED);
out:
	lenv_end(&e);
}

/* Bad patches are refused by name, nothing written. */
static void test_kvm_lp_refusals(void)
{
	static const struct klp_func_spec cpl0[] = { { "sched_tick_hook", "lp_mix__v2" } };
	static const struct klp_func_spec none[] = { { "lp_mix", "no_such_fn" } };
	static const struct klp_func_spec twice[] = { { "lp_mix", "lp_mix__v2" },
						      { "lp_mix", "lp_mix__v3" } };
	static const struct klp_func_spec nofentry[] = { { "lib_add", "lib_mul_add" } };
	static const struct klp_func_spec mix3[] = { { "lp_mix", "lp_mix__v3" } };
	struct klp_patch *a, *b;
	struct lenv e;
	char msg[256];

	if (!lenv_start(&e, false))
		goto out;
	EXPECT_NULL(klp_patch_new(e.k, cpl0, 1, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "CPL0");
	EXPECT_NULL(klp_patch_new(e.k, none, 1, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "no_such_fn");
	EXPECT_NULL(klp_patch_new(e.k, twice, 2, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "twice");
	a = klp_patch_new(e.k, nofentry, 1, msg, sizeof(msg));
	EXPECT_NOT_NULL_FATAL(a);
	EXPECT_EQ(klp_enable(a, msg, sizeof(msg)), -EILSEQ);
	EXPECT_STR_HAS(msg, "unexpected op at lib_add");
	EXPECT_EQ(klp_stubs_in_use(e.k), 0u);
	/* one transition at a time; one patch per old function */
	a = patch_new(&e);
	b = klp_patch_new(e.k, mix3, 1, msg, sizeof(msg));
	EXPECT_NOT_NULL_FATAL(b);
	EXPECT_TRUE(hold_sleeper(&e));
	EXPECT_EQ(klp_enable(a, msg, sizeof(msg)), 0);
	EXPECT_EQ(klp_enable(b, msg, sizeof(msg)), -EBUSY);
	EXPECT_STR_HAS(msg, "in transition");
	release(&e);
	if (tick_until(&e, a, KLP_PATCHED)) {
		EXPECT_EQ(klp_enable(b, msg, sizeof(msg)), -EBUSY);
		EXPECT_STR_HAS(msg, "lp_mix");
	}
	expect_no_check_failures(&e);
out:
	lenv_end(&e);
}

TEST_SUITE(livepatch_kvm, "livepatch_kvm", true,
	   TEST(test_kvm_lp_straggler), TEST(test_kvm_lp_reverse), TEST(test_kvm_lp_force),
	   TEST(test_kvm_lp_no_stack_check_detected), TEST(test_kvm_lp_stub_grace),
	   TEST(test_kvm_lp_guest_clock),
	   TEST(test_kvm_lp_refusals))
