/* SPDX-License-Identifier: MIT */
/*
 * boot.c - per-vCPU boot at CPL0.
 *
 * Every instruction here is emulated (see entry.S), so boot does the
 * minimum: validate the boot info, build this vCPU's GDT and TSS, (re)write
 * the shared IDT, program the LAPIC timer, lay out this vCPU's tasks, ring
 * READY and return the first task's context for entry.S to iretq into.
 *
 * The IDT is shared and every vCPU writes it at boot with the same 8-byte
 * words.  Memory never holds anything but the final gate values, so a vCPU
 * that already uses the IDT can never read a half-built gate, and no vCPU
 * has to wait for another (waiting at CPL0 would be emulated spinning).
 */
#include "guest.h"
#include "jump_label.h"

struct tss64 {
	uint32_t rsvd0;
	uint64_t rsp[3];
	uint64_t rsvd1;
	uint64_t ist[7];
	uint64_t rsvd2;
	uint16_t rsvd3;
	uint16_t iomap_base;
} __attribute__((packed));

_Static_assert(sizeof(struct tss64) == 104, "TSS is 104 bytes");

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

#define GATE_INTR	0x8e	/* present, DPL0, 64-bit interrupt gate */
#define GATE_INTR_USER	0xee	/* same, DPL3: CPL3 int3 may raise it */

#define LAPIC_SVR	0xf0
#define LAPIC_LVT_TIMER	0x320
#define LAPIC_TICR	0x380
#define LAPIC_TDCR	0x3e0
#define LAPIC_DIV_1	0xb
#define LAPIC_PERIODIC	(1u << 17)
#define LAPIC_ENABLE	(1u << 8)
/* KVM's LAPIC timer counts at 1 GHz with divide-by-1. */
#define LAPIC_HZ	1000000000u

static uint64_t gdt[VMPOKE_MAX_VCPUS][GDT_ENTRIES] __attribute__((aligned(16)));
static struct tss64 tss[VMPOKE_MAX_VCPUS] __attribute__((aligned(16)));
static uint64_t idt[256 * 2] __attribute__((aligned(16)));

uint8_t guest_kstacks[VMPOKE_MAX_VCPUS][KSTACK_SIZE] __attribute__((aligned(16)));
static uint8_t guest_ustacks[VMPOKE_MAX_VCPUS * VMPOKE_MAX_TASKS][USTACK_SIZE]
	__attribute__((aligned(16)));

struct guest_config guest_cfg;
uint32_t guest_tasks_per_vcpu;
uint32_t guest_vcpu_done_rung[VMPOKE_MAX_VCPUS];

struct vmpoke_percpu vmpoke_percpu[VMPOKE_MAX_VCPUS];

/* Static header: the VMM can validate the table before any vCPU booted. */
struct vmpoke_task_table vmpoke_tasks = {
	.magic = VMPOKE_TASKS_MAGIC,
	.version = VMPOKE_ABI_VERSION,
	.task_size = sizeof(struct vmpoke_task),
	.capacity = VMPOKE_MAX_VCPUS * VMPOKE_MAX_TASKS,
};

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static void __attribute__((noreturn)) halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt" : : : "memory");
}

static void __attribute__((noreturn)) boot_done(struct vmpoke_percpu *pc,
						uint64_t result)
{
	pc->mailbox.arg[0] = result;
	outl(VMPOKE_PORT_HCALL, VMPOKE_HC_DONE);
	halt_forever();
}

static int boot_info_valid(uint64_t vcpu, const struct vmpoke_boot_info *bi)
{
	/* anything but the agreed address may not even be mapped */
	return (uintptr_t)bi == VMPOKE_BOOT_INFO_GPA &&
	       bi->magic == VMPOKE_BOOT_MAGIC &&
	       bi->abi_version == VMPOKE_ABI_VERSION &&
	       bi->nr_vcpus >= 1 && bi->nr_vcpus <= VMPOKE_MAX_VCPUS &&
	       vcpu < bi->nr_vcpus &&
	       bi->tasks_per_vcpu >= 1 &&
	       bi->tasks_per_vcpu <= VMPOKE_MAX_TASKS &&
	       bi->scenario < VMPOKE_SCN_MAX &&
	       bi->mem_size >= (uint64_t)(uintptr_t)_end;
}

static uint64_t seg_desc(uint32_t access, uint32_t flags)
{
	/* base 0, limit 0xfffff (ignored in long mode except for data) */
	return 0xffffull | ((uint64_t)access << 40) |
	       (0xfull << 48) | ((uint64_t)flags << 52);
}

static void cpu_setup_gdt(uint64_t vcpu)
{
	uint64_t *g = gdt[vcpu];
	uint64_t base = (uintptr_t)&tss[vcpu];
	uint64_t limit = sizeof(struct tss64) - 1;
	struct desc_ptr dp = { sizeof(gdt[0]) - 1, (uintptr_t)g };

	tss[vcpu].rsp[0] = vmpoke_percpu[vcpu].rsp0;
	/*
	 * Faults are delivered on a stack of their own (IST1), the bottom
	 * FSTACK_SIZE bytes of this vCPU's kernel stack area (CPL0 never
	 * nests, so RSP0 use stays far above it).  Why: a fault at CPL0 with
	 * a broken %rsp would otherwise fault again pushing its frame, become
	 * a #DF that faults the same way, and end as a triple fault that KVM
	 * reports with every register reset.  On IST1 it is reported with its
	 * vector, RIP and RSP.  Fault handlers never return, so one is enough.
	 */
	tss[vcpu].ist[FAULT_IST - 1] = (uintptr_t)guest_kstacks[vcpu] + FSTACK_SIZE;
	tss[vcpu].iomap_base = sizeof(struct tss64);	/* no IO bitmap */

	g[0] = 0;
	g[GDT_KERNEL_CS >> 3] = seg_desc(0x9a, 0xa);	/* L=1, G=1 */
	g[GDT_KERNEL_DS >> 3] = seg_desc(0x92, 0xc);
	g[GDT_USER_DS >> 3] = seg_desc(0xf2, 0xc);
	g[GDT_USER_CS >> 3] = seg_desc(0xfa, 0xa);
	g[GDT_TSS >> 3] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
			  (0x89ull << 40) | (((base >> 24) & 0xff) << 56);
	g[(GDT_TSS >> 3) + 1] = base >> 32;

	__asm__ volatile("lgdt %0" : : "m"(dp) : "memory");
	__asm__ volatile("movl %0, %%ds; movl %0, %%es; movl %0, %%ss"
			 : : "r"(GDT_KERNEL_DS) : "memory");
	__asm__ volatile("ltr %w0" : : "r"(GDT_TSS) : "memory");
}

static void idt_set(unsigned int vec, uint64_t handler, uint32_t type,
		    unsigned int ist)
{
	idt[2 * vec] = (handler & 0xffff) | ((uint64_t)GDT_KERNEL_CS << 16) |
		       ((uint64_t)ist << 32) | ((uint64_t)type << 40) |
		       (((handler >> 16) & 0xffff) << 48);
	idt[2 * vec + 1] = handler >> 32;
}

static void cpu_setup_idt(void)
{
	struct desc_ptr dp = { sizeof(idt) - 1, (uintptr_t)idt };
	unsigned int v;

	/*
	 * #BP and #DB resume, and the VMM finds their frame on the kernel
	 * stack (the probe shadow reads it there), so they keep RSP0.
	 */
	for (v = 0; v < 32; v++)
		idt_set(v, guest_exc_stubs[v],
			v == 3 ? GATE_INTR_USER : GATE_INTR,
			v == 1 || v == 3 ? 0 : FAULT_IST);
	idt_set(VEC_TIMER, (uintptr_t)guest_timer_entry, GATE_INTR, 0);
	idt_set(VEC_SPURIOUS, (uintptr_t)guest_spurious_entry, GATE_INTR, 0);
	__asm__ volatile("lidt %0" : : "m"(dp) : "memory");
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(VMPOKE_LAPIC_GPA + reg) = v;
}

/*
 * The LAPIC is only touched when a tick is wanted, so a VMM that runs
 * hz=0 needs no in-kernel irqchip.  The VMM computes the initial count
 * for divide-by-1; without it we assume KVM's 1 GHz APIC timer clock.
 */
static void cpu_setup_timer(const struct vmpoke_boot_info *bi)
{
	uint32_t count = bi->lapic_timer_div_ticks;

	if (!bi->hz)
		return;
	if (!count)
		count = LAPIC_HZ / bi->hz ? LAPIC_HZ / bi->hz : 1;
	lapic_write(LAPIC_SVR, LAPIC_ENABLE | VEC_SPURIOUS);
	lapic_write(LAPIC_TDCR, LAPIC_DIV_1);
	lapic_write(LAPIC_LVT_TIMER, LAPIC_PERIODIC | VEC_TIMER);
	lapic_write(LAPIC_TICR, count);
}

static void task_setup(struct vmpoke_task *t, uint32_t vcpu, uint32_t slot,
		       guest_task_fn fn)
{
	uint32_t id = vcpu * VMPOKE_MAX_TASKS + slot;
	uint64_t top = (uintptr_t)guest_ustacks[id] + USTACK_SIZE;

	memset(t, 0, sizeof(*t));
	t->vcpu = vcpu;
	t->id = id;
	t->ctx.rip = (uintptr_t)fn;
	t->ctx.cs = GDT_USER_CS;
	t->ctx.rflags = 0x202;			/* IF */
	t->ctx.rsp = top - 8;			/* as if called: (rsp+8) % 16 == 0 */
	t->ctx.ss = GDT_USER_DS;
	t->ctx.rdi = (uintptr_t)t;
	t->last_check.task = -1;
	/* ctx.rbp = 0 and a zero return slot: where the VMM's stack walk ends */
	t->stack_lo = (uintptr_t)guest_ustacks[id];
	t->stack_hi = top;
	/* context before state: RUNNABLE promises a whole context */
	__asm__ volatile("" : : : "memory");
	t->state = VMPOKE_TASK_RUNNABLE;
}

static void __attribute__((noreturn)) ping(struct vmpoke_percpu *pc,
					   uint64_t n)
{
	uint64_t i;

	for (i = 0; !n || i < n; i++)
		outl(VMPOKE_PORT_HCALL, VMPOKE_HC_NOP);
	boot_done(pc, VMPOKE_RESULT_OK);
}

extern uint64_t cpl0_site_call_a(uint64_t x);
extern uint64_t cpl0_site_call_b(uint64_t x);

static int cpl0_result_ok(uint64_t x, uint64_t r)
{
	return r == x + 0x100 || r == x + 0x200;
}

/*
 * Scenario CPL0: call the CALL sites in kernel text (cpl0_sites.S) for
 * ever (or `iterations` times) at CPL0, IF=0, and check every result: a
 * patch that loses the return address, skips the CALL or tears it ends the
 * run with a check failure or a fault.
 */
static void __attribute__((noreturn)) cpl0_loop(struct vmpoke_percpu *pc, uint64_t n)
{
	static const char what[] = "cpl0 call site";
	uint64_t i, ra, rb;

	outl(VMPOKE_PORT_HCALL, VMPOKE_HC_READY);
	for (i = 0; !n || i < n; i++) {
		ra = cpl0_site_call_a(i);
		rb = cpl0_site_call_b(i);
		if (!cpl0_result_ok(i, ra) || !cpl0_result_ok(i, rb)) {
			struct vmpoke_check *c = &pc->mailbox.check;
			int bad_a = !cpl0_result_ok(i, ra);

			c->site = (uintptr_t)(bad_a ? cpl0_site_call_a : cpl0_site_call_b);
			c->expected = i + 0x100;
			c->actual = bad_a ? ra : rb;
			c->vcpu = pc->vcpu;
			c->task = -1;
			memcpy(c->what, what, sizeof(what));
			outl(VMPOKE_PORT_HCALL, VMPOKE_HC_CHECK_FAIL);
			halt_forever();
		}
	}
	boot_done(pc, VMPOKE_RESULT_OK);
}

static const char boot_banner[] = "guest online, tasks starting";

struct vmpoke_task_ctx *guest_boot(uint64_t vcpu,
				   const struct vmpoke_boot_info *bi)
{
	struct vmpoke_percpu *pc = &vmpoke_percpu[vcpu];
	struct vmpoke_task *first;
	uint32_t slot, n;

	pc->rsp0 = (uintptr_t)guest_kstacks[vcpu] + KSTACK_SIZE;
	pc->vcpu = vcpu;
	pc->current_task = -1;
	if (!boot_info_valid(vcpu, bi))
		boot_done(pc, VMPOKE_RESULT_BAD_BOOT);

	cpu_setup_gdt(vcpu);
	cpu_setup_idt();
	if (bi->scenario == VMPOKE_SCN_TRIPLE && vcpu == 0)
		guest_triple_fault();
	if (bi->scenario == VMPOKE_SCN_EMUFAIL && vcpu == 0)
		guest_emulation_failure();
	if (bi->scenario == VMPOKE_SCN_BADSTACK && vcpu == 0)
		guest_bad_stack();
	if (bi->scenario == VMPOKE_SCN_PING)
		ping(pc, bi->iterations);
	if (vcpu == 0)
		jl_boot_corrupt();
	if (bi->scenario == VMPOKE_SCN_CPL0)
		cpl0_loop(pc, bi->iterations);

	n = bi->tasks_per_vcpu;
	guest_cfg.scenario = bi->scenario;
	guest_cfg.hz = bi->hz;
	guest_cfg.nr_vcpus = bi->nr_vcpus;
	guest_cfg.tasks_per_vcpu = n;
	guest_cfg.iterations = bi->iterations;
	guest_cfg.seed = bi->seed;
	guest_tasks_per_vcpu = n;
	guest_vcpu_done_rung[vcpu] = 0;
	vmpoke_tasks.nr_tasks = bi->nr_vcpus * VMPOKE_MAX_TASKS;

	for (slot = 0; slot < n; slot++)
		task_setup(&vmpoke_tasks.tasks[vcpu * VMPOKE_MAX_TASKS + slot],
			   vcpu, slot,
			   guest_task_entry(bi->scenario, vcpu, slot));

	first = &vmpoke_tasks.tasks[vcpu * VMPOKE_MAX_TASKS];
	first->switches = 1;
	first->state = VMPOKE_TASK_RUNNING;
	pc->current_task = first->id;

	cpu_setup_timer(bi);
	/*
	 * One console line per vCPU: cheap (one rep movsb at emulated CPL0)
	 * and it shows the user every vCPU really came up.
	 */
	memcpy(pc->mailbox.text, boot_banner, sizeof(boot_banner));
	outl(VMPOKE_PORT_HCALL, VMPOKE_HC_PUTS);
	outl(VMPOKE_PORT_HCALL, VMPOKE_HC_READY);
	return &first->ctx;
}
