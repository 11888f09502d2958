// SPDX-License-Identifier: MIT
/*
 * test_vmm_sync.c - the sync primitive, pause/resume and hotplug against
 * the real guest.
 *
 * The checks are built to fail on the bugs they guard against: a sync that
 * returns before a vCPU acknowledged its generation (checked against the
 * generation recorded before the call), a lost or double acknowledgement
 * (exact per-vCPU count), a pause that does not stop the world (hypercall
 * counters and registers must not move while paused), and an offline vCPU
 * that still runs.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "testlib.h"
#include "test_vmm_util.h"
#include "../vmm/vmm_internal.h"

#define SYNC_ROUNDS	10000u
#define PAUSE_ROUNDS	1000u

static void test_sync_10000(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_HOT);
	uint64_t acked0[2], early = 0, failed = 0;
	struct vmm_vcpu_stats st;

	if (!vm)
		return;
	for (unsigned int i = 0; i < 2; i++) {
		vmm_vcpu_stats(vm, i, &st);
		acked0[i] = st.syncs_acked;
	}
	for (unsigned int r = 0; r < SYNC_ROUNDS; r++) {
		uint64_t before = atomic_load(&vm->sync_gen);

		if (vmm_sync(vm))
			failed++;
		/* This call's generation is before + 1: both must have it. */
		for (unsigned int i = 0; i < 2; i++)
			if (atomic_load(&vm->vcpus[i].acked_gen) < before + 1)
				early++;
	}
	EXPECT_EQ_U64(0, failed);
	EXPECT_EQ_U64(0, early);
	EXPECT_EQ_U64(SYNC_ROUNDS, atomic_load(&vm->sync_gen));
	for (unsigned int i = 0; i < 2; i++) {
		vmm_vcpu_stats(vm, i, &st);
		/* Every generation acknowledged exactly once: none lost. */
		EXPECT_EQ_U64(SYNC_ROUNDS, st.syncs_acked - acked0[i]);
		EXPECT_EQ_U64(SYNC_ROUNDS, atomic_load(&vm->vcpus[i].acked_gen));
	}
	EXPECT_EQ_U64(VMM_TIMEOUT, vmm_wait(vm, 1, NULL));	/* still running */
	vmt_finish(vm);
}

/*
 * PING: every vCPU loops on CPL0 NOP hypercalls (it never says READY), so
 * each is nearly always just exiting on port IO (pause must complete it)
 * and the NOP counter gives a blocking way to see progress.
 */
static void test_pause_resume_1000(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_PING);
	uint64_t differ = 0, moved = 0, stalls = 0, errors = 0;

	if (!vm)
		return;
	for (unsigned int r = 0; r < PAUSE_ROUNDS; r++) {
		uint64_t nops;

		int e = vmm_pause(vm);

		if (e) {
			fprintf(stderr, "\n  round %u: vmm_pause: %d\n", r, e);
			errors++;
			break;
		}
		nops = vmm_hcall_count(vm, VMPOKE_HC_NOP);
		for (unsigned int i = 0; i < 2; i++) {
			struct kvm_regs a, b;
			struct kvm_sregs s;

			if (vmm_vcpu_get_regs(vm, i, &a) || vmm_vcpu_get_regs(vm, i, &b) ||
			    vmm_vcpu_get_sregs(vm, i, &s)) {
				fprintf(stderr, "\n  round %u: vcpu %u registers not "
					"readable while paused\n", r, i);
				errors++;
				continue;
			}
			if (memcmp(&a, &b, sizeof(a)))
				differ++;
			if (r == 0)
				EXPECT_EQ_U64(0x1000, s.cr3);
			/* Resuming with an unchanged but dirty cache is harmless. */
			if (r % 2 && vmm_vcpu_set_regs(vm, i, &a))
				errors++;
		}
		if (vmm_hcall_count(vm, VMPOKE_HC_NOP) != nops)
			moved++;
		vmm_resume(vm);
		if (vmm_wait_hcall(vm, VMPOKE_HC_NOP, nops + 2, VMT_WAIT_MS)) {
			stalls++;
			break;
		}
	}
	EXPECT_EQ_U64(0, errors);
	EXPECT_EQ_U64(0, differ);
	EXPECT_EQ_U64(0, moved);
	EXPECT_EQ_U64(0, stalls);
	/* Registers are only readable while parked. */
	EXPECT_EQ_U64((uint64_t)-EBUSY, (uint64_t)vmm_vcpu_get_regs(vm, 0,
						&(struct kvm_regs){ 0 }));
	vmt_finish(vm);
}

static uint64_t time_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void test_hotplug(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_PING);
	struct vmm_vcpu_stats a, b;
	struct kvm_regs regs;
	uint64_t nops;

	if (!vm)
		return;
	EXPECT_EQ_U64(0, vmm_vcpu_offline(vm, 1));
	EXPECT_FALSE(vmm_vcpu_is_online(vm, 1));
	EXPECT_TRUE(vmm_vcpu_is_online(vm, 0));
	vmm_vcpu_stats(vm, 1, &a);
	EXPECT_FALSE(a.online);
	/* An offline vCPU counts as synced and its registers are readable. */
	for (int i = 0; i < 100; i++)
		EXPECT_EQ_U64(0, vmm_sync(vm));
	EXPECT_EQ_U64(0, vmm_vcpu_get_regs(vm, 1, &regs));
	/* vCPU 0 goes on, vCPU 1 does not. */
	nops = vmm_hcall_count(vm, VMPOKE_HC_NOP);
	EXPECT_EQ_U64(0, vmm_wait_hcall(vm, VMPOKE_HC_NOP, nops + 100, VMT_WAIT_MS));
	vmm_vcpu_stats(vm, 1, &b);
	EXPECT_EQ_U64(a.hcalls, b.hcalls);
	EXPECT_EQ_U64(a.exits, b.exits);
	/* Pause with one vCPU offline: both parked, both readable. */
	EXPECT_EQ_U64(0, vmm_pause(vm));
	EXPECT_EQ_U64(0, vmm_vcpu_get_regs(vm, 0, &regs));
	EXPECT_EQ_U64(0, vmm_vcpu_get_regs(vm, 1, &regs));
	vmm_resume(vm);
	EXPECT_EQ_U64(0, vmm_vcpu_online(vm, 1));
	EXPECT_TRUE(vmm_vcpu_is_online(vm, 1));
	/*
	 * Back online: vCPU 1 runs again.  Blocking waits on vCPU 0's NOPs
	 * pace the check; the bound is time, not a NOP count, because a
	 * loaded host may keep vCPU 1's thread off the CPU for a while.
	 */
	for (uint64_t end = time_ms() + VMT_WAIT_MS; time_ms() < end;) {
		vmm_vcpu_stats(vm, 1, &b);
		if (b.hcalls > a.hcalls)
			break;
		nops = vmm_hcall_count(vm, VMPOKE_HC_NOP);
		vmm_wait_hcall(vm, VMPOKE_HC_NOP, nops + 50, 1000);
	}
	EXPECT_TRUE_MSG(b.hcalls > a.hcalls, "vcpu 1 did not run after online");
	EXPECT_EQ_U64(0, vmm_sync(vm));
	vmt_finish(vm);
}

struct plug_arg {
	struct vm *vm;
	unsigned int rounds;
	uint64_t errors;
};

static void *plug_thread(void *p)
{
	struct plug_arg *a = p;

	for (unsigned int i = 0; i < a->rounds; i++) {
		if (vmm_vcpu_offline(a->vm, 1))
			a->errors++;
		if (vmm_vcpu_online(a->vm, 1))
			a->errors++;
	}
	return NULL;
}

/* Hotplug from one thread while another syncs (as torture does). */
static void test_hotplug_during_sync(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_HOT);
	struct plug_arg a = { .rounds = 200 };
	pthread_t t;
	uint64_t failed = 0, early = 0;

	if (!vm)
		return;
	a.vm = vm;
	EXPECT_EQ_FATAL(0, pthread_create(&t, NULL, plug_thread, &a));
	for (unsigned int r = 0; r < 2000; r++) {
		uint64_t before = atomic_load(&vm->sync_gen);

		if (vmm_sync(vm))
			failed++;
		/* vCPU 0 is always online: it must have acked this call. */
		if (atomic_load(&vm->vcpus[0].acked_gen) < before + 1)
			early++;
	}
	pthread_join(t, NULL);
	EXPECT_EQ_U64(0, failed);
	EXPECT_EQ_U64(0, early);
	EXPECT_EQ_U64(0, a.errors);
	EXPECT_TRUE(vmm_vcpu_is_online(vm, 1));
	EXPECT_EQ_U64(0, vmm_sync(vm));
	vmt_finish(vm);
}

/* Hypercall interval recording fills exactly the buffer it was given. */
static void test_record_intervals(void)
{
	struct vm *vm = vmt_boot_ready(1, VMPOKE_SCN_PING);
	uint64_t buf[64], zero = 0, nops;

	if (!vm)
		return;
	memset(buf, 0, sizeof(buf));
	vmm_record_hcall_intervals(vm, 0, VMPOKE_HC_NOP, buf, 64);
	nops = vmm_hcall_count(vm, VMPOKE_HC_NOP);
	EXPECT_EQ_U64(0, vmm_wait_hcall(vm, VMPOKE_HC_NOP, nops + 200, VMT_WAIT_MS));
	EXPECT_EQ_U64(64, vmm_recorded_intervals(vm, 0));
	for (unsigned int i = 0; i < 64; i++)
		zero += buf[i] == 0;
	EXPECT_EQ_U64(0, zero);
	/* Other kinds are not recorded. */
	vmm_record_hcall_intervals(vm, 0, VMPOKE_HC_PUTS, buf, 64);
	nops = vmm_hcall_count(vm, VMPOKE_HC_NOP);
	EXPECT_EQ_U64(0, vmm_wait_hcall(vm, VMPOKE_HC_NOP, nops + 50, VMT_WAIT_MS));
	EXPECT_EQ_U64(0, vmm_recorded_intervals(vm, 0));
	vmm_record_hcall_intervals(vm, 0, VMPOKE_HC_NOP, NULL, 0);
	vmt_finish(vm);
}

/*
 * A sync while a vCPU sits in HLT (after its DONE the guest halts with
 * IF=0, and the in-kernel irqchip keeps it inside KVM_RUN): the kick must
 * bring it out to acknowledge, every time.  vCPU 1 is held offline so the
 * run does not end when vCPU 0 is done.
 */
static void test_sync_halted_vcpu(void)
{
	struct vm_config cfg;
	struct vmm_vcpu_stats st0, st1;
	struct kvm_regs regs;
	static const uint8_t halt_loop[4] = { 0xfa, 0xf4, 0xeb, 0xfc };
	uint8_t loop[4];
	uint64_t failed = 0;
	bool in_loop = false;
	struct vm *vm;

	if (!testlib_require_kvm())
		return;
	vmt_config(&cfg, 2, VMPOKE_SCN_PING, 2000);
	vm = vmt_boot(&cfg);
	if (!vm)
		return;
	EXPECT_EQ_FATAL(vmm_vcpu_offline(vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_wait_hcall(vm, VMPOKE_HC_DONE, 1, VMT_WAIT_MS), 0);
	vmm_vcpu_stats(vm, 0, &st0);
	for (unsigned int r = 0; r < 200; r++)
		failed += vmm_sync(vm) != 0;
	vmm_vcpu_stats(vm, 0, &st1);
	EXPECT_EQ_U64(0, failed);
	EXPECT_EQ_U64(200, st1.syncs_acked - st0.syncs_acked);
	/* Nor does a core sync wait on it (or on offline vCPU 1). */
	for (unsigned int r = 0; r < 200; r++)
		failed += vmm_sync_core(vm) != 0;
	vmm_vcpu_stats(vm, 0, &st0);
	EXPECT_EQ_U64(0, failed);
	EXPECT_EQ_U64(vmm_sync_core_enabled(vm) ? 0 : 200, st0.syncs_acked - st1.syncs_acked);
	/*
	 * It really sits in the guest's halt loop ("cli; hlt; jmp .-3"): a
	 * kick may wake it to go round once, so RIP is at one of the three.
	 */
	EXPECT_EQ_FATAL(vmm_pause(vm), 0);
	EXPECT_EQ(vmm_vcpu_get_regs(vm, 0, &regs), 0);
	for (int back = 0; back <= 2 && !in_loop; back++)
		in_loop = !vmm_gva_read(vm, regs.rip - back, loop, sizeof(loop)) &&
			  !memcmp(loop, halt_loop, sizeof(loop));
	EXPECT_TRUE_MSG(in_loop, "vcpu 0 at 0x%llx, not in its halt loop",
			(unsigned long long)regs.rip);
	vmm_resume(vm);
	EXPECT_EQ(vmm_vcpu_online(vm, 1), 0);
	EXPECT_EQ_U64(VMM_DONE, vmm_wait(vm, VMT_WAIT_MS, NULL));
	vmm_destroy(vm);
}

/*
 * A vCPU that cannot acknowledge (its thread is held in the trap hook):
 * vmm_sync_laggard() times out and names that vCPU, the one its message
 * names, so the patcher's error can name the same one.
 */
static void test_sync_names_laggard(void)
{
	struct vmt_held h = { .lock = PTHREAD_MUTEX_INITIALIZER,
			      .cond = PTHREAD_COND_INITIALIZER };
	struct vm *vm = vmt_boot_held(&h);
	int laggard = -2;

	if (!vm)
		return;
	EXPECT_EQ(vmm_sync_laggard(vm, &laggard), -ETIMEDOUT);
	EXPECT_EQ(laggard, 1);
	vmt_release_held(&h);
	vmt_finish(vm);
}

TEST_SUITE(vmm_sync, "vmm_sync", true,
	   TEST(test_sync_10000), TEST(test_sync_halted_vcpu), TEST(test_pause_resume_1000),
	   TEST(test_hotplug), TEST(test_hotplug_during_sync),
	   TEST(test_record_intervals), TEST(test_sync_names_laggard))
