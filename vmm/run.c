// SPDX-License-Identifier: MIT
/*
 * run.c - a run's life: start the vCPU threads, wait for the outcome,
 * stop on request.
 *
 * Why futexes here rather than only a condvar: vmm_stop() is called from
 * the CLI's SIGINT/SIGTERM handler, where no mutex or condvar may be
 * touched.  So the end of a run is published through one futex word
 * (end_seq) that both vm_end() (thread context) and vmm_stop() (atomic add
 * + FUTEX_WAKE, both async-signal-safe) bump, and vmm_wait() sleeps on it:
 * an event-driven wait with the caller's timeout, no polling.  The first
 * outcome wins; later ones (e.g. the other vCPUs noticing the stop) are
 * dropped, so the message always names the real cause.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "vmm_internal.h"

static void run_wake_waiters(struct vm *vm)
{
	atomic_fetch_add(&vm->end_seq, 1);
	syscall(SYS_futex, (uint32_t *)&vm->end_seq, FUTEX_WAKE_PRIVATE,
		INT_MAX, NULL, NULL, 0);
}

void vm_end(struct vm *vm, enum vmm_outcome o, int vcpu,
	    const struct vmm_result *d, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&vm->end_lock);
	if (!atomic_load(&vm->ended)) {
		vm->result.outcome = o;
		vm->result.vcpu = vcpu;
		if (d) {
			vm->result.fault = d->fault;
			vm->result.check = d->check;
			vm->result.result_code = d->result_code;
		}
		va_start(ap, fmt);
		vsnprintf(vm->result.message, sizeof(vm->result.message), fmt, ap);
		va_end(ap);
		atomic_store(&vm->ended, true);
	}
	pthread_mutex_unlock(&vm->end_lock);
	atomic_store(&vm->stop_req, true);
	/* Parked vCPUs wait on park_cond; let them see the stop. */
	pthread_mutex_lock(&vm->park_lock);
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
	sync_kick_all(vm);
	sync_notify(vm);
	run_wake_waiters(vm);
	/*
	 * vmm_wait_hcall() waiters too: the count they wait for may never
	 * come now (a guest that faults before its last READY).  They check
	 * `ended` under hc_lock before sleeping, so this cannot be lost.
	 */
	if (atomic_load(&vm->hc_waiters)) {
		pthread_mutex_lock(&vm->hc_lock);
		pthread_cond_broadcast(&vm->hc_cond);
		pthread_mutex_unlock(&vm->hc_lock);
	}
}

int vmm_start(struct vm *vm)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r = 0;

	if (vm->started)
		return -EBUSY;
	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VMM_STACK_SIZE);
	/* Threads start with every signal blocked; see sync.c. */
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (unsigned int i = 0; i < vm->nr_vcpus && !r; i++) {
		struct vcpu *v = &vm->vcpus[i];

		r = -pthread_create(&v->thread, &attr, vcpu_thread, v);
		if (!r)
			atomic_store(&v->thread_live, true);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	vm->started = true;
	if (r) {
		vmm_error("cannot start vCPU threads: %s", strerror(-r));
		vm_end(vm, VMM_HOST_ERROR, -1, NULL, "host error: cannot start vCPU "
		       "threads: %s", strerror(-r));
	}
	return r;
}

void vmm_stop(struct vm *vm)
{
	/* Async-signal-safe: atomics, pthread_kill and futex wakes only. */
	atomic_store(&vm->stop_req, true);
	sync_kick_all(vm);
	sync_notify(vm);
	run_wake_waiters(vm);
}

/* On timeout: stop the world just long enough to say where everyone is. */
static void run_timeout_message(struct vm *vm, unsigned int ms,
				struct vmm_result *res)
{
	size_t n, cap = sizeof(res->message);
	bool paused = vmm_pause(vm) == 0;

	memset(res, 0, sizeof(*res));
	res->outcome = VMM_TIMEOUT;
	res->vcpu = -1;
	n = (size_t)snprintf(res->message, cap, "timeout after %u ms:", ms);
	for (unsigned int i = 0; i < vm->nr_vcpus && n < cap; i++) {
		struct kvm_regs regs;
		char sym[160];
		uint64_t rip = atomic_load(&vm->vcpus[i].last_rip);

		if (paused && vmm_vcpu_get_regs(vm, i, &regs) == 0)
			rip = regs.rip;
		n += (size_t)snprintf(res->message + n, cap - n, "%s vcpu %u at %s",
				      i ? "," : "", i,
				      vmm_symbolize(vm, rip, sym, sizeof(sym)));
	}
	if (n >= cap)
		strcpy(res->message + cap - 4, "...");
	if (paused)
		vmm_resume(vm);
}

int vmm_start_ready(struct vm *vm, unsigned int timeout_ms, struct vmm_result *res)
{
	int err = vmm_start(vm);

	if (!err)
		err = vmm_wait_hcall(vm, VMPOKE_HC_READY, vm->nr_vcpus, timeout_ms);
	/* Ended: vmm_wait() returns at once, and never pauses an ended VM. */
	if (err == -ESRCH && res)
		vmm_wait(vm, 0, res);
	return err;
}

enum vmm_outcome vmm_wait(struct vm *vm, unsigned int timeout_ms,
			  struct vmm_result *res)
{
	uint64_t deadline = clock_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	struct vmm_result tmp;

	if (!res)
		res = &tmp;
	for (;;) {
		uint32_t seq = atomic_load(&vm->end_seq);
		struct timespec ts, *tsp = NULL;

		if (atomic_load(&vm->stop_req) && !atomic_load(&vm->ended))
			vm_end(vm, VMM_STOPPED, -1, NULL, "stopped");
		if (atomic_load(&vm->ended)) {
			pthread_mutex_lock(&vm->end_lock);
			*res = vm->result;
			pthread_mutex_unlock(&vm->end_lock);
			return res->outcome;
		}
		if (timeout_ms) {
			uint64_t now = clock_now_ns();

			if (now >= deadline) {
				run_timeout_message(vm, timeout_ms, res);
				return VMM_TIMEOUT;
			}
			ts.tv_sec = (time_t)((deadline - now) / 1000000000ull);
			ts.tv_nsec = (long)((deadline - now) % 1000000000ull);
			tsp = &ts;
		}
		syscall(SYS_futex, (uint32_t *)&vm->end_seq, FUTEX_WAIT_PRIVATE,
			seq, tsp, NULL, 0);
	}
}

int vmm_outcome_exit_code(enum vmm_outcome o)
{
	switch (o) {
	case VMM_DONE:
		return VMPOKE_EXIT_OK;
	case VMM_GUEST_FAULT:
	case VMM_GUEST_CHECK:
	case VMM_GUEST_SELFCHECK:
	case VMM_TRIPLE_FAULT:
	case VMM_INTERNAL_ERROR:
	case VMM_UNEXPECTED_EXIT:
	case VMM_TIMEOUT:
		return VMPOKE_EXIT_GUEST;
	case VMM_STOPPED:
		return VMPOKE_EXIT_SIGNAL;
	case VMM_RUNNING:
	case VMM_HOST_ERROR:
	default:
		return VMPOKE_EXIT_HOST;
	}
}
