// SPDX-License-Identifier: MIT
/*
 * test_vmm_traps.c - guest INT3s reach the trap hook on the path the VMM
 * chose, and both verdicts do what they say: FOREIGN hands the #BP to the
 * guest's own handler (which counts it), HANDLED resumes where the hook
 * said without the guest ever seeing it.  The path is the one
 * VMPOKE_TRAP_PATH forces, if any: `make check` runs these on the host's
 * path and again on debug-exit (make check-debug-exit), where FOREIGN is
 * a re-injection with KVM_GUESTDBG_INJECT_BP.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
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
	if (t->rip != t->addr + 1 || t->vcpu >= vmm_nr_vcpus(t->vm) ||
	    t->path != vmm_trap_path(t->vm))
		atomic_fetch_add(&h->bad, 1);
	/* HANDLED: resume after the int3, as if it were a one-byte NOP. */
	return h->verdict;
}

static struct vm *int3_run(struct hook_state *h, struct vmm_result *res,
			   unsigned int hz)
{
	struct vm_config cfg;
	struct vm *vm;
	int code;

	if (!testlib_require_kvm())
		return NULL;
	vmt_config(&cfg, 2, VMPOKE_SCN_INT3, INT3_ITERS);
	cfg.hz = hz;
	vm = vmm_create(&cfg, &code);
	EXPECT_NOT_NULL_FATAL(vm);
	vmm_set_trap_hook(vm, count_hook, h);
	EXPECT_EQ(0, vmm_start(vm));
	vmm_wait(vm, VMT_WAIT_MS, res);
	return vm;
}

/*
 * Every int3 of the guest's own INT3 scenario reaches the hook exactly once
 * and, handed on as FOREIGN, the guest's own handler exactly once: through
 * the doorbell's answer on path (b), through KVM_GUESTDBG_INJECT_BP on
 * path (a).
 */
static void int3_foreign(unsigned int hz)
{
	struct hook_state h = { .verdict = VMM_TRAP_FOREIGN };
	struct vmpoke_task_table *tab;
	struct vmm_result res;
	uint64_t own = 0, traps = 0;
	struct vm *vm = int3_run(&h, &res, hz);

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

/*
 * On path (a) without a timer, so no interrupt is ever pending when a #BP
 * is re-injected (the tick variant below needs NRIPS there); the doorbell
 * path keeps the usual 100 Hz tick.
 */
static void test_int3_foreign(void)
{
	int3_foreign(vmm_trap_path_env() == VMM_TRAP_DEBUG_EXIT ? 0 : 100);
}

/*
 * With a 1 kHz tick, re-injected #BPs meet pending timer interrupts.  On
 * path (a) this needs NRIPS under kvm_amd: without it, Linux 6.1 loses the
 * #BP when the entry that injects it is cancelled (README, "Trap path
 * (a)"), so `make check-debug-exit` runs this suite with NRIPS on.
 */
static void test_int3_foreign_tick(void)
{
	int3_foreign(1000);
}

/* The guest counts none of its int3s, and its own check says so. */
static void test_int3_handled(void)
{
	struct hook_state h = { .verdict = VMM_TRAP_HANDLED };
	struct vmm_result res;
	struct vm *vm = int3_run(&h, &res, 100);

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
	/*
	 * No tick on trap path (a): under kvm_amd without NRIPS a re-injected
	 * #BP that meets a pending interrupt is lost (int3_reinject suite).
	 */
	if (vmm_trap_path_env() == VMM_TRAP_DEBUG_EXIT)
		cfg.hz = 0;
	vm = vmm_create(&cfg, &code);
	EXPECT_NOT_NULL_FATAL(vm);
	EXPECT_EQ(0, vmm_start(vm));
	do {
		set_err |= vmm_set_trap_hook(vm, swap_hook_a, &swap_a);
		/*
		 * Sync with a hook in place: in the nested KVM (TCG) with the
		 * SCHED_FIFO sync, the vCPUs were seen to run their int3s only
		 * while the controller waited in a sync, so a sync after the
		 * unhook left every trap hookless (0 calls in 3 of 5 runs).
		 */
		if (++rounds % 256 == 0)
			vmm_sync(vm);
		set_err |= vmm_set_trap_hook(vm, swap_hook_b, &swap_b);
		set_err |= vmm_set_trap_hook(vm, NULL, NULL);
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

/* vmm_create() with this path in the config: the VM, or NULL and *code. */
static struct vm *create_on(enum vmm_trap_path p, int *code)
{
	struct vm_config cfg;

	vmt_config(&cfg, 1, VMPOKE_SCN_IDLE, 0);
	cfg.trap_path = p;
	return vmm_create(&cfg, code);
}

static void expect_path(enum vmm_trap_path cfg, bool works, enum vmm_trap_path want)
{
	int code = -1;
	struct vm *vm = create_on(cfg, &code);

	if (!works) {
		EXPECT_TRUE_MSG(vm == NULL, "trap path %s: created where it cannot work",
				vmm_trap_path_name(cfg));
		EXPECT_EQ_U64(VMPOKE_EXIT_HOST, code);
		vmm_destroy(vm);
		return;
	}
	EXPECT_TRUE_MSG(vm != NULL, "trap path %s: vmm_create failed (%d)",
			vmm_trap_path_name(cfg), code);
	if (vm)
		EXPECT_TRUE_MSG(vmm_trap_path(vm) == want, "config %s: VM uses %s, want %s",
				vmm_trap_path_name(cfg), vmm_trap_path_name(vmm_trap_path(vm)),
				vmm_trap_path_name(want));
	vmm_destroy(vm);
}

/*
 * A VM takes the path its config names, else the one VMPOKE_TRAP_PATH
 * forces, else auto's choice; a forced debug-exit on a KVM that never gives
 * KVM_EXIT_DEBUG for int3 is an error, never a silent doorbell.
 */
static void test_trap_path_choice(void)
{
	char *saved = getenv(VMM_TRAP_PATH_ENV) ? strdup(getenv(VMM_TRAP_PATH_ENV)) : NULL;
	int env = vmm_trap_path_env(), code = -1;
	struct vmm_host_caps caps;
	bool dbg;

	if (!testlib_require_kvm())
		return;
	EXPECT_EQ_FATAL(vmm_probe_host(&caps), 0);
	dbg = caps.debug_exit_on_int3;
	expect_path(VMM_TRAP_DOORBELL, true, VMM_TRAP_DOORBELL);
	expect_path(VMM_TRAP_DEBUG_EXIT, dbg, VMM_TRAP_DEBUG_EXIT);
	/* The suite's own environment (check-debug-exit forces debug-exit). */
	expect_path(VMM_TRAP_AUTO, env != VMM_TRAP_DEBUG_EXIT || dbg,
		    env > VMM_TRAP_AUTO ? (enum vmm_trap_path)env : vmm_trap_path_auto(dbg));
	setenv(VMM_TRAP_PATH_ENV, "doorbell", 1);
	expect_path(VMM_TRAP_AUTO, true, VMM_TRAP_DOORBELL);
	expect_path(VMM_TRAP_DEBUG_EXIT, dbg, VMM_TRAP_DEBUG_EXIT);	/* config first */
	setenv(VMM_TRAP_PATH_ENV, "debug-exit", 1);
	expect_path(VMM_TRAP_AUTO, dbg, VMM_TRAP_DEBUG_EXIT);
	setenv(VMM_TRAP_PATH_ENV, "auto", 1);
	expect_path(VMM_TRAP_AUTO, true, vmm_trap_path_auto(dbg));
	setenv(VMM_TRAP_PATH_ENV, "magic", 1);
	EXPECT_NULL(create_on(VMM_TRAP_AUTO, &code));
	EXPECT_EQ_U64(VMPOKE_EXIT_USAGE, code);
	if (saved)
		setenv(VMM_TRAP_PATH_ENV, saved, 1);
	else
		unsetenv(VMM_TRAP_PATH_ENV);
	free(saved);
}

/*
 * A vCPU thread that never comes back must not hang vmm_destroy(): here the
 * trap hook blocks (no kick reaches a thread outside KVM_RUN), as a vCPU
 * deaf to kicks inside KVM_RUN once did on kvm_pvm.  vmm_destroy() must
 * abandon the thread and return; the hook is released afterwards and the
 * thread leaves on the VM that was leaked for it.
 */
static sem_t stuck_entered, stuck_release, stuck_destroyed;

static enum vmm_trap_verdict stuck_hook(struct vmm_trap *t, void *opaque)
{
	(void)t;
	(void)opaque;
	sem_post(&stuck_entered);
	sem_wait(&stuck_release);
	sem_post(&stuck_release);	/* pass it on to the next stuck vCPU */
	return VMM_TRAP_FOREIGN;
}

static void *stuck_destroy_main(void *vm)
{
	vmm_destroy(vm);
	sem_post(&stuck_destroyed);
	return NULL;
}

static bool stuck_wait(sem_t *sem, unsigned int s)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += s;
	while (sem_timedwait(sem, &ts))
		if (errno != EINTR)
			return false;
	return true;
}

static void test_destroy_abandons_stuck_vcpu(void)
{
	struct vm_config cfg;
	struct vm *vm;
	pthread_t t;
	int code;

	if (!testlib_require_kvm())
		return;
	sem_init(&stuck_entered, 0, 0);
	sem_init(&stuck_release, 0, 0);
	sem_init(&stuck_destroyed, 0, 0);
	vmt_config(&cfg, 2, VMPOKE_SCN_INT3, 20000);
	vm = vmm_create(&cfg, &code);
	EXPECT_NOT_NULL_FATAL(vm);
	vmm_set_trap_hook(vm, stuck_hook, NULL);
	EXPECT_EQ(0, vmm_start(vm));
	EXPECT_TRUE_MSG(stuck_wait(&stuck_entered, 120), "no vCPU reached the hook");
	EXPECT_EQ_FATAL(0, pthread_create(&t, NULL, stuck_destroy_main, vm));
	/* Two stuck vCPUs at most, each given up on after 10 s. */
	EXPECT_TRUE_MSG(stuck_wait(&stuck_destroyed, 90),
			"vmm_destroy() still joining a vCPU stuck in its hook after 90 s");
	sem_post(&stuck_release);
	pthread_join(t, NULL);
}

TEST_SUITE(vmm_traps, "vmm_traps", true,
	   TEST(test_trap_path_choice), TEST(test_int3_foreign), TEST(test_int3_handled),
	   TEST(test_hook_swap_under_traps), TEST(test_destroy_abandons_stuck_vcpu))
/* Its own suite, so check-debug-exit can run it with NRIPS on. */
TEST_SUITE(int3_reinject, "int3_reinject", true, TEST(test_int3_foreign_tick))
