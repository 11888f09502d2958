// SPDX-License-Identifier: MIT
/*
 * test_sync_core.c - vmm_sync_core(), the membarrier sync between a
 * patch's phases, against the real guest, and the patcher's use of it.
 *
 * What a core sync promises that a test can see: it returns without any
 * vCPU thread coming round its loop (no acknowledgement moves, and a
 * thread held in a trap hook does not stop it), it never ends the guest,
 * and switched off it is the acknowledged vmm_sync() again.  That a vCPU
 * in guest mode then fetches the new bytes is the torture test's job, as
 * it is for vmm_sync(); KVM's count of the exits it causes is in `bench
 * sync`, where the host's scheduling cannot fail a test.
 *
 * The patcher: each phase is a core sync, and retired trap-table
 * snapshots, which only an acknowledged sync may free, stay bounded.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jump_label.h"
#include "testlib.h"
#include "test_vmm_util.h"
#include "../vmm/vmm_internal.h"
#include "../patcher/patcher_internal.h"

#define CORE_ROUNDS	2000u

/*
 * Where the kernel offers no membarrier SYNC_CORE, vmm_sync_core() is
 * the acknowledged sync: say so, once, and test that instead.
 */
static bool core_available(struct vm *vm)
{
	if (vmm_sync_core_enabled(vm))
		return true;
	fprintf(stderr, "\n  NOTE: membarrier(SYNC_CORE) is not available (or "
		"VMPOKE_SYNC_CORE=0): vmm_sync_core() falls back to vmm_sync() ");
	return false;
}

static uint64_t acks(struct vm *vm, unsigned int id)
{
	struct vmm_vcpu_stats st;

	vmm_vcpu_stats(vm, id, &st);
	return st.syncs_acked;
}

/* Busy vCPUs: every core sync returns 0, and no vCPU acknowledges one. */
static void test_sync_core_no_acks(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_HOT);
	struct vmm_sync_info info0, info1;
	uint64_t acked0[2], failed = 0;
	bool core;

	if (!vm)
		return;
	core = core_available(vm);
	vmm_sync_info(vm, &info0);
	for (unsigned int i = 0; i < 2; i++)
		acked0[i] = acks(vm, i);
	for (unsigned int r = 0; r < CORE_ROUNDS; r++)
		failed += vmm_sync_core(vm) != 0;
	vmm_sync_info(vm, &info1);
	EXPECT_EQ_U64(0, failed);
	for (unsigned int i = 0; i < 2; i++)
		EXPECT_EQ_U64(core ? 0 : CORE_ROUNDS, acks(vm, i) - acked0[i]);
	EXPECT_EQ_U64(core ? CORE_ROUNDS : 0, info1.core_syncs - info0.core_syncs);
	EXPECT_EQ_U64(VMM_TIMEOUT, vmm_wait(vm, 1, NULL));	/* still running */
	vmt_finish(vm);
}

/* Switched off, it is the acknowledged sync: one ack per vCPU and call. */
static void test_sync_core_off_is_vmm_sync(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_HOT);
	struct vmm_sync_info info0, info1;
	uint64_t acked0[2], failed = 0;

	if (!vm)
		return;
	EXPECT_EQ(vmm_sync_set_core(vm, false), 0);
	EXPECT_TRUE(!vmm_sync_core_enabled(vm));
	vmm_sync_info(vm, &info0);
	for (unsigned int i = 0; i < 2; i++)
		acked0[i] = acks(vm, i);
	for (unsigned int r = 0; r < 200; r++)
		failed += vmm_sync_core(vm) != 0;
	vmm_sync_info(vm, &info1);
	EXPECT_EQ_U64(0, failed);
	for (unsigned int i = 0; i < 2; i++)
		EXPECT_EQ_U64(200, acks(vm, i) - acked0[i]);
	EXPECT_EQ_U64(0, info1.core_syncs - info0.core_syncs);
	vmt_finish(vm);
}

/*
 * vCPU 1's thread held in the trap hook, in user space: vmm_sync() would
 * time out on it (vmm_sync suite, test_sync_names_laggard); a core sync
 * returns, because a thread outside guest mode needs nothing.  From the
 * hook itself the call is refused, as vmm_sync() is.
 */
static void test_sync_core_held_thread(void)
{
	struct vmt_held h = { .lock = PTHREAD_MUTEX_INITIALIZER,
			      .cond = PTHREAD_COND_INITIALIZER,
			      .on_hold = vmm_sync_core, .on_hold_ret = 1 };
	struct vm *vm = vmt_boot_held(&h);
	uint64_t failed = 0;

	if (!vm)
		return;
	EXPECT_EQ(h.on_hold_ret, -EDEADLK);
	/* The fallback would wait for the held thread: nothing to test. */
	if (core_available(vm)) {
		for (unsigned int r = 0; r < 100; r++)
			failed += vmm_sync_core(vm) != 0;
		EXPECT_EQ_U64(0, failed);
	}
	vmt_release_held(&h);
	vmt_finish(vm);
}

/*
 * The patcher: a key flip's three syncs are core syncs while few
 * snapshots wait, and a long run of flips keeps the retired snapshots
 * bounded (an acknowledged sync frees them) and the guest's checks happy.
 */
static void test_sync_core_patcher(void)
{
	struct jl_table *t = NULL;
	const struct jl_key *k = NULL;
	struct poke_stats st0, st1;
	struct jl_flip_out o;
	struct patcher *p;
	struct vm *vm;
	size_t most = 0;
	uint64_t failed = 0;
	char msg[256];
	bool core, on = false;

	if (!vmt_boot_patchable(2, &vm, &p))
		goto out;
	core = core_available(vm);
	EXPECT_TRUE_MSG(!jl_table_load(testlib_image(), vmm_symtab(vm), &t, msg, sizeof(msg)),
			"jl_table_load: %s", msg);
	if (!t || !(k = jl_key_find(t, "jl_key_one")))
		goto out;
	/* The first flip finds nothing retired yet: three core syncs. */
	patcher_stats(p, &st0);
	EXPECT_EQ(jl_key_set(p, vm, k, on = !on, &o, msg, sizeof(msg)), 0);
	patcher_stats(p, &st1);
	EXPECT_EQ_U64(3, st1.syncs - st0.syncs);
	EXPECT_EQ_U64(core ? 3 : 0, st1.core_syncs - st0.core_syncs);
	for (unsigned int r = 0; r < 200; r++) {
		size_t pending;

		failed += jl_key_set(p, vm, k, on = !on, &o, msg, sizeof(msg)) != 0;
		pending = traptable_pending(&p->table);
		most = pending > most ? pending : most;
	}
	patcher_stats(p, &st1);
	EXPECT_EQ_U64(0, failed);
	EXPECT_EQ_U64(3 * 201, st1.syncs - st0.syncs);
	/* A batch retires two snapshots: the backlog stays under 16 + 2. */
	EXPECT_TRUE_MSG(most < 18, "%zu retired snapshots waited at once", most);
	EXPECT_TRUE_MSG(p->table.freed >= 2 * 201 - 18, "only %llu snapshots freed",
			(unsigned long long)p->table.freed);
	if (core)
		EXPECT_TRUE_MSG(st1.core_syncs - st0.core_syncs > 3 * 201 / 2,
				"%llu of %llu syncs were core syncs",
				(unsigned long long)(st1.core_syncs - st0.core_syncs),
				(unsigned long long)(st1.syncs - st0.syncs));
	EXPECT_EQ_U64(VMM_TIMEOUT, vmm_wait(vm, 1, NULL));	/* no check failed */
out:
	jl_table_free(t);
	testlib_vm_end(vm, p);
}

TEST_SUITE(sync_core, "sync_core", true,
	   TEST(test_sync_core_no_acks), TEST(test_sync_core_off_is_vmm_sync),
	   TEST(test_sync_core_held_thread),
	   TEST(test_sync_core_patcher))
