// SPDX-License-Identifier: MIT
/*
 * sync_prio.c - who gets a core during a sync when the host has none to
 * spare (as many busy vCPUs as cores: sync.c spins only where it has one).
 *
 * A sync on such a host is a relay on two cores: the controller kicks,
 * sleeps so the vCPU it displaced can run and ack, and the last ack wakes
 * it.  Every hand-over is a scheduler decision.  Under EEVDF a woken
 * thread at nice -10 does not always preempt the thread that woke it (that
 * one may still be inside its protected slice), and a kicked vCPU thread
 * queues behind whatever else the host runs.  So, in order of preference:
 *
 *  1. The controller runs SCHED_FIFO (VMM_SYNC_FIFO_CTL) from before the
 *     kick until every ack is in: a woken RT thread preempts any normal
 *     one at once, so the last acker's FUTEX_WAKE hands its core over by
 *     itself, and the old hand-off (the acker sleeping until the
 *     controller ran, then woken again) is two wake-ups saved per sync.
 *     Only for the sync: a patching loop that kept RT priority between
 *     syncs would starve the guest it patches.
 *  2. A vCPU that has not acked after the lend delay (twice what an
 *     uncontended sync takes here, at least SYNC_LEND_MIN_NS) is lent
 *     SCHED_FIFO one below the controller; it drops it itself right after
 *     its ack, before it re-enters the guest (sync_prio_vcpu_ack()).
 *     Lent and dropped through one flag, arbitrated by an exchange: the
 *     controller sets the policy, then the flag, then re-checks the ack;
 *     the vCPU stores its ack, then takes the flag (both seq_cst, as
 *     Dekker).  Whoever takes the flag restores the policy, so a vCPU
 *     never runs its guest at RT priority past the ack it was lent for.
 *  3. Where SCHED_FIFO is not permitted (no CAP_SYS_NICE, RLIMIT_RTPRIO 0):
 *     the controller waits at nice -10 (RLIMIT_NICE may allow that), else
 *     the vCPU threads are lowered to nice +5 once, which a process may
 *     always do to its own threads.
 *
 * VMPOKE_SYNC_OLD=1 (or vmm_sync_set_old()) keeps the behaviour before 1
 * and 2 (nice -10 or the fallback, and the hand-off), so `bench sync --ab`
 * can compare both in one VM, round by round.
 */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm_internal.h"

#define SYNC_CTL_NICE		(-10)
#define SYNC_VCPU_NICE		5
#define SYNC_FIFO_CTL		2	/* above a lent vCPU: the controller wins */
#define SYNC_FIFO_VCPU		1
#define SYNC_LEND_MIN_NS	20000ull
#define SYNC_LEND_MAX_NS	1000000ull

bool sync_old_env(void)
{
	const char *e = getenv(VMM_SYNC_OLD_ENV);

	return e && *e && strcmp(e, "0");
}

void vmm_sync_set_old(struct vm *vm, bool old)
{
	atomic_store(&vm->sync_old, old);
}

static int sync_set_fifo(pid_t tid, int prio)
{
	struct sched_param sp = { .sched_priority = prio };

	return sched_setscheduler(tid, prio ? SCHED_FIFO : SCHED_OTHER, &sp) ? -errno : 0;
}

/*
 * Step 3: nice -10 for the controller while it waits, or the vCPUs at +5.
 * Returns the nice value to restore, or INT_MIN if there is nothing to
 * restore.
 */
static int sync_nice_raise(struct vm *vm, pid_t tid)
{
	int old;

	if (atomic_load(&vm->sync_prio) == VMM_SYNC_PRIO_VCPUS_LOWER)
		return INT_MIN;
	errno = 0;
	old = getpriority(PRIO_PROCESS, (id_t)tid);
	if (errno)
		return INT_MIN;
	if (old <= SYNC_CTL_NICE)
		return INT_MIN;
	if (!setpriority(PRIO_PROCESS, (id_t)tid, SYNC_CTL_NICE)) {
		atomic_store(&vm->sync_prio, VMM_SYNC_PRIO_CONTROLLER);
		return old;
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		pid_t t = atomic_load(&vm->vcpus[i].tid);

		if (t && setpriority(PRIO_PROCESS, (id_t)t, SYNC_VCPU_NICE))
			return INT_MIN;
	}
	atomic_store(&vm->sync_prio, VMM_SYNC_PRIO_VCPUS_LOWER);
	return INT_MIN;
}

void sync_prio_begin(struct vm *vm, struct sync_prio *sp)
{
	sp->tid = (pid_t)syscall(SYS_gettid);
	sp->nice_old = INT_MIN;
	sp->fifo = false;
	if (atomic_load(&vm->sync_old) || atomic_load(&vm->sync_fifo_denied))
		return;
	if (!sync_set_fifo(sp->tid, SYNC_FIFO_CTL)) {
		sp->fifo = true;
		atomic_store(&vm->sync_prio, VMM_SYNC_PRIO_FIFO);
	} else {
		/* Asked once per VM: the answer does not change under us. */
		atomic_store(&vm->sync_fifo_denied, true);
	}
}

void sync_prio_wait(struct vm *vm, struct sync_prio *sp)
{
	if (!sp->fifo)
		sp->nice_old = sync_nice_raise(vm, sp->tid);
}

void sync_prio_end(struct sync_prio *sp)
{
	if (sp->fifo)
		sync_set_fifo(sp->tid, 0);
	if (sp->nice_old != INT_MIN)
		setpriority(PRIO_PROCESS, (id_t)sp->tid, sp->nice_old);
}

/*
 * Twice what a sync takes when no vCPU is late (sync_fast_ns, a floor of
 * recent syncs that rises slowly), so that slow syncs on a busy host do
 * not stretch the delay that rescues them.
 */
uint64_t sync_prio_lend_after(struct vm *vm)
{
	uint64_t d = 2 * atomic_load(&vm->sync_fast_ns);

	return d < SYNC_LEND_MIN_NS ? SYNC_LEND_MIN_NS : d > SYNC_LEND_MAX_NS ?
	       SYNC_LEND_MAX_NS : d;
}

/* Step 2, for every vCPU that has not acked generation gen; how many. */
unsigned int sync_prio_lend(struct vm *vm, uint64_t gen)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		pid_t t = atomic_load(&v->tid);

		if (!t || sync_acked(v, gen) || sync_set_fifo(t, SYNC_FIFO_VCPU))
			continue;
		atomic_store(&v->lent_fifo, true);
		atomic_fetch_add(&vm->sync_lends, 1);
		n++;
		/* Acked (or parked, or gone) meanwhile: one of us takes it back. */
		if (sync_acked(v, gen) && atomic_exchange(&v->lent_fifo, false))
			sync_set_fifo(t, 0);
	}
	return n;
}

/* On the vCPU's own thread, after its ack: drop a lent SCHED_FIFO. */
void sync_prio_vcpu_ack(struct vcpu *v)
{
	if (atomic_load(&v->lent_fifo) && atomic_exchange(&v->lent_fifo, false))
		sync_set_fifo(0, 0);
}
