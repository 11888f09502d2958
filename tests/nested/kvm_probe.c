// SPDX-License-Identifier: MIT
/*
 * kvm_probe - smallest useful check of a /dev/kvm, used to qualify the
 * nested-KVM harness (tests/nested/README.md).
 *
 * One VM, one 64 KiB memslot, one vCPU in real mode running
 *	mov ecx, N ; 1: out 0x10, al ; dec ecx ; jnz 1b ; hlt ; int3
 * It counts the KVM_EXIT_IO exits and times them, expects KVM_EXIT_HLT,
 * then enables KVM_SET_GUEST_DEBUG(USE_SW_BP) and runs the int3 to see
 * whether KVM_EXIT_DEBUG arrives (trap path (a)) or not (path (b) hosts).
 *
 * A 10M-iteration dec/jnz loop without exits gives the guest's raw speed.
 * It then tries KVM_GUESTDBG_SINGLESTEP and an execute breakpoint
 * (USE_HW_BP) the same way.  Every real-mode IVT entry points at a hlt, so
 * an event KVM did not report shows up as HLT at IVT_STUB + 1.
 *
 * Usage: kvm_probe [--need-debug] [N]   (default N = 100000).  Exit 0 when
 * the exits and the HLT arrived as expected; the KVM_EXIT_DEBUG results are
 * reported, and a missing int3 debug exit fails only with --need-debug.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MEM_SIZE	0x10000
#define CODE_GPA	0x1000
#define PROBE_PORT	0x10

static const uint8_t probe_code[] = {
	0x66, 0xb9, 0, 0, 0, 0,		/* 0x0: mov ecx, N (patched) */
	0xe6, PROBE_PORT,		/* 0x6: out PROBE_PORT, al */
	0x66, 0x49,			/* 0x8: dec ecx */
	0x75, 0xfa,			/* 0xa: jnz 0x6 */
	0xf4,				/* 0xc: hlt */
	0xcc,				/* 0xd: int3 */
	0xf4,				/* 0xe: hlt */
	0xf4,				/* 0xf: hlt */
	0x90, 0x90, 0x90, 0xf4,		/* 0x10: nop; nop; nop; hlt */
	0x66, 0xb9, 0, 0, 0, 0,		/* 0x14: mov ecx, LOOPS (patched) */
	0x66, 0x49,			/* 0x1a: dec ecx */
	0x75, 0xfc,			/* 0x1c: jnz 0x1a */
	0xf4,				/* 0x1e: hlt */
	0xf4,				/* 0x1f: hlt */
	0x9c, 0x58,			/* 0x20: pushf; pop ax */
	0x0d, 0x00, 0x01,		/* 0x22: or ax, 0x100 (TF) */
	0x50, 0x9d,			/* 0x25: push ax; popf */
	0x90, 0x90, 0xf4,		/* 0x27: nop; nop; hlt */
};
#define INT3_OFF	0xd
#define NOPS_OFF	0x10
#define LOOP_OFF	0x14
#define LOOPS		10000000u
#define GUEST_TF_OFF	0x20
#define STACK_TOP	0x8000
/* Every real-mode IVT entry points at a hlt here. */
#define IVT_STUB	0x2000

static const char *exit_name(uint32_t r)
{
	switch (r) {
	case KVM_EXIT_IO: return "IO";
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_DEBUG: return "DEBUG";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	default: return "other";
	}
}

static int xioctl(int fd, unsigned long req, void *arg, const char *what)
{
	int r = ioctl(fd, req, arg);

	if (r < 0)
		fprintf(stderr, "kvm_probe: %s: %s\n", what, strerror(errno));
	return r;
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/*
 * Runs from @rip with guest debugging set to @control and reports whether
 * KVM_EXIT_DEBUG arrived with @exc at @pc.  Returns 1 for yes, 0 for
 * "not reported" (the event went to the guest's IVT instead), -1 for an
 * error or a debug exit that does not match.
 */
static int debug_phase(int vcpu, struct kvm_run *run, const char *what,
		       uint32_t control, uint64_t dr0, uint64_t dr7,
		       uint64_t rip, uint32_t exc, uint64_t pc)
{
	struct kvm_guest_debug dbg = {
		.control = KVM_GUESTDBG_ENABLE | control,
	};
	struct kvm_regs regs;

	dbg.arch.debugreg[0] = dr0;
	dbg.arch.debugreg[7] = dr7;
	if (xioctl(vcpu, KVM_GET_REGS, &regs, "GET_REGS"))
		return -1;
	regs.rip = rip;
	regs.rflags = 2;
	/*
	 * Registers first: KVM remembers the RIP at SET_GUEST_DEBUG time and
	 * sets TF for SINGLESTEP only while the vCPU is still there.
	 */
	if (xioctl(vcpu, KVM_SET_REGS, &regs, "SET_REGS") ||
	    xioctl(vcpu, KVM_SET_GUEST_DEBUG, &dbg, "SET_GUEST_DEBUG") ||
	    xioctl(vcpu, KVM_RUN, NULL, "KVM_RUN"))
		return -1;
	if (run->exit_reason == KVM_EXIT_DEBUG) {
		int ok = run->debug.arch.exception == exc &&
			 run->debug.arch.pc == pc;

		printf("kvm_probe: %s: KVM_EXIT_DEBUG yes (exception %u at 0x%llx)%s\n",
		       what, run->debug.arch.exception,
		       (unsigned long long)run->debug.arch.pc,
		       ok ? "" : " UNEXPECTED");
		return ok ? 1 : -1;
	}
	xioctl(vcpu, KVM_GET_REGS, &regs, "GET_REGS");
	printf("kvm_probe: %s: KVM_EXIT_DEBUG no (exit %s at rip 0x%llx%s)\n",
	       what, exit_name(run->exit_reason), (unsigned long long)regs.rip,
	       run->exit_reason == KVM_EXIT_HLT && regs.rip == IVT_STUB + 1 ?
	       ": delivered to the guest IVT" : "");
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long n = 100000;
	int need_debug = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--need-debug"))
			need_debug = 1;
		else
			n = strtoul(argv[i], NULL, 0);
	}
	if (n < 1 || n > 0xffffffffUL) {
		fprintf(stderr, "kvm_probe: N must be 1..2^32-1\n");
		return 2;
	}

	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (kvm < 0) {
		perror("kvm_probe: /dev/kvm");
		return 1;
	}
	int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);

	if (vm < 0) {
		perror("kvm_probe: KVM_CREATE_VM");
		return 1;
	}
	uint8_t *mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (mem == MAP_FAILED) {
		perror("kvm_probe: mmap guest memory");
		return 1;
	}
	memcpy(mem + CODE_GPA, probe_code, sizeof(probe_code));
	mem[IVT_STUB] = 0xf4;
	for (int v = 0; v < 256; v++) {
		uint32_t far_ptr = IVT_STUB;	/* segment 0 : offset */

		memcpy(mem + 4 * v, &far_ptr, 4);
	}
	uint32_t n32 = n;

	memcpy(mem + CODE_GPA + 2, &n32, 4);
	n32 = LOOPS;
	memcpy(mem + CODE_GPA + LOOP_OFF + 2, &n32, 4);

	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0,
		.memory_size = MEM_SIZE, .userspace_addr = (uintptr_t)mem,
	};
	if (xioctl(vm, KVM_SET_USER_MEMORY_REGION, &region, "SET_USER_MEMORY_REGION"))
		return 1;
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);

	if (vcpu < 0 || run_size <= 0) {
		perror("kvm_probe: KVM_CREATE_VCPU");
		return 1;
	}
	struct kvm_run *run = mmap(NULL, run_size, PROT_READ | PROT_WRITE,
				   MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) {
		perror("kvm_probe: mmap kvm_run");
		return 1;
	}

	struct kvm_sregs sregs;

	if (xioctl(vcpu, KVM_GET_SREGS, &sregs, "GET_SREGS"))
		return 1;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (xioctl(vcpu, KVM_SET_SREGS, &sregs, "SET_SREGS"))
		return 1;
	struct kvm_regs regs = { .rip = CODE_GPA, .rflags = 2 };

	if (xioctl(vcpu, KVM_SET_REGS, &regs, "SET_REGS"))
		return 1;

	/* Phase 1: N port-I/O exits, then HLT. */
	unsigned long ios = 0;
	double t0 = now_us();

	for (;;) {
		if (xioctl(vcpu, KVM_RUN, NULL, "KVM_RUN"))
			return 1;
		if (run->exit_reason == KVM_EXIT_IO &&
		    run->io.port == PROBE_PORT &&
		    run->io.direction == KVM_EXIT_IO_OUT) {
			ios++;
			continue;
		}
		break;
	}
	double t1 = now_us();

	printf("kvm_probe: api=%d exits=%lu of %lu in %.0f us: %.2f us/exit, then %s\n",
	       api, ios, n, t1 - t0, ios ? (t1 - t0) / ios : 0.0,
	       exit_name(run->exit_reason));
	if (ios != n || run->exit_reason != KVM_EXIT_HLT) {
		fprintf(stderr, "kvm_probe: FAIL: expected %lu IO exits then HLT (exit_reason %u)\n",
			n, run->exit_reason);
		return 1;
	}

	/* Guest speed without exits: LOOPS iterations of dec/jnz. */
	if (xioctl(vcpu, KVM_GET_REGS, &regs, "GET_REGS"))
		return 1;
	regs.rip = CODE_GPA + LOOP_OFF;
	if (xioctl(vcpu, KVM_SET_REGS, &regs, "SET_REGS"))
		return 1;
	t0 = now_us();
	if (xioctl(vcpu, KVM_RUN, NULL, "KVM_RUN (loop)"))
		return 1;
	t1 = now_us();
	printf("kvm_probe: %u-iteration dec/jnz loop: %.0f us (%.1f M iterations/s), then %s\n",
	       LOOPS, t1 - t0, LOOPS / (t1 - t0), exit_name(run->exit_reason));
	if (run->exit_reason != KVM_EXIT_HLT) {
		fprintf(stderr, "kvm_probe: FAIL: loop did not end in HLT\n");
		return 1;
	}

	/* Phases 2-4: the three ways KVM can report a guest debug event. */
	int got_debug = debug_phase(vcpu, run, "USE_SW_BP int3",
				    KVM_GUESTDBG_USE_SW_BP, 0, 0,
				    CODE_GPA + INT3_OFF, 3, CODE_GPA + INT3_OFF);
	int step = debug_phase(vcpu, run, "SINGLESTEP", KVM_GUESTDBG_SINGLESTEP, 0, 0,
		    CODE_GPA + NOPS_OFF, 1, CODE_GPA + NOPS_OFF + 1);
	/* DR7 = L0, execute breakpoint of length 1 at DR0. */
	int hwbp = debug_phase(vcpu, run, "USE_HW_BP exec", KVM_GUESTDBG_USE_HW_BP,
		    CODE_GPA + NOPS_OFF + 1, 0x1, CODE_GPA + NOPS_OFF,
		    1, CODE_GPA + NOPS_OFF + 1);

	/* The guest's own RFLAGS.TF, no guest debugging: #DB to the IVT. */
	struct kvm_guest_debug nodbg = { .control = 0 };

	if (xioctl(vcpu, KVM_SET_GUEST_DEBUG, &nodbg, "SET_GUEST_DEBUG (off)") ||
	    xioctl(vcpu, KVM_GET_REGS, &regs, "GET_REGS"))
		return 1;
	regs.rip = CODE_GPA + GUEST_TF_OFF;
	regs.rsp = STACK_TOP;
	regs.rflags = 2;
	if (xioctl(vcpu, KVM_SET_REGS, &regs, "SET_REGS") ||
	    xioctl(vcpu, KVM_RUN, NULL, "KVM_RUN (guest TF)") ||
	    xioctl(vcpu, KVM_GET_REGS, &regs, "GET_REGS"))
		return 1;
	printf("kvm_probe: guest RFLAGS.TF: %s (exit %s at rip 0x%llx)\n",
	       run->exit_reason == KVM_EXIT_HLT && regs.rip == IVT_STUB + 1 ?
	       "#DB delivered to the guest IVT" : "no #DB",
	       exit_name(run->exit_reason), (unsigned long long)regs.rip);

	if (got_debug < 0 || step < 0 || hwbp < 0)
		return 1;
	return need_debug && got_debug != 1;
}
