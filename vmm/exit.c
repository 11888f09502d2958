// SPDX-License-Identifier: MIT
/*
 * exit.c - what a vCPU does with each KVM exit.
 *
 * Why so strict: everything the guest tells us arrives here (port and MMIO
 * doorbells, mailboxes in guest memory) and everything that goes wrong
 * ends here (faults, triple faults, emulation failures).  Every guest
 * value is bounds-checked (port data in kvm_run, mailbox and task-table
 * addresses through the page walk, table headers by magic/version/size),
 * and anything we do not expect ends the run with one symbolized line in
 * vmm_result.message, e.g. "guest fault: vcpu 1 task 3: #UD at
 * hot_loop+0x1c (0x401a2c)", so a failing run says where, not just that.
 * Hypercall counters live here too; waiters are woken through a condvar
 * only when someone waits, so the hot NOP path costs two atomics.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "symtab.h"
#include "vmm_internal.h"

static const char *const vector_names[32] = {
	"#DE", "#DB", "#NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "#CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23",
	"#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
};

const char *exit_vector_name(uint64_t vector)
{
	return vector < 32 ? vector_names[vector] : "#INTR";
}

/* --- hypercall accounting ---------------------------------------------- */

static void exit_count_hcall(struct vcpu *v, unsigned int hc)
{
	struct vm *vm = v->vm;

	atomic_fetch_add_explicit(&v->hcalls, 1, memory_order_relaxed);
	if (hc >= VMPOKE_HC_MAX)
		return;
	if (atomic_load_explicit(&v->rec_armed, memory_order_acquire) &&
	    v->rec_hc == hc) {
		uint64_t now = vm_now_ns();
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
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
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

/* --- diagnostics --------------------------------------------------------- */

static uint64_t exit_rip(struct vcpu *v)
{
	struct kvm_regs regs;

	if (vcpu_get_regs(v, &regs) == 0) {
		atomic_store(&v->last_rip, regs.rip);
		return regs.rip;
	}
	return atomic_load(&v->last_rip);
}

void exit_dump_regs(struct vcpu *v, const char *why)
{
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		vmm_error("vcpu %u (%s): cannot read registers", v->id, why);
		return;
	}
	vmm_error("vcpu %u registers (%s):\n"
		  " rip %016llx rsp %016llx rflags %08llx\n"
		  " rax %016llx rbx %016llx rcx %016llx rdx %016llx\n"
		  " rsi %016llx rdi %016llx rbp %016llx r8  %016llx\n"
		  " r9  %016llx r10 %016llx r11 %016llx r12 %016llx\n"
		  " r13 %016llx r14 %016llx r15 %016llx\n"
		  " cs %04x ss %04x cr0 %llx cr2 %llx cr3 %llx cr4 %llx efer %llx",
		  v->id, why, r.rip, r.rsp, r.rflags, r.rax, r.rbx, r.rcx, r.rdx,
		  r.rsi, r.rdi, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13,
		  r.r14, r.r15, s.cs.selector, s.ss.selector, s.cr0, s.cr2, s.cr3,
		  s.cr4, s.efer);
}

/* "cc 90 0f 0b ..." of the bytes at rip, or "unreadable". */
static const char *exit_code_bytes(struct vcpu *v, uint64_t rip, char *buf, size_t len)
{
	uint8_t code[12];
	size_t n = 0;

	if (vmm_gva_read(v->vm, rip, code, sizeof(code)) < 0) {
		snprintf(buf, len, "unreadable");
		return buf;
	}
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(code) && n + 4 < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%02x", i ? " " : "", code[i]);
	return buf;
}

/* --- hypercalls ---------------------------------------------------------- */

/* This vCPU's block; 0, or 1 after ending the run with the reader's reason. */
static int exit_read_percpu(struct vcpu *v, struct vmpoke_percpu *pc, const char *what)
{
	char sym[160], why[192];

	if (!vmm_percpu_read(v->vm, v->id, pc, why, sizeof(why)))
		return 0;
	vm_end(v->vm, VMM_UNEXPECTED_EXIT, (int)v->id, NULL,
	       "bad hypercall: vcpu %u: %s mailbox unreadable (%s), at %s",
	       v->id, what, why, vmm_symbolize(v->vm, exit_rip(v), sym, sizeof(sym)));
	return 1;
}

static void exit_puts(struct vcpu *v, const char *text)
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

static int exit_fault(struct vcpu *v, const struct vmpoke_fault *f)
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

static int exit_check_fail(struct vcpu *v, struct vmpoke_check *c)
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
static int exit_task_check(struct vcpu *v, uint64_t task, struct vmpoke_check *c)
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

static int exit_done(struct vcpu *v, uint64_t result)
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
static int exit_hcall(struct vcpu *v, uint32_t cmd, uint64_t arg, bool from_mmio)
{
	struct vmpoke_percpu pc;
	struct vmpoke_check chk;
	char sym[160];

	exit_count_hcall(v, cmd);
	switch (cmd) {
	case VMPOKE_HC_NOP:
	case VMPOKE_HC_READY:
	case VMPOKE_HC_TASK_DONE:
	case VMPOKE_HC_LAB_DONE:
		return 0;
	case VMPOKE_HC_PUTS:
		if (exit_read_percpu(v, &pc, "puts"))
			return 1;
		pc.mailbox.text[sizeof(pc.mailbox.text) - 1] = '\0';
		vmm_sanitize_text(pc.mailbox.text, sizeof(pc.mailbox.text));
		exit_puts(v, pc.mailbox.text);
		return 0;
	case VMPOKE_HC_DONE:
		if (!from_mmio) {
			if (exit_read_percpu(v, &pc, "done"))
				return 1;
			arg = pc.mailbox.arg[0];
		}
		return exit_done(v, arg);
	case VMPOKE_HC_FAULT:
		if (exit_read_percpu(v, &pc, "fault"))
			return 1;
		return exit_fault(v, &pc.mailbox.fault);
	case VMPOKE_HC_CHECK_FAIL:
		if (from_mmio) {
			if (exit_task_check(v, arg, &chk))
				return 1;
		} else {
			if (exit_read_percpu(v, &pc, "check"))
				return 1;
			chk = pc.mailbox.check;
		}
		return exit_check_fail(v, &chk);
	default:
		vm_end(v->vm, VMM_UNEXPECTED_EXIT, (int)v->id, NULL,
		       "unknown hypercall %u from vcpu %u (%s) at %s", cmd, v->id,
		       from_mmio ? "mmio" : "port",
		       vmm_symbolize(v->vm, exit_rip(v), sym, sizeof(sym)));
		return 1;
	}
}

/* --- exits --------------------------------------------------------------- */

static int exit_unexpected(struct vcpu *v, const char *what)
{
	char sym[160];

	vm_end(v->vm, VMM_UNEXPECTED_EXIT, (int)v->id, NULL,
	       "unexpected exit: vcpu %u: %s at %s", v->id, what,
	       vmm_symbolize(v->vm, exit_rip(v), sym, sizeof(sym)));
	return 1;
}

static int exit_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t off = run->io.data_offset;
	uint64_t bytes = (uint64_t)run->io.size * run->io.count;
	uint8_t *data = (uint8_t *)run + off;
	char what[96];

	v->io_pending = true;
	if (off > v->vm->run_size || bytes > v->vm->run_size - off || run->io.count != 1)
		goto bad;
	if (run->io.port == VMPOKE_PORT_HCALL &&
	    run->io.direction == KVM_EXIT_IO_OUT && run->io.size == 4) {
		uint32_t cmd;

		memcpy(&cmd, data, 4);
		return exit_hcall(v, cmd, 0, false);
	}
	if ((run->io.port == VMPOKE_PORT_BP || run->io.port == VMPOKE_PORT_DB) &&
	    run->io.direction == KVM_EXIT_IO_IN && run->io.size == 1)
		return trap_doorbell(v, run->io.port, data);
bad:
	snprintf(what, sizeof(what), "port %s 0x%x size %u count %u",
		 run->io.direction == KVM_EXIT_IO_IN ? "in" : "out",
		 run->io.port, run->io.size, run->io.count);
	return exit_unexpected(v, what);
}

static int exit_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint64_t a = run->mmio.phys_addr, off = a - VMPOKE_MMIO_BASE;
	char what[96];

	v->io_pending = true;
	if (a >= VMPOKE_MMIO_BASE && off < VMPOKE_MMIO_SIZE && run->mmio.is_write &&
	    off % 8 == 0 && run->mmio.len >= 1 && run->mmio.len <= 8) {
		uint64_t arg = 0;

		memcpy(&arg, run->mmio.data, run->mmio.len);
		return exit_hcall(v, (uint32_t)(off / 8), arg, true);
	}
	snprintf(what, sizeof(what), "mmio %s of %u bytes at 0x%llx",
		 run->mmio.is_write ? "write" : "read", run->mmio.len,
		 (unsigned long long)a);
	return exit_unexpected(v, what);
}

static int exit_internal_error(struct vcpu *v)
{
	uint32_t sub = v->run->internal.suberror;
	char sym[160], code[64];
	uint64_t rip;

	exit_dump_regs(v, "internal error");
	rip = exit_rip(v);
	vm_end(v->vm, VMM_INTERNAL_ERROR, (int)v->id, NULL,
	       "internal error: vcpu %u: KVM suberror %u%s at %s: code %s",
	       v->id, sub, sub == KVM_INTERNAL_ERROR_EMULATION ?
	       " (emulation failure)" : "",
	       vmm_symbolize(v->vm, rip, sym, sizeof(sym)),
	       exit_code_bytes(v, rip, code, sizeof(code)));
	return 1;
}

/*
 * On AMD, KVM resets a vCPU after a shutdown intercept (the VMCB is
 * undefined then), so RIP reads 0xfff0 in CS 0xf000; name the last RIP we
 * saw before this exit instead of pretending the reset vector faulted.
 */
static int exit_shutdown(struct vcpu *v)
{
	uint64_t last = v->prev_rip;
	struct kvm_sregs s;
	char sym[160];
	uint64_t rip;

	exit_dump_regs(v, "triple fault");
	rip = exit_rip(v);
	if (ioctl(v->fd, KVM_GET_SREGS, &s) == 0 && s.cs.selector == 0xf000 &&
	    rip == 0xfff0) {
		vm_end(v->vm, VMM_TRIPLE_FAULT, (int)v->id, NULL,
		       "triple fault: vcpu %u (registers reset by KVM; last known "
		       "rip %s)", v->id, vmm_symbolize(v->vm, last, sym, sizeof(sym)));
		return 1;
	}
	vm_end(v->vm, VMM_TRIPLE_FAULT, (int)v->id, NULL,
	       "triple fault: vcpu %u at %s", v->id,
	       vmm_symbolize(v->vm, rip, sym, sizeof(sym)));
	return 1;
}

int exit_handle(struct vcpu *v)
{
	char what[64];

	switch (v->run->exit_reason) {
	case KVM_EXIT_IO:
		return exit_io(v);
	case KVM_EXIT_MMIO:
		return exit_mmio(v);
	case KVM_EXIT_INTR:
		return 0;
	case KVM_EXIT_SHUTDOWN:
		return exit_shutdown(v);
	case KVM_EXIT_INTERNAL_ERROR:
		return exit_internal_error(v);
	case KVM_EXIT_DEBUG:
		if (v->vm->trap_path == VMM_TRAP_DEBUG_EXIT &&
		    v->run->debug.arch.exception == 3)
			return trap_debug_exit(v);
		snprintf(what, sizeof(what), "debug exit, exception %u",
			 v->run->debug.arch.exception);
		return exit_unexpected(v, what);
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "VM entry failed, reason 0x%llx",
			 (unsigned long long)v->run->fail_entry.hardware_entry_failure_reason);
		exit_dump_regs(v, "entry failure");
		return exit_unexpected(v, what);
	default:
		snprintf(what, sizeof(what), "exit reason %u", v->run->exit_reason);
		return exit_unexpected(v, what);
	}
}
