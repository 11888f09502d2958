// SPDX-License-Identifier: MIT
/*
 * test_vmm_traps.c - guest INT3s reach the trap hook on the path the VMM
 * chose, and both verdicts do what they say: FOREIGN hands the #BP to the
 * guest's own handler (which counts it), HANDLED resumes where the hook
 * said without the guest ever seeing it.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "test_vmm_util.h"

#define INT3_ITERS	50u

struct hook_state {
	_Atomic uint64_t calls, bad;
	enum vmm_trap_verdict verdict;
	_Atomic int sync_ret;		/* vmm_sync() from the hook, once */
};

static enum vmm_trap_verdict count_hook(struct vmm_trap *t, void *opaque)
{
	struct hook_state *h = opaque;

	/* Waiting for itself would deadlock: the VMM must refuse. */
	if (atomic_fetch_add(&h->calls, 1) == 0)
		atomic_store(&h->sync_ret, vmm_sync(t->vm));
	if (t->rip != t->addr + 1 || t->vcpu >= vmm_nr_vcpus(t->vm))
		atomic_fetch_add(&h->bad, 1);
	/* HANDLED: resume after the int3, as if it were a one-byte NOP. */
	return h->verdict;
}

static struct vm *int3_run(struct hook_state *h, struct vmm_result *res)
{
	struct vm_config cfg;
	struct vm *vm;
	int code;

	if (!testlib_require_kvm())
		return NULL;
	vmt_config(&cfg, 2, VMPOKE_SCN_INT3, INT3_ITERS);
	vm = vmm_create(&cfg, &code);
	EXPECT_NOT_NULL_FATAL(vm);
	vmm_set_trap_hook(vm, count_hook, h);
	EXPECT_EQ(0, vmm_start(vm));
	vmm_wait(vm, VMT_WAIT_MS, res);
	return vm;
}

static void test_int3_foreign(void)
{
	struct hook_state h = { .verdict = VMM_TRAP_FOREIGN };
	struct vmpoke_task_table *tab;
	struct vmm_result res;
	uint64_t own = 0, traps = 0;
	struct vm *vm = int3_run(&h, &res);

	if (!vm)
		return;
	EXPECT_TRUE_MSG(res.outcome == VMM_DONE, "outcome %d: %s", res.outcome,
			res.message);
	tab = malloc(sizeof(*tab));
	EXPECT_NOT_NULL_FATAL(tab);
	if (vmt_read_tasks(vm, tab))
		for (unsigned int i = 0; i < VMPOKE_MAX_VCPUS * VMPOKE_MAX_TASKS; i++)
			own += tab->tasks[i].own_int3;
	for (unsigned int v = 0; v < 2; v++) {
		struct vmm_vcpu_stats st;

		vmm_vcpu_stats(vm, v, &st);
		traps += st.traps;
	}
	EXPECT_EQ_U64(2 * 2 * INT3_ITERS, own);
	EXPECT_EQ_U64(own, traps);
	EXPECT_EQ_U64(own, atomic_load(&h.calls));
	EXPECT_EQ_U64((uint64_t)-EDEADLK, (uint64_t)atomic_load(&h.sync_ret));
	EXPECT_EQ_U64(0, atomic_load(&h.bad));
	free(tab);
	vmm_destroy(vm);
}

/* The guest counts none of its int3s, and its own check says so. */
static void test_int3_handled(void)
{
	struct hook_state h = { .verdict = VMM_TRAP_HANDLED };
	struct vmm_result res;
	struct vm *vm = int3_run(&h, &res);

	if (!vm)
		return;
	EXPECT_TRUE_MSG(res.outcome == VMM_GUEST_CHECK, "outcome %d: %s",
			res.outcome, res.message);
	EXPECT_TRUE_MSG(strstr(res.message, "own int3") != NULL, "%s", res.message);
	EXPECT_EQ_U64(INT3_ITERS, res.check.expected);
	EXPECT_EQ_U64(0, res.check.actual);
	EXPECT_TRUE_MSG(atomic_load(&h.calls) >= INT3_ITERS, "hook calls %llu",
			(unsigned long long)atomic_load(&h.calls));
	EXPECT_EQ_U64(0, atomic_load(&h.bad));
	vmm_destroy(vm);
}

/*
 * Two hooks that each know their own opaque.  A vCPU that called one with
 * the other's opaque (or with none) saw half of an old (fn, opaque) pair
 * and half of a new one: unhooking the patcher that way once handed
 * traptable_hook() a NULL patcher and crashed the VMM.
 */
struct swap_hook {
	_Atomic uint64_t calls;
};

static _Atomic uint64_t swap_bad;

static struct swap_hook swap_a, swap_b;

/* fn's own record is `want`: any other opaque is half of another pair. */
static enum vmm_trap_verdict swap_check(void *opaque, struct swap_hook *want)
{
	if (opaque != want)
		atomic_fetch_add(&swap_bad, 1);
	else
		atomic_fetch_add(&want->calls, 1);
	return VMM_TRAP_FOREIGN;	/* the guest counts every int3 itself */
}

static enum vmm_trap_verdict swap_hook_a(struct vmm_trap *t, void *opaque)
{
	(void)t;
	return swap_check(opaque, &swap_a);
}

static enum vmm_trap_verdict swap_hook_b(struct vmm_trap *t, void *opaque)
{
	(void)t;
	return swap_check(opaque, &swap_b);
}

/*
 * Hook, swap and unhook in a loop while scenario INT3 traps on every vCPU,
 * syncing now and then so replaced hook records are reclaimed (a record
 * freed too early is a use-after-free that ASan reports).
 */
static void test_hook_swap_under_traps(void)
{
	struct vm_config cfg;
	struct vmm_result res;
	struct vm *vm;
	uint64_t rounds = 0, before;
	int code, set_err = 0;

	if (!testlib_require_kvm())
		return;
	atomic_store(&swap_bad, 0);
	atomic_store(&swap_a.calls, 0);
	atomic_store(&swap_b.calls, 0);
	vmt_config(&cfg, 2, VMPOKE_SCN_INT3, 20000);
	vm = vmm_create(&cfg, &code);
	EXPECT_NOT_NULL_FATAL(vm);
	EXPECT_EQ(0, vmm_start(vm));
	do {
		set_err |= vmm_set_trap_hook(vm, swap_hook_a, &swap_a);
		set_err |= vmm_set_trap_hook(vm, swap_hook_b, &swap_b);
		set_err |= vmm_set_trap_hook(vm, NULL, NULL);
		if (++rounds % 256 == 0)
			vmm_sync(vm);
	} while (vmm_hcall_count(vm, VMPOKE_HC_DONE) < 2 &&
		 !vmm_hcall_count(vm, VMPOKE_HC_FAULT) &&
		 !vmm_hcall_count(vm, VMPOKE_HC_CHECK_FAIL) && rounds < 50000000);
	vmm_wait(vm, VMT_WAIT_MS, &res);
	before = atomic_load(&swap_a.calls) + atomic_load(&swap_b.calls);
	EXPECT_TRUE_MSG(res.outcome == VMM_DONE, "outcome %d: %s", res.outcome,
			res.message);
	EXPECT_EQ(0, set_err);
	EXPECT_EQ_U64(0, atomic_load(&swap_bad));
	EXPECT_TRUE_MSG(before > 0 && rounds > 1000, "%llu hook calls in %llu rounds",
			(unsigned long long)before, (unsigned long long)rounds);
	vmm_destroy(vm);
}

TEST_SUITE(vmm_traps, "vmm_traps", true,
	   TEST(test_int3_foreign), TEST(test_int3_handled),
	   TEST(test_hook_swap_under_traps))
