// SPDX-License-Identifier: MIT
/*
 * exit.c - what a vCPU does with each KVM exit: the dispatch.  Hypercalls
 * (the port and MMIO doorbells) are hcall.c's.
 *
 * Why so strict: everything that goes wrong ends here (faults, triple
 * faults, emulation failures), and so does everything the guest tells us.
 * Port data in kvm_run is bounds-checked even against KVM's own offsets,
 * and anything we do not expect ends the run with one symbolized line in
 * vmm_result.message, e.g. "guest fault: vcpu 1 task 3: #UD at
 * hot_loop+0x1c (0x401a2c)", so a failing run says where, not just that.
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

/* --- diagnostics --------------------------------------------------------- */

uint64_t exit_rip(struct vcpu *v)
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
		return hcall_handle(v, cmd, 0, false);
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
		return hcall_handle(v, (uint32_t)(off / 8), arg, true);
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
