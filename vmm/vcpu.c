// SPDX-License-Identifier: MIT
/*
 * vcpu.c - one vCPU: its long-mode start state and the thread that runs it.
 *
 * Why start in long mode: our guest is ours, so there is no firmware and
 * no INIT/SIPI dance.  Like the KVM selftests, every vCPU gets CR0/CR4/EFER
 * for 64-bit paging, a flat 64-bit CS and the VMM's page tables, and
 * mp_state RUNNABLE so APs do not wait for a SIPI under the in-kernel
 * irqchip.  Per-vCPU CPUID carries the APIC id (leaf 1 and 0xB) so the
 * guest's LAPIC agrees with its vCPU id; LINT0/LINT1 are set up as on a PC
 * so the LAPIC timer works.  The thread loop is the vCPU half of the sync
 * protocol described in sync.c; everything else about an exit is exit.c.
 * vCPU ioctls are issued only from this thread once it runs (api.rst).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/mman.h>

#include "vmm_internal.h"

#define X86_CR0_PE	(1ull << 0)
#define X86_CR0_MP	(1ull << 1)
#define X86_CR0_ET	(1ull << 4)
#define X86_CR0_NE	(1ull << 5)
#define X86_CR0_PG	(1ull << 31)
#define X86_CR4_PAE	(1ull << 5)
#define X86_CR4_OSFXSR	(1ull << 9)
#define X86_CR4_OSXMMEXCPT (1ull << 10)
#define EFER_LME	(1ull << 8)
#define EFER_LMA	(1ull << 10)
#define EFER_NXE	(1ull << 11)

#define APIC_LVT_LINT0	0x350
#define APIC_LVT_LINT1	0x360
#define APIC_MODE_NMI	0x4
#define APIC_MODE_EXTINT 0x7

static int vcpu_set_cpuid(struct vcpu *v)
{
	const struct kvm_cpuid2 *sup = v->vm->cpuid;
	size_t sz = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = malloc(sz);
	int r;

	if (!c)
		return -ENOMEM;
	memcpy(c, sup, sz);
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffffu) | (v->id << 24);
			e->ecx |= 1u << 31;	/* hypervisor */
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = v->id;
		}
	}
	r = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	return r;
}

static int vcpu_set_lapic(struct vcpu *v)
{
	struct kvm_lapic_state la;
	uint32_t *lint0 = (uint32_t *)&la.regs[APIC_LVT_LINT0];
	uint32_t *lint1 = (uint32_t *)&la.regs[APIC_LVT_LINT1];

	if (ioctl(v->fd, KVM_GET_LAPIC, &la) < 0)
		return -errno;
	*lint0 = (*lint0 & ~0x700u) | (APIC_MODE_EXTINT << 8);
	*lint1 = (*lint1 & ~0x700u) | (APIC_MODE_NMI << 8);
	return ioctl(v->fd, KVM_SET_LAPIC, &la) < 0 ? -errno : 0;
}

static void vcpu_seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 0;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

static int vcpu_set_long_mode(struct vcpu *v)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	bool nx = false;

	for (uint32_t i = 0; i < v->vm->cpuid->nent; i++)
		if (v->vm->cpuid->entries[i].function == 0x80000001)
			nx = (v->vm->cpuid->entries[i].edx >> 20) & 1;
	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	vcpu_seg(&sregs.cs, 0x8, 0xb, true);
	vcpu_seg(&sregs.ds, 0x10, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	memset(&sregs.tr, 0, sizeof(sregs.tr));
	sregs.tr.selector = 0x18;
	sregs.tr.limit = 0x67;
	sregs.tr.type = 0xb;		/* busy 64-bit TSS */
	sregs.tr.present = 1;
	sregs.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
	sregs.cr3 = VMPOKE_PML4_GPA;
	sregs.cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	sregs.efer = EFER_LME | EFER_LMA | (nx ? EFER_NXE : 0);
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = v->vm->entry;
	regs.rdi = v->id;
	regs.rsi = VMPOKE_BOOT_INFO_GPA;
	regs.rflags = 0x2;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	v->regs = regs;
	v->sregs = sregs;
	atomic_store(&v->last_rip, regs.rip);
	return 0;
}

int vcpu_create(struct vm *vm, unsigned int id)
{
	struct vcpu *v = &vm->vcpus[id];
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	const char *step = "KVM_CREATE_VCPU";
	int r;

	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0)
		goto fail;
	step = "mmap kvm_run";
	v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		goto fail;
	}
	step = "KVM_SET_CPUID2";
	if ((r = vcpu_set_cpuid(v)))
		goto fail_r;
	step = "KVM_SET_LAPIC";
	if ((r = vcpu_set_lapic(v)))
		goto fail_r;
	step = "long-mode registers";
	if ((r = vcpu_set_long_mode(v)))
		goto fail_r;
	step = "KVM_SET_MP_STATE";
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		goto fail;
	if (vm->trap_path == VMM_TRAP_DEBUG_EXIT) {
		struct kvm_guest_debug gd = {
			.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP };

		step = "KVM_SET_GUEST_DEBUG";
		if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, &gd) < 0)
			goto fail;
	}
	if (vm->sync_regs)
		v->run->kvm_valid_regs = KVM_SYNC_X86_REGS;
	kvm_stats_open(v);	/* optional: bench and tests only */
	return 0;
fail:
	r = -errno;
fail_r:
	vmm_error("vcpu %u: %s: %s", id, step, strerror(-r));
	return r;
}

/* The vCPU's registers from its own thread: sync_regs copy or an ioctl. */
int vcpu_get_regs(struct vcpu *v, struct kvm_regs *regs)
{
	if (v->vm->sync_regs) {
		*regs = v->run->s.regs.regs;
		return 0;
	}
	return ioctl(v->fd, KVM_GET_REGS, regs) < 0 ? -errno : 0;
}

/*
 * And back, from the vCPU's own thread: into the sync_regs block (KVM
 * applies it at the next KVM_RUN, before completing a pending IN) or with
 * an ioctl.
 */
int vcpu_set_regs(struct vcpu *v, const struct kvm_regs *regs)
{
	if (v->vm->sync_regs) {
		v->run->s.regs.regs = *regs;
		v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
		return 0;
	}
	return ioctl(v->fd, KVM_SET_REGS, regs) < 0 ? -errno : 0;
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, VMM_KICK_SIG);
	sync_set_run(v->run);
	atomic_store(&v->tid, (pid_t)syscall(SYS_gettid));
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		int r;

		/* Steps 1-4 of the protocol in sync.c, in this order. */
		v->run->immediate_exit = 0;
		sync_vcpu_ack(v);
		if (atomic_load(&vm->stop_req))
			break;
		if (atomic_load(&vm->pause_req) || atomic_load(&v->offline_req)) {
			sync_vcpu_park(v);
			continue;
		}
		r = ioctl(v->fd, KVM_RUN, 0);
		v->io_pending = false;
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vm_end(vm, VMM_HOST_ERROR, (int)v->id, NULL,
			       "host error: vcpu %u: KVM_RUN: %s", v->id,
			       strerror(errno));
			break;
		}
		atomic_fetch_add_explicit(&v->exits, 1, memory_order_relaxed);
		v->prev_rip = atomic_load_explicit(&v->last_rip, memory_order_relaxed);
		if (vm->sync_regs)
			atomic_store_explicit(&v->last_rip, v->run->s.regs.regs.rip,
					      memory_order_relaxed);
		if (exit_handle(v))
			break;
	}
	/* Leave registers readable for post-mortems and pause. */
	sync_vcpu_prepare_park(v);
	sync_set_run(NULL);
	atomic_store(&v->exited, true);
	sync_notify(vm);
	return NULL;
}
