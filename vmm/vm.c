// SPDX-License-Identifier: MIT
/*
 * vm.c - building the VM: RAM, irqchip, image, page tables, boot info and
 * vCPUs, and tearing it all down.
 *
 * Why all of this happens before any thread starts: the guest boots every
 * vCPU straight into long mode at the ELF entry, so everything the first
 * instruction needs (identity page tables exactly as vmpoke_abi.h lays them
 * out, the boot-info block, CPUID, LAPIC LINTs, long-mode sregs) must be in
 * place first, and a bad input must be reported by name with exit code 2
 * (the user's fault) versus 3 (the host's) before anything runs.  The image
 * is loaded by elf_load() and its symbols by symtab_load(); this file only
 * decides where things go.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "elf_load.h"
#include "symtab.h"
#include "vmm_internal.h"

#define PTE_P		0x1ull
#define PTE_RW		0x2ull
#define PTE_US		0x4ull
#define PTE_PS		0x80ull
#define PTE_FLAGS	(PTE_P | PTE_RW | PTE_US)
/* Used only if the CPU lacks 1 GiB pages: 3 PDs for [1G, 4G). */
#define VM_PD_HIGH_GPA	0x7000ull

#define VM_MAX_MEM_MIB	3072u	/* stay below the MMIO doorbell */

static bool vm_cpu_has(const struct kvm_cpuid2 *c, uint32_t leaf, int reg, int bit)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function != leaf)
			continue;
		uint32_t v = reg == 'c' ? e->ecx : reg == 'd' ? e->edx : e->ebx;
		return (v >> bit) & 1;
	}
	return false;
}

/* Page tables exactly as described in vmpoke_abi.h. */
static void vm_build_page_tables(struct vm *vm, bool gb_pages)
{
	uint64_t *pml4 = (uint64_t *)(vm->ram.host + VMPOKE_PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(vm->ram.host + VMPOKE_PDPT_GPA);
	uint64_t *pd = (uint64_t *)(vm->ram.host + VMPOKE_PD_GPA);
	uint64_t *pt = (uint64_t *)(vm->ram.host + VMPOKE_PT_GPA);

	memset(pml4, 0, 4096 * 4);
	pml4[0] = VMPOKE_PDPT_GPA | PTE_FLAGS;
	pdpt[0] = VMPOKE_PD_GPA | PTE_FLAGS;
	pd[0] = VMPOKE_PT_GPA | PTE_FLAGS;
	pt[0] = 0;				/* NULL faults */
	for (uint64_t i = 1; i < 512; i++)
		pt[i] = (i << 12) | PTE_FLAGS;
	for (uint64_t i = 1; i < 512; i++)
		pd[i] = (i << 21) | PTE_FLAGS | PTE_PS;
	for (uint64_t g = 1; g < 4; g++) {
		if (gb_pages) {
			pdpt[g] = (g << 30) | PTE_FLAGS | PTE_PS;
			continue;
		}
		uint64_t gpa = VM_PD_HIGH_GPA + (g - 1) * 4096;
		uint64_t *hpd = (uint64_t *)(vm->ram.host + gpa);

		for (uint64_t i = 0; i < 512; i++)
			hpd[i] = ((g << 30) + (i << 21)) | PTE_FLAGS | PTE_PS;
		pdpt[g] = gpa | PTE_FLAGS;
	}
}

static void vm_write_boot_info(struct vm *vm)
{
	struct vmpoke_boot_info *bi = (void *)(vm->ram.host + VMPOKE_BOOT_INFO_GPA);
	uint64_t div = 0;

	/* KVM's APIC bus runs at 1 GHz (APIC_BUS_CYCLE_NS = 1); divide by 1. */
	if (vm->cfg.hz)
		div = 1000000000ull / vm->cfg.hz;
	memset(bi, 0, sizeof(*bi));
	bi->magic = VMPOKE_BOOT_MAGIC;
	bi->abi_version = VMPOKE_ABI_VERSION;
	bi->nr_vcpus = vm->nr_vcpus;
	bi->tasks_per_vcpu = vm->cfg.tasks;
	bi->scenario = vm->cfg.scenario;
	bi->hz = vm->cfg.hz;
	bi->lapic_timer_div_ticks = div > UINT32_MAX ? UINT32_MAX : (uint32_t)div;
	bi->mem_size = vm->ram.size;
	bi->iterations = vm->cfg.iterations;
	bi->seed = vm->cfg.seed;
}

static int vm_check_config(const struct vm_config *cfg)
{
	if (!cfg->image || !cfg->image[0]) {
		vmm_error("no guest image given");
		return -EINVAL;
	}
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > VMPOKE_MAX_VCPUS) {
		vmm_error("%u vCPUs: must be 1..%d", cfg->nr_vcpus, VMPOKE_MAX_VCPUS);
		return -EINVAL;
	}
	if (cfg->tasks < 1 || cfg->tasks > VMPOKE_MAX_TASKS) {
		vmm_error("%u tasks per vCPU: must be 1..%d", cfg->tasks,
			  VMPOKE_MAX_TASKS);
		return -EINVAL;
	}
	if (cfg->mem_mib < 2 || cfg->mem_mib > VM_MAX_MEM_MIB) {
		vmm_error("%llu MiB of guest RAM: must be 2..%u",
			  (unsigned long long)cfg->mem_mib, VM_MAX_MEM_MIB);
		return -EINVAL;
	}
	if ((unsigned int)cfg->scenario >= VMPOKE_SCN_MAX) {
		vmm_error("scenario %u unknown", (unsigned int)cfg->scenario);
		return -EINVAL;
	}
	if ((unsigned int)cfg->trap_path > VMM_TRAP_DOORBELL) {
		vmm_error("trap path %u unknown", (unsigned int)cfg->trap_path);
		return -EINVAL;
	}
	if (vmm_trap_path_env() < 0) {
		vmm_error("%s=%s: unknown trap path (auto, debug-exit or doorbell)",
			  VMM_TRAP_PATH_ENV, getenv(VMM_TRAP_PATH_ENV));
		return -EINVAL;
	}
	return 0;
}

/* Host side: /dev/kvm, caps, VM, RAM, irqchip. 0 or exit code 3. */
static int vm_open_kvm(struct vm *vm)
{
	static const struct { long cap; const char *name; } need[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT" },
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
	};
	struct kvm_userspace_memory_region mr;
	char why[256];

	vm->kvm_fd = kvm_open_dev(why, sizeof(why));
	if (vm->kvm_fd < 0) {
		vmm_error("%s", why);
		return VMPOKE_EXIT_HOST;
	}
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (!kvm_check_ext(vm->kvm_fd, need[i].cap)) {
			vmm_error("/dev/kvm lacks %s; this KVM cannot run vmpoke",
				  need[i].name);
			return VMPOKE_EXIT_HOST;
		}
	}
	/*
	 * VMPOKE_NO_SYNC_REGS=1 forces a KVM_GET_REGS per trap instead, so
	 * `vmpoke bench probe` can measure what sync_regs saves.
	 */
	vm->sync_regs = !getenv("VMPOKE_NO_SYNC_REGS") &&
			(kvm_check_ext(vm->kvm_fd, KVM_CAP_SYNC_REGS) &
			 KVM_SYNC_X86_REGS) != 0;
	do
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0) {
		vmm_error("KVM_CREATE_VM: %s", strerror(errno));
		return VMPOKE_EXIT_HOST;
	}
	/* Only needed for real mode on old VMX; harmless elsewhere. */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	vm->ram.size = vm->cfg.mem_mib << 20;
	vm->ram.host = mmap(NULL, vm->ram.size, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->ram.host == MAP_FAILED) {
		vm->ram.host = NULL;
		vmm_error("cannot map %llu MiB of guest RAM: %s",
			  (unsigned long long)vm->cfg.mem_mib, strerror(errno));
		return VMPOKE_EXIT_HOST;
	}
	mr = (struct kvm_userspace_memory_region){ .slot = 0, .guest_phys_addr = 0,
		.memory_size = vm->ram.size, .userspace_addr = (uint64_t)vm->ram.host };
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
		vmm_error("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
		return VMPOKE_EXIT_HOST;
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		vmm_error("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return VMPOKE_EXIT_HOST;
	}
	vm->run_size = (size_t)ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	vm->cpuid = kvm_supported_cpuid(vm->kvm_fd);
	if (!vm->cpuid || vm->run_size < sizeof(struct kvm_run)) {
		vmm_error("KVM_GET_SUPPORTED_CPUID/VCPU_MMAP_SIZE failed: %s",
			  strerror(errno));
		return VMPOKE_EXIT_HOST;
	}
	return 0;
}

/* Guest side: image, symbols, tables, boot info. 0 or exit code 2. */
static int vm_load_image(struct vm *vm)
{
	struct vmpoke_percpu pc;
	const struct sym *s;
	struct elf_image img;
	char err[512];

	if (elf_load(vm->image, vm->ram.host, vm->ram.size, VMPOKE_IMAGE_BASE,
		     &img, err, sizeof(err)) < 0) {
		/* err names the image and, if it does not fit, says --mem */
		vmm_error("%s", err);
		return VMPOKE_EXIT_USAGE;
	}
	vm->entry = img.entry;
	vm->symtab = symtab_load(vm->image, err, sizeof(err));
	if (!vm->symtab) {
		vmm_error("%s", err);
		return VMPOKE_EXIT_USAGE;
	}
	s = symtab_find(vm->symtab, VMPOKE_SYM_PERCPU);
	if (!s) {
		vmm_error("%s: no symbol %s: not a vmpoke guest image", vm->image,
			  VMPOKE_SYM_PERCPU);
		return VMPOKE_EXIT_USAGE;
	}
	vm->percpu_sym = s;
	vm_build_page_tables(vm, vm_cpu_has(vm->cpuid, 0x80000001, 'd', 26));
	/* The last vCPU's block: the reader checks the symbol holds them all. */
	if (vmm_percpu_read(vm, vm->nr_vcpus - 1, &pc, err, sizeof(err))) {
		vmm_error("%s: %s", vm->image, err);
		return VMPOKE_EXIT_USAGE;
	}
	vm_write_boot_info(vm);
	return 0;
}

/*
 * The config's path, else the one VMPOKE_TRAP_PATH forces, else auto's
 * choice.  A forced debug-exit is probed too: on a KVM that never gives
 * KVM_EXIT_DEBUG for int3 it would silently fall to the guest's doorbell,
 * and a run forced onto path (a) must never pass on path (b).
 * 0 or exit code 3.
 */
static int vm_pick_trap_path(struct vm *vm)
{
	bool works = false, forced;

	/* Probe only where the answer matters: the doorbell always works. */
	if (vmm_trap_path_resolve(vm->cfg.trap_path, false, &forced) != VMM_TRAP_DOORBELL ||
	    !forced)
		works = kvm_check_ext(vm->kvm_fd, KVM_CAP_SET_GUEST_DEBUG) &&
			kvm_probe_int3_exit();
	vm->trap_path = vmm_trap_path_resolve(vm->cfg.trap_path, works, &forced);
	if (vm->trap_path != VMM_TRAP_DEBUG_EXIT || works)
		return 0;
	vmm_error("trap path debug-exit%s: this KVM does not give KVM_EXIT_DEBUG "
		  "for a guest int3 (probed; kvm_pvm and stock QEMU TCG never do); "
		  "use doorbell or auto", vm->cfg.trap_path == VMM_TRAP_AUTO ?
		  " (" VMM_TRAP_PATH_ENV ")" : "");
	return VMPOKE_EXIT_HOST;
}

static void vm_init_locks(struct vm *vm)
{
	pthread_mutex_init(&vm->ctl_lock, NULL);
	pthread_mutex_init(&vm->park_lock, NULL);
	pthread_cond_init(&vm->park_cond, NULL);
	pthread_mutex_init(&vm->end_lock, NULL);
	pthread_mutex_init(&vm->hc_lock, NULL);
	pthread_mutex_init(&vm->hook_lock, NULL);
	clock_cond_init(&vm->hc_cond);	/* vmm_wait_hcall's deadline */
	pthread_mutex_init(&vm->out_lock, NULL);
}

struct vm *vmm_create(const struct vm_config *cfg, int *exit_code)
{
	struct vm *vm;
	int code;

	*exit_code = VMPOKE_EXIT_USAGE;
	if (vm_check_config(cfg))
		return NULL;
	if (strlen(cfg->image) >= sizeof(vm->image)) {
		vmm_error("image path too long: %.64s...", cfg->image);
		return NULL;
	}
	*exit_code = VMPOKE_EXIT_HOST;
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		vmm_error("out of memory");
		return NULL;
	}
	vm->cfg = *cfg;
	strcpy(vm->image, cfg->image);
	vm->cfg.image = vm->image;
	vm->nr_vcpus = cfg->nr_vcpus;
	vm->kvm_fd = vm->vm_fd = -1;
	vm->result.vcpu = -1;
	atomic_store(&vm->check_fail_fatal, true);
	for (unsigned int i = 0; i < VMPOKE_MAX_VCPUS; i++)
		vm->vcpus[i].fd = vm->vcpus[i].stats_fd = -1;
	vm_init_locks(vm);
	atomic_store(&vm->sync_old, sync_old_env());	/* sync_prio.c */
	sync_install_kick();

	code = vm_open_kvm(vm);
	if (!code)
		code = vm_load_image(vm);
	if (code) {
		*exit_code = code;
		vmm_destroy(vm);
		return NULL;
	}
	code = vm_pick_trap_path(vm);
	if (code) {
		*exit_code = code;
		vmm_destroy(vm);
		return NULL;
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		if (vcpu_create(vm, i)) {
			vmm_destroy(vm);
			return NULL;
		}
	}
	sync_core_init(vm);
	*exit_code = VMPOKE_EXIT_OK;
	return vm;
}

/*
 * Join a vCPU thread that was told to stop, but never wait for ever.  A
 * thread leaves KVM_RUN on its kick (sync.c), yet one kvm_pvm host was
 * seen keeping vCPU threads inside KVM_RUN, deaf to kicks, with the RIP in
 * the #BP stub (docs/design.md, platform facts); and a trap hook that
 * blocks holds its thread outside KVM_RUN where no kick reaches it.
 * vmpoke must still exit: re-kick every 100 ms and, after
 * VM_JOIN_GIVEUP_MS, abandon the thread.  false: abandoned (detached).
 */
#define VM_JOIN_GIVEUP_MS	10000u

static bool vm_join_vcpu(struct vcpu *v)
{
	struct timespec ts;

	for (unsigned int waited = 0; waited < VM_JOIN_GIVEUP_MS; waited += 100) {
		clock_deadline(&ts, 100 * CLOCK_NS_PER_MS);
		if (pthread_clockjoin_np(v->thread, NULL, CLOCK_MONOTONIC, &ts) == 0)
			return true;
		sync_kick(v);
	}
	vmm_error("vcpu %u did not stop %u ms after being kicked; abandoning its "
		  "thread and leaking the VM it may still touch", v->id, VM_JOIN_GIVEUP_MS);
	pthread_detach(v->thread);
	return false;
}

void vmm_destroy(struct vm *vm)
{
	bool abandoned = false;

	if (!vm)
		return;
	atomic_store(&vm->stop_req, true);
	pthread_mutex_lock(&vm->park_lock);
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
	sync_kick_all(vm);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (atomic_load(&v->thread_live)) {
			if (!vm_join_vcpu(v)) {
				abandoned = true;
				continue;
			}
			atomic_store(&v->thread_live, false);
		}
	}
	/*
	 * An abandoned thread may still run on this VM's memory, kvm_run and
	 * hook records: leak all of it rather than free it under the thread.
	 */
	if (abandoned)
		return;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->run)
			munmap(v->run, vm->run_size);
		kvm_stats_close(v);
		if (v->fd >= 0)
			close(v->fd);
	}
	if (vm->ram.host)
		munmap(vm->ram.host, vm->ram.size);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->symtab)
		symtab_free(vm->symtab);
	free(vm->cpuid);
	pthread_mutex_destroy(&vm->ctl_lock);
	pthread_mutex_destroy(&vm->park_lock);
	pthread_cond_destroy(&vm->park_cond);
	pthread_mutex_destroy(&vm->end_lock);
	pthread_mutex_destroy(&vm->hc_lock);
	/* Every vCPU thread is joined: no hook can run, free them all. */
	vmm_set_trap_hook(vm, NULL, NULL);
	trap_hook_reclaim(vm, UINT64_MAX);
	pthread_mutex_destroy(&vm->hook_lock);
	pthread_cond_destroy(&vm->hc_cond);
	pthread_mutex_destroy(&vm->out_lock);
	free(vm);
}

unsigned int vmm_nr_vcpus(const struct vm *vm)
{
	return vm->nr_vcpus;
}

const struct symtab *vmm_symtab(const struct vm *vm)
{
	return vm->symtab;
}

enum vmm_trap_path vmm_trap_path(const struct vm *vm)
{
	return vm->trap_path;
}

void vmm_vcpu_stats(struct vm *vm, unsigned int id, struct vmm_vcpu_stats *st)
{
	struct vcpu *v;

	memset(st, 0, sizeof(*st));
	if (id >= vm->nr_vcpus)
		return;
	v = &vm->vcpus[id];
	st->exits = atomic_load(&v->exits);
	st->syncs_acked = atomic_load(&v->syncs_acked);
	st->traps = atomic_load(&v->traps);
	st->hcalls = atomic_load(&v->hcalls);
	st->kvm_stats = kvm_stats_irq_exits(v, &st->irq_exits);
	st->online = !atomic_load(&v->offline_req);
}

bool vmm_has_sync_regs(const struct vm *vm)
{
	return vm->sync_regs;
}
