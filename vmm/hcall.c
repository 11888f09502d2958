// SPDX-License-Identifier: MIT
/*
 * hcall.c - the guest's hypercalls: decoding them (CPL0 port calls with
 * their arguments in the vCPU's mailbox, CPL3 MMIO doorbells with one
 * argument), counting them, waking whoever waits for a count, and
 * recording the intervals between them for `vmpoke bench sync`.
 *
 * Every argument is guest data: mailboxes and the task table are read
 * through the validated readers (guest_tables.c), and a malformed one ends
 * the run with a message naming it.  Waiters are woken through a condvar
 * only when someone waits, so the hot NOP path costs two atomics.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "vmm_internal.h"

/* --- hypercall accounting ---------------------------------------------- */

static void hcall_count(struct vcpu *v, unsigned int hc)
{
	struct vm *vm = v->vm;

	atomic_fetch_add_explicit(&v->hcalls, 1, memory_order_relaxed);
	if (hc >= VMPOKE_HC_MAX)
		return;
	if (atomic_load_explicit(&v->rec_armed, memory_order_acquire) &&
	    v->rec_hc == hc) {
		uint64_t now = clock_now_ns();
		size_t n = atomic_load_explicit(&v->rec_n, memory_order_relaxed);

		if (v->rec_last_ns && n < v->rec_cap) {
			v->rec_buf[n] = now - v->rec_last_ns;
			atomic_store_explicit(&v->rec_n, n + 1, memory_order_release);
		}
		v->rec_last_ns = now;
	}
	atomic_fetch_add(&vm->hc_count[hc], 1);
	if (atomic_load(&vm->hc_waiters)) {
		pthread_mutex_lock(&vm->hc_lock);
		pthread_cond_broadcast(&vm->hc_cond);
		pthread_mutex_unlock(&vm->hc_lock);
	}
}

uint64_t vmm_hcall_count(struct vm *vm, enum vmpoke_hcall hc)
{
	return (unsigned int)hc < VMPOKE_HC_MAX ? atomic_load(&vm->hc_count[hc]) : 0;
}

int vmm_wait_hcall(struct vm *vm, enum vmpoke_hcall hc, uint64_t target,
		   unsigned int timeout_ms)
{
	struct timespec ts;
	int ret = 0;

	if ((unsigned int)hc >= VMPOKE_HC_MAX)
		return -EINVAL;
	clock_deadline(&ts, timeout_ms * CLOCK_NS_PER_MS);
	pthread_mutex_lock(&vm->hc_lock);
	atomic_fetch_add(&vm->hc_waiters, 1);
	while (atomic_load(&vm->hc_count[hc]) < target && !ret) {
		if (atomic_load(&vm->ended))
			ret = -ESRCH;
		else if (pthread_cond_timedwait(&vm->hc_cond, &vm->hc_lock, &ts) ==
			 ETIMEDOUT)
			ret = atomic_load(&vm->hc_count[hc]) >= target ? 0 : -ETIMEDOUT;
	}
	atomic_fetch_sub(&vm->hc_waiters, 1);
	pthread_mutex_unlock(&vm->hc_lock);
	return ret;
}

void vmm_set_check_fail_fatal(struct vm *vm, bool fatal)
{
	atomic_store(&vm->check_fail_fatal, fatal);
}

void vmm_record_hcall_intervals(struct vm *vm, unsigned int id,
				enum vmpoke_hcall hc, uint64_t *buf, size_t n)
{
	struct vcpu *v;

	if (id >= vm->nr_vcpus)
		return;
	v = &vm->vcpus[id];
	/*
	 * Disarm, and sync so that no vCPU is still inside an exit that saw
	 * the old settings (an ack comes only after the exit is handled);
	 * then re-arm with the new buffer.
	 */
	atomic_store(&v->rec_armed, false);
	if (vm->started)
		vmm_sync(vm);
	v->rec_hc = hc;
	v->rec_buf = buf;
	v->rec_cap = buf ? n : 0;
	v->rec_last_ns = 0;
	atomic_store(&v->rec_n, 0);
	if (buf && n)
		atomic_store_explicit(&v->rec_armed, true, memory_order_release);
}

size_t vmm_recorded_intervals(struct vm *vm, unsigned int id)
{
	if (id >= vm->nr_vcpus)
		return 0;
	return atomic_load_explicit(&vm->vcpus[id].rec_n, memory_order_acquire);
}

/* --- hypercalls ---------------------------------------------------------- */

/* This vCPU's block; 0, or 1 after ending the run with the reader's reason. */
static int hcall_read_percpu(struct vcpu *v, struct vmpoke_percpu *pc, const char *what)
{
	char sym[160], why[192];

	if (!vmm_percpu_read(v->vm, v->id, pc, why, sizeof(why)))
		return 0;
	vm_end(v->vm, VMM_UNEXPECTED_EXIT, (int)v->id, NULL,
	       "bad hypercall: vcpu %u: %s mailbox unreadable (%s), at %s",
	       v->id, what, why, vmm_symbolize(v->vm, exit_rip(v), sym, sizeof(sym)));
	return 1;
}

static void hcall_puts(struct vcpu *v, const char *text)
{
	char out[512];
	const char *p = text;

	if (v->vm->cfg.quiet)
		return;
	pthread_mutex_lock(&v->vm->out_lock);
	while (*p) {
		const char *nl = strchr(p, '\n');
		int len = nl ? (int)(nl - p) : (int)strlen(p);
		int n = snprintf(out, sizeof(out), "[vcpu%u] %.*s\n", v->id, len, p);

		if (n > 0 && write(STDOUT_FILENO, out, (size_t)n) < 0)
			break;
		p += len + (nl ? 1 : 0);
	}
	pthread_mutex_unlock(&v->vm->out_lock);
}

static int hcall_fault(struct vcpu *v, const struct vmpoke_fault *f)
{
	struct vmm_result d = { .fault = *f };
	char sym[160], extra[128];
	int n;

	d.fault.vcpu = v->id;
	/* RSP tells a broken stack (the usual road to a #DF) from a bad jump. */
	n = snprintf(extra, sizeof(extra), ", rsp 0x%llx", (unsigned long long)f->rsp);
	if (f->vector == 14)
		snprintf(extra + n, sizeof(extra) - (size_t)n, ", cr2 0x%llx error 0x%llx",
			 (unsigned long long)f->cr2, (unsigned long long)f->error_code);
	else if (f->vector == 8 || f->vector == 13 || f->vector == 10 ||
		 f->vector == 11 || f->vector == 12 || f->vector == 17)
		snprintf(extra + n, sizeof(extra) - (size_t)n, ", error 0x%llx",
			 (unsigned long long)f->error_code);
	vm_end(v->vm, VMM_GUEST_FAULT, (int)v->id, &d,
	       "guest fault: vcpu %u task %d: %s at %s%s", v->id, f->task,
	       exit_vector_name(f->vector),
	       vmm_symbolize(v->vm, f->rip, sym, sizeof(sym)), extra);
	return 1;
}

static int hcall_check_fail(struct vcpu *v, struct vmpoke_check *c)
{
	struct vmm_result d = { .check = *c };
	char sym[160];

	if (!atomic_load(&v->vm->check_fail_fatal))
		return 0;
	d.check.what[sizeof(d.check.what) - 1] = '\0';
	vmm_sanitize_text(d.check.what, sizeof(d.check.what));
	vm_end(v->vm, VMM_GUEST_CHECK, (int)v->id, &d,
	       "guest check failed: vcpu %u task %d: %s at %s: expected 0x%llx, "
	       "actual 0x%llx", v->id, c->task, d.check.what,
	       vmm_symbolize(v->vm, c->site, sym, sizeof(sym)),
	       (unsigned long long)c->expected, (unsigned long long)c->actual);
	return 1;
}

/* vmpoke_tasks.tasks[task].last_check, through the validated reader. */
static int hcall_task_check(struct vcpu *v, uint64_t task, struct vmpoke_check *c)
{
	struct vmpoke_task t;
	char why[192];

	if (task > UINT32_MAX)
		snprintf(why, sizeof(why), "task id out of range");
	else if (!vmm_task_read(v->vm, (uint32_t)task, &t, why, sizeof(why))) {
		*c = t.last_check;
		return 0;
	}
	vm_end(v->vm, VMM_UNEXPECTED_EXIT, (int)v->id, NULL,
	       "bad check report: vcpu %u task %llu: %s", v->id,
	       (unsigned long long)task, why);
	return -1;
}

static int hcall_done(struct vcpu *v, uint64_t result)
{
	struct vm *vm = v->vm;
	struct vmm_result d = { .result_code = result };

	if (result != VMPOKE_RESULT_OK) {
		vm_end(vm, VMM_GUEST_SELFCHECK, (int)v->id, &d,
		       "guest self-check failed: vcpu %u reported result %llu%s",
		       v->id, (unsigned long long)result,
		       result == VMPOKE_RESULT_SELFCHECK ? " (self-check)" :
		       result == VMPOKE_RESULT_BAD_BOOT ? " (bad boot info)" : "");
		return 1;
	}
	if (!v->done) {
		v->done = true;
		if (atomic_fetch_add(&vm->nr_done, 1) + 1 == vm->nr_vcpus)
			vm_end(vm, VMM_DONE, -1, &d, "done: all %u vCPUs finished",
			       vm->nr_vcpus);
	}
	return 0;
}

/*
 * One hypercall.  from_mmio: CPL3 doorbell, arg is the stored value;
 * otherwise CPL0 port call, arguments in this vCPU's mailbox.
 */
int hcall_handle(struct vcpu *v, uint32_t cmd, uint64_t arg, bool from_mmio)
{
	struct vmpoke_percpu pc;
	struct vmpoke_check chk;
	char sym[160];

	hcall_count(v, cmd);
	switch (cmd) {
	case VMPOKE_HC_NOP:
	case VMPOKE_HC_READY:
	case VMPOKE_HC_TASK_DONE:
	case VMPOKE_HC_LAB_DONE:
		return 0;
	case VMPOKE_HC_PROBE:
		if (from_mmio)
			return trap_probe_doorbell(v);
		break;
	case VMPOKE_HC_PUTS:
		if (hcall_read_percpu(v, &pc, "puts"))
			return 1;
		pc.mailbox.text[sizeof(pc.mailbox.text) - 1] = '\0';
		vmm_sanitize_text(pc.mailbox.text, sizeof(pc.mailbox.text));
		hcall_puts(v, pc.mailbox.text);
		return 0;
	case VMPOKE_HC_DONE:
		if (!from_mmio) {
			if (hcall_read_percpu(v, &pc, "done"))
				return 1;
			arg = pc.mailbox.arg[0];
		}
		return hcall_done(v, arg);
	case VMPOKE_HC_FAULT:
		if (hcall_read_percpu(v, &pc, "fault"))
			return 1;
		return hcall_fault(v, &pc.mailbox.fault);
	case VMPOKE_HC_CHECK_FAIL:
		if (from_mmio) {
			if (hcall_task_check(v, arg, &chk))
				return 1;
		} else {
			if (hcall_read_percpu(v, &pc, "check"))
				return 1;
			chk = pc.mailbox.check;
		}
		return hcall_check_fail(v, &chk);
	default:
		break;
	}
	/* unknown, or VMPOKE_HC_PROBE through the port */
	vm_end(v->vm, VMM_UNEXPECTED_EXIT, (int)v->id, NULL,
	       "unknown hypercall %u from vcpu %u (%s) at %s", cmd, v->id,
	       from_mmio ? "mmio" : "port",
	       vmm_symbolize(v->vm, exit_rip(v), sym, sizeof(sym)));
	return 1;
}

