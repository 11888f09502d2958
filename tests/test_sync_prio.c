// SPDX-License-Identifier: MIT
/*
 * test_sync_prio.c - the scheduling measures of a sync on a host with no
 * core to spare (vmm/sync_prio.c), on the real guest: the controller's
 * SCHED_FIFO, SCHED_FIFO lent to a late vCPU and dropped at its ack, and
 * the fallbacks where SCHED_FIFO (and nice -10) are not permitted.  No
 * timing is asserted: which measure was taken, that every sync completed
 * and acked, and that no thread keeps a priority it was only lent.
 *
 * "No core to spare" is forced per VM (sync_cpus_test = 1), so the paths
 * run on any host.  "Not permitted" is made real: the test thread (the
 * controller) drops CAP_SYS_NICE from its effective set, which in Linux
 * is per thread, and sets RLIMIT_NICE and RLIMIT_RTPRIO to 0, all restored
 * after; or a thread of its own refuses itself sched_setscheduler() with
 * a seccomp filter.
 */
#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"
#include "test_vmm_util.h"
#include "../vmm/vmm_internal.h"

#define PRIO_SYNCS	200u

/* Is CAP_SYS_NICE in this thread's effective set?  Set it on or off. */
static int cap_sys_nice(int on)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
	uint32_t bit = 1u << (CAP_SYS_NICE & 31);
	int had;

	if (syscall(SYS_capget, &h, d))
		return -errno;
	had = !!(d[CAP_SYS_NICE >> 5].effective & bit);
	if (on < 0)
		return had;
	if (on)
		d[CAP_SYS_NICE >> 5].effective |= d[CAP_SYS_NICE >> 5].permitted & bit;
	else
		d[CAP_SYS_NICE >> 5].effective &= ~bit;
	return syscall(SYS_capset, &h, d) ? -errno : had;
}

/* Could this thread make itself SCHED_FIFO?  (Put back at once.) */
static bool fifo_permitted(void)
{
	struct sched_param sp = { .sched_priority = 1 }, zero = { 0 };

	if (sched_setscheduler(0, SCHED_FIFO, &sp))
		return false;
	sched_setscheduler(0, SCHED_OTHER, &zero);
	return true;
}

/* A VM of 2 vCPUs that believes it has one core: every sync takes the measures. */
static struct vm *prio_boot(enum vmpoke_scenario scn)
{
	struct vm *vm = vmt_boot_ready(2, scn);

	if (vm)
		vm->sync_cpus_test = 1;
	return vm;
}

/*
 * n syncs, each acked by every vCPU; false (and a failure) if one was not.
 * A vCPU still parked (callers resume just before) counts as quiescent
 * without acking, and may leave the park between a sync's return and the
 * check: so first every vCPU leaves it (bounded, sleeping).
 */
static bool prio_syncs(struct vm *vm, unsigned int n)
{
	for (unsigned int k = 0; k < vmm_nr_vcpus(vm); k++)
		for (int t = 0; t < 10000 && atomic_load(&vm->vcpus[k].parked); t++)
			usleep(1000);
	for (unsigned int i = 0; i < n; i++) {
		uint64_t gen;
		int err = vmm_sync(vm);

		/* Not fatal: the caller must still restore its capabilities and limits. */
		EXPECT_EQ(err, 0);
		if (err)
			return false;
		gen = atomic_load(&vm->sync_gen);
		for (unsigned int k = 0; k < vmm_nr_vcpus(vm); k++)
			EXPECT_TRUE_MSG(sync_acked(&vm->vcpus[k], gen),
					"sync %u returned before vcpu %u acked", i, k);
	}
	return true;
}

/*
 * Once every vCPU has parked (so it passed the ack that drops a lent
 * priority), no thread of the VM, nor the controller, is SCHED_FIFO.
 */
static void expect_no_fifo_left(struct vm *vm)
{
	EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
	EXPECT_EQ(vmm_pause(vm), 0);
	for (unsigned int i = 0; i < vmm_nr_vcpus(vm); i++) {
		pid_t t = atomic_load(&vm->vcpus[i].tid);

		EXPECT_EQ(sched_getscheduler(t), SCHED_OTHER);
		EXPECT_FALSE(atomic_load(&vm->vcpus[i].lent_fifo));
	}
	vmm_resume(vm);
}

static void test_sync_prio_fifo(void)
{
	struct vmm_sync_info info;
	struct vm *vm;

	EXPECT_TRUE_MSG(fifo_permitted(), "SCHED_FIFO is not permitted to this test "
			"(needs CAP_SYS_NICE or RLIMIT_RTPRIO): the controller's SCHED_FIFO "
			"cannot be tested here");
	vm = prio_boot(VMPOKE_SCN_HOT);
	if (!vm)
		return;
	prio_syncs(vm, PRIO_SYNCS);
	vmm_sync_info(vm, &info);
	EXPECT_EQ(info.host_cpus, 1u);
	EXPECT_FALSE(info.spin);
	EXPECT_EQ(info.prio, VMM_SYNC_PRIO_FIFO);
	expect_no_fifo_left(vm);
	/* The old behaviour, switched per VM: nice -10, no SCHED_FIFO. */
	vmm_sync_set_old(vm, true);
	prio_syncs(vm, 20);
	vmm_sync_info(vm, &info);
	EXPECT_EQ(info.prio, VMM_SYNC_PRIO_CONTROLLER);
	expect_no_fifo_left(vm);
	vmt_finish(vm);
}

/*
 * A vCPU that cannot ack for a while: its thread is held inside the trap
 * hook (scenario int3: the tasks' own INT3s reach the hook) until a helper
 * thread lets it go, well after the lend delay.  The sync must lend it
 * SCHED_FIFO (seen from inside the hook, on that very thread), and the
 * vCPU must drop it again at its ack.
 */
struct hold {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool armed, inside, release;
	int policy_after;	/* the held thread's policy once released */
};

static enum vmm_trap_verdict hold_hook(struct vmm_trap *t, void *opaque)
{
	struct hold *h = opaque;
	struct timespec until;

	(void)t;
	pthread_mutex_lock(&h->lock);
	if (h->armed && !h->inside) {
		h->inside = true;
		pthread_cond_broadcast(&h->cond);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 10;	/* bounded: the test fails, never hangs */
		while (!h->release &&
		       pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT)
			;
		h->policy_after = sched_getscheduler(0);
	}
	pthread_mutex_unlock(&h->lock);
	return VMM_TRAP_FOREIGN;
}

static void *hold_release(void *arg)
{
	struct hold *h = arg;
	struct timespec d = { 0, 20 * 1000000L };	/* > SYNC_LEND_MAX_NS */

	nanosleep(&d, NULL);
	pthread_mutex_lock(&h->lock);
	h->release = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void test_sync_prio_lend(void)
{
	struct hold h = { .lock = PTHREAD_MUTEX_INITIALIZER,
			  .cond = PTHREAD_COND_INITIALIZER, .policy_after = -1 };
	struct vmm_sync_info info;
	struct timespec until;
	pthread_t rel;
	struct vm *vm;
	bool inside;

	if (!fifo_permitted()) {
		CU_FAIL("SCHED_FIFO is not permitted to this test: lending cannot be tested");
		return;
	}
	vm = prio_boot(VMPOKE_SCN_INT3);
	if (!vm)
		return;
	EXPECT_EQ(vmm_set_trap_hook(vm, hold_hook, &h), 0);
	pthread_mutex_lock(&h.lock);
	h.armed = true;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 30;
	while (!h.inside && pthread_cond_timedwait(&h.cond, &h.lock, &until) != ETIMEDOUT)
		;
	inside = h.inside;
	pthread_mutex_unlock(&h.lock);
	EXPECT_TRUE_MSG(inside, "no vCPU entered the trap hook in 30 s");
	if (!inside || pthread_create(&rel, NULL, hold_release, &h)) {
		CU_FAIL("the held vCPU could not be set up");
		hold_release(&h);
		vmt_finish(vm);
		return;
	}
	EXPECT_EQ(vmm_sync(vm), 0);	/* returns only once the held vCPU acked */
	pthread_join(rel, NULL);
	vmm_sync_info(vm, &info);
	EXPECT_EQ(info.prio, VMM_SYNC_PRIO_FIFO);
	EXPECT_GE(info.lends, 1u);
	pthread_mutex_lock(&h.lock);
	EXPECT_EQ(h.policy_after, SCHED_FIFO);	/* lent while it could not ack */
	pthread_mutex_unlock(&h.lock);
	expect_no_fifo_left(vm);
	vmm_set_trap_hook(vm, NULL, NULL);
	prio_syncs(vm, 20);	/* reclaims the hook record, after the unhook */
	vmt_finish(vm);
}

/*
 * Neither SCHED_FIFO nor nice -10 permitted (CAP_SYS_NICE dropped,
 * RLIMIT_NICE and RLIMIT_RTPRIO 0): the vCPU threads go to nice +5 and
 * every sync still completes.
 */
static void test_sync_prio_not_permitted(void)
{
	struct rlimit nice0, rt0, lim;
	struct vmm_sync_info info;
	struct vm *vm;
	int had;

	EXPECT_EQ_FATAL(getrlimit(RLIMIT_NICE, &nice0), 0);
	EXPECT_EQ_FATAL(getrlimit(RLIMIT_RTPRIO, &rt0), 0);
	had = cap_sys_nice(0);
	EXPECT_TRUE_FATAL(had >= 0);
	lim = (struct rlimit){ 0, nice0.rlim_max };
	EXPECT_EQ(setrlimit(RLIMIT_NICE, &lim), 0);
	lim = (struct rlimit){ 0, rt0.rlim_max };
	EXPECT_EQ(setrlimit(RLIMIT_RTPRIO, &lim), 0);
	EXPECT_FALSE(fifo_permitted());
	errno = 0;
	EXPECT_EQ(setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), -10), -1);

	vm = prio_boot(VMPOKE_SCN_HOT);
	if (vm) {
		prio_syncs(vm, PRIO_SYNCS);
		vmm_sync_info(vm, &info);
		EXPECT_EQ(info.prio, VMM_SYNC_PRIO_VCPUS_LOWER);
		EXPECT_EQ_U64(0, info.lends);
		for (unsigned int i = 0; i < vmm_nr_vcpus(vm); i++) {
			errno = 0;
			EXPECT_EQ(getpriority(PRIO_PROCESS, (id_t)vm->vcpus[i].tid), 5);
		}
		expect_no_fifo_left(vm);
		vmt_finish(vm);
	}
	if (had > 0)
		EXPECT_EQ(cap_sys_nice(1), 0);
	EXPECT_EQ(setrlimit(RLIMIT_RTPRIO, &rt0), 0);
	EXPECT_EQ(setrlimit(RLIMIT_NICE, &nice0), 0);
}

/*
 * SCHED_FIFO refused but nice -10 permitted: sched_setscheduler() fails
 * with EPERM for one thread (a seccomp filter, which its threads inherit:
 * the VM's vCPU threads too) that keeps CAP_SYS_NICE.  The controller then
 * waits at nice -10 and gets its own nice value back after each sync.
 */
static void *nice_only_thread(void *arg)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sched_setscheduler, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(f) / sizeof(f[0]), f };
	struct vmm_sync_info info;
	struct vm *vm;
	int before;

	(void)arg;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
		CU_FAIL("seccomp filter refused: the nice -10 fallback is untested");
		return NULL;
	}
	EXPECT_FALSE(fifo_permitted());
	vm = prio_boot(VMPOKE_SCN_HOT);
	if (!vm)
		return NULL;
	errno = 0;
	before = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
	prio_syncs(vm, PRIO_SYNCS);
	vmm_sync_info(vm, &info);
	EXPECT_EQ(info.prio, VMM_SYNC_PRIO_CONTROLLER);
	EXPECT_EQ_U64(0, info.lends);
	EXPECT_EQ(getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid)), before);
	expect_no_fifo_left(vm);
	vmt_finish(vm);
	return NULL;
}

static void test_sync_prio_nice_only(void)
{
	pthread_t t;

	if (cap_sys_nice(-1) <= 0) {
		CU_FAIL("no CAP_SYS_NICE: the nice -10 fallback cannot be tested here");
		return;
	}
	EXPECT_EQ_FATAL(pthread_create(&t, NULL, nice_only_thread, NULL), 0);
	pthread_join(t, NULL);
}

/*
 * The SCHED_FIFO path and the nice -10 fallback need the privilege they
 * use.  Where this process lacks it (a user without CAP_SYS_NICE or
 * RLIMIT_RTPRIO) the suite is NOT RUN, said loudly, and make check runs
 * it in the nested KVM instead; it is never counted as passed.
 */
static const char *sync_prio_fifo_unavailable(void)
{
	if (!fifo_permitted())
		return "SCHED_FIFO is not permitted to this process (needs CAP_SYS_NICE or "
		       "RLIMIT_RTPRIO): the syncer's SCHED_FIFO and its lending cannot be "
		       "tested here";
	if (cap_sys_nice(-1) != 1)
		return "no CAP_SYS_NICE: the nice -10 fallback cannot be tested here";
	return NULL;
}

TEST_SUITE_IF(sync_prio_fifo, "sync_prio_fifo_kvm", sync_prio_fifo_unavailable,
	      TEST(test_sync_prio_fifo), TEST(test_sync_prio_lend),
	      TEST(test_sync_prio_nice_only))

TEST_SUITE(sync_prio, "sync_prio_kvm", true, TEST(test_sync_prio_not_permitted))
