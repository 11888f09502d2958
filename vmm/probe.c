// SPDX-License-Identifier: MIT
/*
 * probe.c - probing what the host's KVM really does: the probe VMs behind
 * `vmpoke doctor` (vmm_probe_host) and the trap-path choice.
 *
 * Why probe VMs: the capability list says what the API accepts, not what
 * happens.  On kvm_pvm (docs/design.md, "Platform facts") KVM_SET_GUEST_DEBUG
 * is accepted but an int3 never gives KVM_EXIT_DEBUG, so the trap path must
 * be chosen by running one.  Each probe is a VM with one page of RAM and a
 * few bytes of real-mode code, run on its own thread under a watchdog that
 * kicks it, so a probe can answer "no" but can never hang the caller.  The
 * answer is a property of the host, so it is computed once per process.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"
#include "stats.h"
#include "vmm_internal.h"

struct probe {
	int vm_fd, fd;
	struct kvm_run *run;
	size_t run_size;
	void *mem;
	pthread_t thread;
	/* results, written by the probe thread */
	int nr_runs;
	int exit_reason, err;
	uint32_t debug_exc;
	uint64_t t_ret[32];
	uint64_t t_out[256];
	int nr_out;
	_Atomic bool kick_mode;
	_Atomic bool stop;		/* controller: leave now */
	_Atomic bool finished;		/* thread: left its loop */
	bool abandoned;			/* never left KVM_RUN: leaked on purpose */
	_Atomic int kick_phase;		/* kick probe: run count done */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

#define PROBE_CODE	0x1000u
#define PROBE_GIVEUP_MS	5000u
#define PROBE_HLT	0x0f00u	/* a HLT every IVT entry points at */

static int probe_create(int kvm_fd, struct probe *p, const uint8_t *code,
			size_t len, uint32_t dbg)
{
	struct kvm_userspace_memory_region mr;
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	memset(p, 0, sizeof(*p));
	p->vm_fd = p->fd = -1;
	pthread_mutex_init(&p->lock, NULL);
	clock_cond_init(&p->cond);	/* timed waits use clock_deadline() */
	p->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (p->vm_fd < 0)
		return -errno;
	ioctl(p->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	p->mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->mem == MAP_FAILED) {
		p->mem = NULL;
		return -ENOMEM;
	}
	/*
	 * Every stray path must end in an exit: fill the memory with HLT (no
	 * irqchip here, so HLT exits) and point every real-mode IVT entry at
	 * one, so an INT3 delivered to the guest halts instead of running off
	 * through zero bytes.  A probe that never exits, with IF=0, was seen
	 * to wedge a whole nested-KVM host.
	 */
	memset(p->mem, 0xf4, 0x10000);
	for (unsigned int v = 0; v < 256; v++) {
		uint16_t ivt[2] = { PROBE_HLT, 0 };	/* offset, segment */

		memcpy((uint8_t *)p->mem + 4 * v, ivt, sizeof(ivt));
	}
	memcpy((uint8_t *)p->mem + PROBE_CODE, code, len);
	mr = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0,
		.memory_size = 0x10000, .userspace_addr = (uint64_t)p->mem };
	if (ioctl(p->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
		return -errno;
	p->fd = ioctl(p->vm_fd, KVM_CREATE_VCPU, 0);
	if (p->fd < 0)
		return -errno;
	p->run_size = (size_t)ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	p->run = mmap(NULL, p->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
	if (p->run == MAP_FAILED) {
		p->run = NULL;
		return -errno;
	}
	if (ioctl(p->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(p->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = PROBE_CODE;
	/*
	 * IF=1: the probe has no interrupt controller, so nothing is
	 * delivered, but a nested KVM under emulated SVM was seen not to take
	 * its host's IPIs while its guest spun with IF=0.
	 */
	regs.rflags = 0x202;
	if (ioctl(p->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	if (dbg) {
		struct kvm_guest_debug gd = { .control = dbg };

		if (ioctl(p->fd, KVM_SET_GUEST_DEBUG, &gd) < 0)
			return -errno;
	}
	return 0;
}

/* Frees p, unless its thread was abandoned and may still touch it. */
static void probe_destroy(struct probe *p)
{
	if (p->abandoned)
		return;
	if (p->run)
		munmap(p->run, p->run_size);
	if (p->fd >= 0)
		close(p->fd);
	if (p->mem)
		munmap(p->mem, 0x10000);
	if (p->vm_fd >= 0)
		close(p->vm_fd);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

/*
 * The probe thread: run until an exit other than the out loop's, or until
 * kicked.  In kick mode every -EINTR is timestamped and the guest re-entered
 * until the controller has kicked enough times.
 */
static void *probe_thread(void *arg)
{
	struct probe *p = arg;
	sigset_t set;

	/*
	 * kvm_run first, then the signal: a kick sent before this thread
	 * ran is pending until the unblock, and its handler must find the
	 * kvm_run to set immediate_exit in, or the kick is lost and the
	 * guest spins in `jmp .` until the controller gives up (seen once
	 * under load: doctor's kick latency came back 0).
	 */
	p->run->immediate_exit = 0;
	sync_set_run(p->run);
	sigemptyset(&set);
	sigaddset(&set, VMM_KICK_SIG);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		int r;

		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load(&p->stop))
			break;
		r = ioctl(p->fd, KVM_RUN, 0);
		if (r < 0 && errno == EINTR) {
			if (atomic_load(&p->kick_mode) && p->nr_runs < 32) {
				p->t_ret[p->nr_runs++] = clock_now_ns();
				/* cleared before the controller may kick again */
				p->run->immediate_exit = 0;
				pthread_mutex_lock(&p->lock);
				atomic_fetch_add(&p->kick_phase, 1);
				pthread_cond_broadcast(&p->cond);
				pthread_mutex_unlock(&p->lock);
				continue;
			}
			p->err = EINTR;
			break;
		}
		if (r < 0) {
			p->err = errno;
			break;
		}
		p->exit_reason = p->run->exit_reason;
		if (p->exit_reason == KVM_EXIT_IO && p->nr_out < 256) {
			p->t_out[p->nr_out++] = clock_now_ns();
			if (p->nr_out < 256)
				continue;
		}
		if (p->exit_reason == KVM_EXIT_DEBUG)
			p->debug_exc = p->run->debug.arch.exception;
		break;
	}
	sync_set_run(NULL);
	pthread_mutex_lock(&p->lock);
	atomic_store(&p->finished, true);
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static int probe_start(struct probe *p)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int r;

	sync_install_kick();
	sigfillset(&all);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VMM_STACK_SIZE);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	r = pthread_create(&p->thread, &attr, probe_thread, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return -r;
}

/*
 * Wait for the probe thread for at most ms, then make it leave: stop is set
 * before the kick, so either the kick's immediate_exit ends its KVM_RUN or
 * its loop sees stop before entering again.  One kick is enough.
 */
static void probe_finish(struct probe *p, unsigned int ms)
{
	struct timespec ts;

	clock_deadline(&ts, ms * CLOCK_NS_PER_MS);
	pthread_mutex_lock(&p->lock);
	while (!atomic_load(&p->finished))
		if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&p->lock);
	atomic_store(&p->kick_mode, false);
	atomic_store(&p->stop, true);
	/*
	 * One kick is enough by the argument above, but doctor must never hang
	 * on a KVM that does not honour it (seen once under nested emulation):
	 * kick again every 100 ms, and after PROBE_GIVEUP_MS abandon the thread
	 * and its probe (leaked, never freed under it) instead of joining.
	 */
	for (unsigned int waited = 0; ; waited += 100) {
		pthread_kill(p->thread, VMM_KICK_SIG);
		clock_deadline(&ts, 100 * CLOCK_NS_PER_MS);
		pthread_mutex_lock(&p->lock);
		while (!atomic_load(&p->finished))
			if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&p->lock);
		if (atomic_load(&p->finished))
			break;
		if (waited >= PROBE_GIVEUP_MS) {
			vmm_error("probe vCPU did not leave KVM_RUN %u ms after being "
				  "kicked; abandoning it (results of this probe are void)",
				  PROBE_GIVEUP_MS);
			p->abandoned = true;
			pthread_detach(p->thread);
			return;
		}
	}
	pthread_join(p->thread, NULL);
}

static int probe_run(int kvm_fd, struct probe *p, const uint8_t *code,
		     size_t len, uint32_t dbg, unsigned int ms)
{
	int r = probe_create(kvm_fd, p, code, len, dbg);

	if (r == 0)
		r = probe_start(p);
	if (r == 0)
		probe_finish(p, ms);
	return r;
}

/*
 * Run code under guest-debug flags dbg and say whether it ended in
 * KVM_EXIT_DEBUG (with exception want_exc, or any if want_exc < 0).
 */
static bool probe_once(int kvm_fd, const uint8_t *code, size_t len, uint32_t dbg,
		       int want_exc)
{
	struct probe *p = calloc(1, sizeof(*p));
	bool yes;

	if (!p)
		return false;
	if (probe_run(kvm_fd, p, code, len, dbg, 500)) {
		probe_destroy(p);
		return false;
	}
	yes = p->err == 0 && p->exit_reason == KVM_EXIT_DEBUG &&
	      (want_exc < 0 || p->debug_exc == (uint32_t)want_exc);
	probe_destroy(p);
	return yes;
}

/* int3; hlt: does USE_SW_BP give KVM_EXIT_DEBUG with exception 3 (#BP)? */
static bool probe_int3(int kvm_fd)
{
	static const uint8_t code[] = { 0xcc, 0xf4 };

	return probe_once(kvm_fd, code, sizeof(code),
			  KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP, 3);
}

static bool probe_singlestep(int kvm_fd)
{
	static const uint8_t code[] = { 0x90, 0x90, 0xf4 };

	return probe_once(kvm_fd, code, sizeof(code),
			  KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, -1);
}

static pthread_once_t probe_int3_once = PTHREAD_ONCE_INIT;
static bool probe_int3_answer;

static void probe_int3_run_once(void)
{
	char why[256];
	int fd = kvm_open_dev(why, sizeof(why));

	if (fd < 0)
		return;
	probe_int3_answer = probe_int3(fd);
	close(fd);
}

/* A property of the host: one probe VM per process, not one per VM. */
bool kvm_probe_int3_exit(void)
{
	pthread_once(&probe_int3_once, probe_int3_run_once);
	return probe_int3_answer;
}

/*
 * Long mode at CPL0 for a probe: identity page tables, a GDT with a 64-bit
 * code segment, and an IDT whose only present gate is #BP (interrupt gate,
 * DPL0) to `handler`; anything else triple-faults, which is an exit too.
 * Real mode will not do: kvm_pvm delivers a real-mode int3 to the IVT but
 * fails on a 64-bit CPL0 one.
 */
#define PROBE_PML4	0x2000u
#define PROBE_GDT	0x5000u
#define PROBE_IDT	0x6000u
#define PROBE_STACK	0x8000u

static int probe_long_mode(struct probe *p, uint64_t handler)
{
	uint8_t *m = p->mem;
	const uint64_t gdt[3] = { 0, 0x00af9a000000ffffull, 0x00cf92000000ffffull };
	const uint64_t pte[3] = { PROBE_PML4 + 0x1000 + 3, PROBE_PML4 + 0x2000 + 3,
				  0x83 };	/* PML4 -> PDPT -> PD: one 2 MiB page */
	uint64_t gate[2] = {
		(handler & 0xffff) | (0x8ull << 16) | (0x8eull << 40) |
		((handler >> 16 & 0xffff) << 48), handler >> 32,
	};
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	memset(m + PROBE_PML4, 0, 0x3000);
	for (unsigned int i = 0; i < 3; i++)
		memcpy(m + PROBE_PML4 + 0x1000 * i, &pte[i], 8);
	memcpy(m + PROBE_GDT, gdt, sizeof(gdt));
	memset(m + PROBE_IDT, 0, 0x1000);
	memcpy(m + PROBE_IDT + 16 * 3, gate, sizeof(gate));
	if (ioctl(p->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cr3 = PROBE_PML4;
	sregs.cr4 = 1u << 5;				/* PAE */
	sregs.cr0 = 1u | (1u << 31);			/* PE, PG */
	sregs.efer = (1u << 8) | (1u << 10);		/* LME, LMA */
	sregs.gdt = (struct kvm_dtable){ .base = PROBE_GDT, .limit = sizeof(gdt) - 1 };
	sregs.idt = (struct kvm_dtable){ .base = PROBE_IDT, .limit = 0xfff };
	sregs.cs = (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = 0x8,
		.type = 0xb, .present = 1, .dpl = 0, .s = 1, .l = 1, .g = 1 };
	sregs.ss = (struct kvm_segment){ .base = 0, .limit = 0xffffffff, .selector = 0x10,
		.type = 0x3, .present = 1, .dpl = 0, .s = 1, .db = 1, .g = 1 };
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss;
	if (ioctl(p->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = PROBE_CODE;
	regs.rsp = PROBE_STACK;
	regs.rflags = 0x2;
	return ioctl(p->fd, KVM_SET_REGS, &regs) < 0 ? -errno : 0;
}

/*
 * int3 at 64-bit CPL0 with the #BP gate pointing at "out; hlt": does the
 * host deliver a CPL0 INT3 to the guest's own vector (trap path b)?  On
 * kvm_pvm it does not: CPL0 is emulated and the emulator fails on int3 with
 * KVM_EXIT_INTERNAL_ERROR (docs/design.md, "Platform facts"), which
 * would end a real guest.
 */
static bool probe_cpl0_int3_vector(int kvm_fd)
{
	static const uint8_t code[] = { 0xcc, 0xf4 };		/* int3; hlt */
	static const uint8_t handler[] = { 0xe6, 0x11, 0xf4 };	/* out %al,$0x11; hlt */
	struct probe *p = calloc(1, sizeof(*p));
	bool yes;
	int r;

	if (!p)
		return false;
	r = probe_create(kvm_fd, p, code, sizeof(code), 0);
	if (r == 0) {
		memcpy((uint8_t *)p->mem + PROBE_CODE + 0x100, handler, sizeof(handler));
		r = probe_long_mode(p, PROBE_CODE + 0x100);
	}
	if (r == 0)
		r = probe_start(p);
	if (r == 0)
		probe_finish(p, 500);
	yes = r == 0 && p->err == 0 && p->nr_out == 1 && p->exit_reason == KVM_EXIT_HLT;
	probe_destroy(p);
	return yes;
}

/*
 * Can a CPL0 INT3 be trapped on `path`?  (a): USE_SW_BP gives an exit for
 * it (the real-mode int3 probe is at CPL0).  (b): the guest's vector gets
 * it.  Probed once per process and path: the answer is the host's.
 */
bool vmm_cpl0_int3_trappable(enum vmm_trap_path path)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int cached[2] = { -1, -1 };	/* debug-exit, doorbell */
	int i = path == VMM_TRAP_DEBUG_EXIT ? 0 : 1;
	char why[256];
	int fd;

	pthread_mutex_lock(&lock);
	if (cached[i] < 0) {
		fd = kvm_open_dev(why, sizeof(why));
		cached[i] = fd >= 0 && (i == 0 ? probe_int3(fd) : probe_cpl0_int3_vector(fd));
		if (fd >= 0)
			close(fd);
	}
	pthread_mutex_unlock(&lock);
	return cached[i];
}

/* out %al, $0x10; jmp back: median time between consecutive exits. */
static double probe_roundtrip(int kvm_fd)
{
	static const uint8_t code[] = { 0xe6, 0x10, 0xeb, 0xfc };
	uint64_t d[255];
	struct probe *p = calloc(1, sizeof(*p));
	int n = 0;

	if (!p)
		return 0;
	if (probe_run(kvm_fd, p, code, sizeof(code), 0, 2000) == 0)
		for (int i = 1; i < p->nr_out; i++)
			d[n++] = p->t_out[i] - p->t_out[i - 1];
	probe_destroy(p);
	return stats_median_us(d, (size_t)n);
}

/* jmp . ; time pthread_kill -> KVM_RUN returned, 16 times. */
static double probe_kick(int kvm_fd)
{
	static const uint8_t code[] = { 0xeb, 0xfe };
	uint64_t sent[16], d[16];
	struct probe *p = calloc(1, sizeof(*p));
	int n = 0;

	if (!p)
		return 0;
	if (probe_create(kvm_fd, p, code, sizeof(code), 0) == 0) {
		atomic_store(&p->kick_mode, true);
		if (probe_start(p) == 0) {
			for (int i = 0; i < 16; i++) {
				struct timespec ts;
				bool ok = true;

				/* let it get into guest mode */
				clock_deadline(&ts, 2 * CLOCK_NS_PER_MS);
				pthread_mutex_lock(&p->lock);
				pthread_cond_timedwait(&p->cond, &p->lock, &ts);
				sent[i] = clock_now_ns();
				pthread_kill(p->thread, VMM_KICK_SIG);
				clock_deadline(&ts, 500 * CLOCK_NS_PER_MS);
				while (atomic_load(&p->kick_phase) <= i && ok)
					ok = pthread_cond_timedwait(&p->cond, &p->lock,
								    &ts) != ETIMEDOUT;
				pthread_mutex_unlock(&p->lock);
				if (!ok)
					break;
				d[n] = p->t_ret[i] - sent[i];
				n++;
			}
			probe_finish(p, 0);
		}
	}
	probe_destroy(p);
	return stats_median_us(d, (size_t)n);
}

int vmm_probe_host(struct vmm_host_caps *caps)
{
	int fd;

	memset(caps, 0, sizeof(*caps));
	fd = kvm_open_dev(caps->problem, sizeof(caps->problem));
	if (fd < 0) {
		caps->api_version = -1;
		return fd;
	}
	caps->kvm_ok = true;
	caps->api_version = KVM_API_VERSION;
	caps->cap_irqchip = kvm_check_ext(fd, KVM_CAP_IRQCHIP);
	caps->cap_immediate_exit = kvm_check_ext(fd, KVM_CAP_IMMEDIATE_EXIT);
	caps->cap_set_guest_debug = kvm_check_ext(fd, KVM_CAP_SET_GUEST_DEBUG);
	caps->cap_user_memory = kvm_check_ext(fd, KVM_CAP_USER_MEMORY);
	caps->cap_pit2 = kvm_check_ext(fd, KVM_CAP_PIT2);
	if (caps->cap_set_guest_debug) {
		caps->debug_exit_on_int3 = kvm_probe_int3_exit();
		caps->singlestep_exits = probe_singlestep(fd);
	}
	{
		bool forced;

		caps->cpl0_int3 = vmm_cpl0_int3_trappable(vmm_trap_path_resolve(
			VMM_TRAP_AUTO, caps->debug_exit_on_int3, &forced));
	}
	caps->exit_roundtrip_us = probe_roundtrip(fd);
	if (caps->cap_immediate_exit)
		caps->kick_us = probe_kick(fd);
	caps->sync_core = sync_core_supported();
	close(fd);
	return 0;
}
