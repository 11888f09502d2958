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
	CU_ASSERT_PTR_NOT_NULL_FATAL(vm);
	vmm_set_trap_hook(vm, count_hook, h);
	CU_ASSERT_EQUAL(0, vmm_start(vm));
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
	CU_ASSERT_PTR_NOT_NULL_FATAL(tab);
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

TEST_SUITE(vmm_traps, "vmm_traps", true,
	   TEST(test_int3_foreign), TEST(test_int3_handled))
