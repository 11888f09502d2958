// SPDX-License-Identifier: MIT
/*
 * sync_core.c - the sync a protocol phase needs, in one system call:
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE).
 *
 * What text_poke_bp needs between its phases is what the kernel's
 * text_poke_sync() gives it: an IPI to every CPU, so that each one takes
 * an interrupt (serializing) and fetches the new bytes afterwards.  The
 * membarrier command is that same IPI, offered to user space for JITs
 * that modify code other threads run: the kernel sends it to every CPU
 * whose current task belongs to this process, waits for each handler,
 * and fences before and after.  For a vCPU thread:
 *  - in guest mode on a CPU: the IPI is a host interrupt, which always
 *    takes the vCPU out of guest mode (external-interrupt exiting on VMX,
 *    the INTR intercept on SVM, the switcher on kvm_pvm); it completes at
 *    most the instruction in flight and re-enters after our write.  KVM
 *    counts these exits (irq_exits, kvm_stats.c); `bench sync` and the
 *    tests read that count to show it happened on the host at hand;
 *  - in KVM_RUN but not on a CPU (preempted, or halted): not in guest
 *    mode now, and its next VM entry comes after the write;
 *  - in user space (an exit, a trap hook): not in guest mode either.
 * So every guest-mode stretch that overlapped the write has ended when the
 * call returns: the promise of vmm_sync(), minus one thing.  No vCPU
 * thread has to come round its loop, so the call is no grace period for
 * what vCPU threads read in user space (trap hook records, the patcher's
 * trap-table snapshots); those still wait for vmm_sync().
 *
 * Why it is faster: vmm_sync() is a signal, an exit to user space, an
 * acknowledgement and a futex wake per sync, and on a host with no core
 * to spare each of those is a scheduler decision (sync_prio.c).  Here the
 * only cost is the IPI and its handler; a preempted vCPU costs nothing.
 *
 * A guest cannot delay it: host interrupts preempt guest mode whatever the
 * guest's IF, and a vCPU thread outside guest mode runs host code that
 * takes the IPI at once.  Where the kernel lacks the command (before 4.16,
 * CONFIG_MEMBARRIER off, a seccomp filter), or VMPOKE_SYNC_CORE=0, or
 * vmm_sync_set_core(vm, false), vmm_sync_core() is vmm_sync().
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm_internal.h"

static pthread_once_t sync_core_once = PTHREAD_ONCE_INIT;
static bool sync_core_registered;

static long sync_core_membarrier(int cmd)
{
	return syscall(__NR_membarrier, cmd, 0, 0);
}

/* Once per process: the command must be registered before its first use. */
static void sync_core_register(void)
{
	long cmds = sync_core_membarrier(MEMBARRIER_CMD_QUERY);

	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE))
		return;
	sync_core_registered =
		!sync_core_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE);
}

bool sync_core_supported(void)
{
	pthread_once(&sync_core_once, sync_core_register);
	return sync_core_registered;
}

void sync_core_init(struct vm *vm)
{
	const char *e = getenv(VMM_SYNC_CORE_ENV);

	pthread_once(&sync_core_once, sync_core_register);
	atomic_store(&vm->sync_core, sync_core_registered && !(e && !strcmp(e, "0")));
}

bool vmm_sync_core_enabled(struct vm *vm)
{
	return atomic_load(&vm->sync_core);
}

int vmm_sync_set_core(struct vm *vm, bool on)
{
	pthread_once(&sync_core_once, sync_core_register);
	if (on && !sync_core_registered)
		return -EOPNOTSUPP;
	atomic_store(&vm->sync_core, on);
	return 0;
}

int vmm_sync_core(struct vm *vm)
{
	if (!atomic_load(&vm->sync_core))
		return vmm_sync(vm);
	if (vmm_on_vcpu_thread()) {
		vmm_error("vmm_sync_core called from a vCPU thread (e.g. a trap hook): refused");
		return -EDEADLK;
	}
	if (!vm->started)
		return 0;
	/*
	 * Our writes are ordered before the IPIs by the call's own leading
	 * full barrier; it cannot fail once registered, but an error here
	 * must not pass for a sync: fall back to the acknowledged one.
	 */
	if (sync_core_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)) {
		vmm_error("membarrier(SYNC_CORE): %s; using the acknowledged sync",
			  strerror(errno));
		atomic_store(&vm->sync_core, false);
		return vmm_sync(vm);
	}
	atomic_fetch_add(&vm->sync_core_calls, 1);
	return 0;
}
