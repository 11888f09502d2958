/* SPDX-License-Identifier: MIT */
/*
 * vmpoke_abi.h - the one contract between the VMM (vmm/) and our guest
 * kernel (guest/).  Both sides include this file and nothing else of each
 * other.  Keep it small, fixed-width and versioned: the VMM reads guest
 * memory laid out by these structs, so every guest-supplied value is
 * bounds-checked on the host side before use.
 *
 * This header is included by freestanding guest code, so it uses only
 * compiler-provided types.
 */
#ifndef VMPOKE_ABI_H
#define VMPOKE_ABI_H

#include <stdint.h>

/*
 * Version 3 (livepatch): struct vmpoke_task gained patch_state (where pad
 * was) and stack_lo/stack_hi at its end (task_size 272 -> 288), and
 * livepatch targets may carry a struct vmpoke_klp_func (see below).
 */
#define VMPOKE_ABI_VERSION	3
#define VMPOKE_BOOT_MAGIC	0x4b4f50564d504b56ull	/* "VKPMVPOK" */
#define VMPOKE_TASKS_MAGIC	0x534b534154504d56ull	/* "VMPTASKS" */

#define VMPOKE_MAX_VCPUS	64
#define VMPOKE_MAX_TASKS	8	/* per vCPU */
/* vmpoke_task_table.capacity: exactly this, or the VMM refuses the table. */
#define VMPOKE_TASKS_CAPACITY	(VMPOKE_MAX_VCPUS * VMPOKE_MAX_TASKS)

/*
 * Guest-physical layout.  The VMM builds the page tables before the first
 * KVM_RUN and every vCPU starts in long mode with CR3 = VMPOKE_PML4_GPA:
 *   [0, 2 MiB)    4 KiB pages (PT at VMPOKE_PT_GPA); page 0 is not present
 *                 so NULL dereferences fault;
 *   [2 MiB, 1 GiB) 2 MiB pages;
 *   [1 GiB, 4 GiB) 1 GiB pages (covers the MMIO doorbell and the LAPIC).
 * All mappings are identity (GVA == GPA), writable, and user-accessible:
 * the CPL3 workloads call into shared code and this is a test kernel, not
 * an isolation boundary.  The image is linked at VMPOKE_IMAGE_BASE so the
 * guest's patchable text lives in the 4 KiB-mapped region, where a patch
 * site can straddle a real translation boundary.
 */
#define VMPOKE_PML4_GPA		0x1000ull
#define VMPOKE_PDPT_GPA		0x2000ull
#define VMPOKE_PD_GPA		0x3000ull
#define VMPOKE_PT_GPA		0x4000ull
#define VMPOKE_BOOT_INFO_GPA	0x6000ull
#define VMPOKE_LOW_RESERVED_END	0x100000ull	/* images load at or above */
#define VMPOKE_IMAGE_BASE	0x100000ull
#define VMPOKE_LAPIC_GPA	0xfee00000ull

/*
 * CPL3 doorbell: a store to a GPA that has no memslot exits with
 * KVM_EXIT_MMIO (CPL3 cannot use port IO on our KVM: IOPL is forced to 0).
 * The VMM decodes the command from the offset and the argument from the
 * stored 8-byte value.  The vCPU is known from the exiting thread.
 */
#define VMPOKE_MMIO_BASE	0xd0000000ull
#define VMPOKE_MMIO_SIZE	0x1000ull
#define VMPOKE_MMIO_CMD(cmd)	(VMPOKE_MMIO_BASE + 8ull * (cmd))

/*
 * CPL0 doorbells: port IO is the cheapest exit.  Ports below 0x100 so the
 * stubs can use the imm8 forms and clobber only %al.
 *  - VMPOKE_PORT_BP: the #BP stub does "inb $VMPOKE_PORT_BP, %al" with the
 *    exception frame at %rsp + 8 (it pushed %rax).  The VMM answers with a
 *    verdict: RESUME (frame possibly rewritten, iretq) or FOREIGN (not ours,
 *    hand on to the guest's own #BP handler).
 *  - VMPOKE_PORT_DB: the same for #DB.
 *  - VMPOKE_PORT_HCALL: "outl %eax, $VMPOKE_PORT_HCALL" with %eax = an
 *    enum vmpoke_hcall and the arguments in this vCPU's mailbox.
 */
#define VMPOKE_PORT_BP		0xe0
#define VMPOKE_PORT_DB		0xe1
#define VMPOKE_PORT_HCALL	0xe2

enum vmpoke_bp_verdict {
	VMPOKE_BP_RESUME	= 0,
	VMPOKE_BP_FOREIGN	= 1,
};

/* Commands for both the port hypercall (CPL0) and the MMIO doorbell (CPL3). */
enum vmpoke_hcall {
	VMPOKE_HC_NOP		= 0,	/* round-trip probe; no effect */
	VMPOKE_HC_PUTS		= 1,	/* mailbox.text, NUL-terminated */
	VMPOKE_HC_DONE		= 2,	/* mailbox.arg[0] = result code (0 ok) */
	VMPOKE_HC_FAULT		= 3,	/* mailbox.fault filled */
	VMPOKE_HC_CHECK_FAIL	= 4,	/* CPL3: MMIO arg = task id, task.last_check filled */
	VMPOKE_HC_READY		= 5,	/* vCPU finished boot, tasks running */
	VMPOKE_HC_TASK_DONE	= 6,	/* MMIO arg = global task id */
	VMPOKE_HC_LAB_DONE	= 7,	/* MMIO arg = vmpoke_lab.seq_done */
	/*
	 * MMIO only, and only from VMM-written code: an optimized probe's
	 * detour with a handler stores %rax here as its first instruction,
	 * so every register is still the probed context's.  The guest never
	 * rings it itself.
	 */
	VMPOKE_HC_PROBE		= 8,
	VMPOKE_HC_MAX,
};

/* Guest result codes carried by VMPOKE_HC_DONE. */
enum vmpoke_result {
	VMPOKE_RESULT_OK	= 0,
	VMPOKE_RESULT_SELFCHECK	= 1,
	VMPOKE_RESULT_BAD_BOOT	= 2,
};

/* Workloads, selected by the VMM through the boot-info block. */
enum vmpoke_scenario {
	VMPOKE_SCN_HOT		= 0,	/* tasks call patchable functions */
	VMPOKE_SCN_UD		= 1,	/* a task executes ud2 */
	VMPOKE_SCN_PF		= 2,	/* a task touches unmapped memory */
	VMPOKE_SCN_TRIPLE	= 3,	/* CPL0 destroys its IDT and faults */
	VMPOKE_SCN_SELFCHECK	= 4,	/* a task reports a check failure */
	VMPOKE_SCN_INT3		= 5,	/* tasks run their own int3s, counted */
	VMPOKE_SCN_TORTURE	= 6,	/* every patch-site kind, hot */
	VMPOKE_SCN_PING		= 7,	/* CPL0 hypercall NOP loop (bench) */
	VMPOKE_SCN_IDLE		= 8,	/* tasks hlt-free idle loop at CPL3 */
	VMPOKE_SCN_LAB		= 9,	/* task 0 runs vmpoke_lab requests */
	VMPOKE_SCN_EMUFAIL	= 10,	/* CPL0 x87 store to MMIO: KVM cannot
					 * emulate it (KVM_EXIT_INTERNAL_ERROR) */
	VMPOKE_SCN_BADSTACK	= 11,	/* CPL0 faults with an unmapped %rsp:
					 * reported from the IST fault stack */
	VMPOKE_SCN_CPL0		= 12,	/* every vCPU calls CALL sites in kernel
					 * text at CPL0, checked (no tasks) */
	VMPOKE_SCN_LIVEPATCH	= 13,	/* TORTURE, but the last task of vCPU 0
					 * sleeps inside lp_sleep half the time
					 * (a livepatch straggler) */
	VMPOKE_SCN_MAX,
};

/*
 * Boot info, written by the VMM at VMPOKE_BOOT_INFO_GPA before the first
 * KVM_RUN.  Each vCPU starts at the ELF entry with %rdi = its vCPU id and
 * %rsi = VMPOKE_BOOT_INFO_GPA, %rsp = 0 (the guest picks its own stack).
 */
struct vmpoke_boot_info {
	uint64_t magic;			/* VMPOKE_BOOT_MAGIC */
	uint32_t abi_version;		/* VMPOKE_ABI_VERSION */
	uint32_t nr_vcpus;
	uint32_t tasks_per_vcpu;	/* 1..VMPOKE_MAX_TASKS */
	uint32_t scenario;		/* enum vmpoke_scenario */
	uint32_t hz;			/* scheduler tick, 0 = no preemption */
	uint32_t lapic_timer_div_ticks;	/* LAPIC initial count for hz */
	uint64_t mem_size;		/* bytes of guest RAM at GPA 0 */
	uint64_t iterations;		/* per task; 0 = run until stopped */
	uint64_t seed;
};

/*
 * Register state of a task that is not running.  The scheduler saves the
 * interrupted CPL3 context here on every switch.  The shadow check reads
 * .rip of every saved context, so the field order is ABI.
 */
struct vmpoke_task_ctx {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	/* hardware interrupt frame, as pushed on entry to CPL0 */
	uint64_t rip, cs, rflags, rsp, ss;
};

enum vmpoke_task_state {
	VMPOKE_TASK_UNUSED	= 0,
	VMPOKE_TASK_RUNNABLE	= 1,	/* ctx is valid */
	VMPOKE_TASK_RUNNING	= 2,	/* ctx is stale; the vCPU has it */
	VMPOKE_TASK_DONE	= 3,
};

/* What a failed self-check carries (VMPOKE_HC_CHECK_FAIL, MMIO arg = task). */
struct vmpoke_check {
	uint64_t site;			/* address of the code that misbehaved */
	uint64_t expected, actual;
	uint32_t vcpu;
	int32_t task;
	char what[32];
};

struct vmpoke_task {
	uint32_t state;			/* enum vmpoke_task_state */
	uint32_t vcpu;
	uint32_t id;			/* global: vcpu * MAX_TASKS + slot */
	uint32_t patch_state;		/* VMPOKE_PATCH_*; written by the VMM only */
	struct vmpoke_task_ctx ctx;
	uint64_t iterations;		/* workload loops completed */
	uint64_t check_failures;
	uint64_t own_int3;		/* int3s this task executed itself */
	uint64_t switches;		/* times scheduled in */
	struct vmpoke_check last_check;	/* filled before CHECK_FAIL */
	/*
	 * This task's CPL3 stack, [stack_lo, stack_hi): the bounds of the
	 * VMM's frame-pointer walk (livepatch).  The task starts with
	 * %rsp = stack_hi - 8 and %rbp = 0, and its first frame's saved %rbp
	 * and return slot are 0: that is where a walk ends, reliably.
	 */
	uint64_t stack_lo, stack_hi;
};

/*
 * patch_state (since ABI version 3), livepatch's per-task state
 * (kernel/livepatch/transition.c).  Bit 0: the task runs the patched
 * functions of the livepatch in transition (the redirect stub at an old
 * function's entry tests it for the current task, %gs:current_task).  The
 * VMM changes a task's bit only while the task is not running on any vCPU
 * (every vCPU paused) and, unless forced, while a frame-pointer walk of its
 * saved stack shows no frame in the body being replaced.  Before a
 * transition starts it sets every task to the initial state; force() sets
 * every task, running or not, to the target and ors in FORCED, telling the
 * guest's checks that this one switch was not made safe.
 */
#define VMPOKE_PATCH_UNPATCHED	0u
#define VMPOKE_PATCH_PATCHED	1u
#define VMPOKE_PATCH_FORCED	0x80000000u
#define VMPOKE_PATCH_VALID	(VMPOKE_PATCH_PATCHED | VMPOKE_PATCH_FORCED)
/* The most a task's stack may span (stack_hi - stack_lo). */
#define VMPOKE_TASK_STACK_MAX	(1u << 20)

/*
 * Exported by the guest as the symbol "vmpoke_tasks".  Bounded and
 * versioned: the VMM checks magic, version, capacity, nr_tasks <= capacity,
 * task_size == sizeof(struct vmpoke_task) and the symbol's size before
 * reading any entry (include/guest_tables.h).
 */
struct vmpoke_task_table {
	uint64_t magic;			/* VMPOKE_TASKS_MAGIC */
	uint32_t version;		/* VMPOKE_ABI_VERSION */
	uint32_t task_size;		/* sizeof(struct vmpoke_task) */
	uint32_t capacity;		/* VMPOKE_TASKS_CAPACITY */
	uint32_t nr_tasks;		/* entries in use */
	struct vmpoke_task tasks[VMPOKE_TASKS_CAPACITY];
};

/* What a guest fault report carries (VMPOKE_HC_FAULT). */
struct vmpoke_fault {
	uint64_t vector, error_code, rip, cr2, rsp;
	uint32_t vcpu;
	int32_t task;			/* global task id, -1 if none */
};

/*
 * One per vCPU, exported as the array "vmpoke_percpu".  The kernel stack
 * top (TSS.RSP0) is here so the VMM can find the exception or interrupt
 * frames in flight without KVM_GET_REGS of the guest's stack.
 *
 * CPL0 frames.  All gates are interrupt gates (CPL0 runs with IF=0), so a
 * vCPU at CPL0 holds at most VMPOKE_CPL0_MAX_FRAMES resumable frames, a
 * chain the VMM walks innermost first:
 *  1. the entry frame, at rsp0 - VMPOKE_CPL0_FRAME_SIZE: every interrupt
 *     or exception taken at CPL3 (the timer, a task's #BP) pushes it
 *     there, with a CS whose RPL is 3;
 *  2. a #BP frame from CPL0, nested under the timer's entry frame: the
 *     timer calls kernel text outside the entry text (sched_tick_hook() and
 *     the static call sc_tick, guest/sched_call.c), and where the host
 *     traps a CPL0 INT3 and patches those sites with breakpoints, a hit
 *     there enters the #BP stub at CPL0.  The CPU pushes that frame on the
 *     kernel stack below the entry frame (CS RPL 0); it exists only while
 *     the vCPU runs VMPOKE_SYM_BP_ENTRY or VMPOKE_SYM_BP_HANDLER, which
 *     address it through %rsp only, so the VMM finds it by decoding the
 *     stub at the vCPU's RIP.
 * The walk: the stub's frame, if the RIP is in a stub; then the entry
 * frame, unless the stub's frame is the entry frame itself (CS RPL 3, or
 * the same address).  Nothing else nests: the entry text holds no INT3,
 * nothing single-steps, and the timer never interrupts CPL0.  A CPL0 trap
 * with no entry frame under it (boot, VMPOKE_SCN_CPL0) leaves stale words
 * in the entry slot: reading them can make the shadow check wait, never
 * miss a context.  Every frame address is a guest value: read only where
 * it translates to RAM.
 */
/* The frame an interrupt or exception pushes: rip, cs, rflags, rsp, ss. */
#define VMPOKE_CPL0_FRAME_SIZE	40
#define VMPOKE_CPL0_MAX_FRAMES	2
struct vmpoke_percpu {
	uint64_t rsp0;			/* top of this vCPU's kernel stack */
	uint32_t vcpu;
	int32_t current_task;		/* global task id, -1 at boot */
	uint64_t ticks;
	uint64_t foreign_bp;		/* #BPs handed on to the guest */
	union {
		char text[256];
		uint64_t arg[4];
		struct vmpoke_fault fault;
		struct vmpoke_check check;
	} mailbox;
};

/*
 * Patch sites the guest offers to the torture test, exported as the symbol
 * "vmpoke_sites".  Every site is an instruction boundary inside a function
 * in the symbol table, and every variant below is semantically legal: the
 * workload checks each result against the set its variants may return.
 */
enum vmpoke_site_kind {
	VMPOKE_SITE_NOP5_JMP32	= 1,	/* orig NOP5; alt JMP rel32 -> target[0] */
	VMPOKE_SITE_NOP2_JMP8	= 2,	/* orig NOP2 (66 90); alt JMP rel8 -> target[0] */
	VMPOKE_SITE_CALL32	= 3,	/* orig CALL rel32 -> target[0]; alts target[1..] */
	VMPOKE_SITE_JCC32	= 4,	/* orig Jcc rel32 -> target[0]; alts target[1..] */
	VMPOKE_SITE_MULTI	= 5,	/* orig: >1 insns, len bytes; alt JMP rel32 ->
					 * target[0], an equivalent block that jumps
					 * back to addr + len */
};

#define VMPOKE_MAX_SITES	64
#define VMPOKE_SITE_MAX_LEN	16	/* bytes a site's variants occupy, at most */
#define VMPOKE_SITE_MAX_TARGETS	4
#define VMPOKE_SITES_MAGIC	0x5345544953504d56ull	/* "VMPSITES" */

struct vmpoke_site_desc {
	uint64_t addr;
	uint32_t kind;			/* enum vmpoke_site_kind */
	uint32_t len;			/* bytes the variants occupy */
	uint32_t nr_targets;		/* 1..VMPOKE_SITE_MAX_TARGETS */
	uint32_t flags;			/* VMPOKE_SITEF_* (informational) */
	uint64_t target[VMPOKE_SITE_MAX_TARGETS];
};

#define VMPOKE_SITEF_STRADDLE_8		0x1	/* crosses an 8-byte boundary */
#define VMPOKE_SITEF_STRADDLE_LINE	0x2	/* crosses a 64-byte line */
#define VMPOKE_SITEF_STRADDLE_PAGE	0x4	/* crosses a 4 KiB page */

struct vmpoke_site_table {
	uint64_t magic;			/* VMPOKE_SITES_MAGIC */
	uint32_t version;		/* VMPOKE_ABI_VERSION */
	uint32_t nr_sites;		/* <= VMPOKE_MAX_SITES */
	struct vmpoke_site_desc sites[VMPOKE_MAX_SITES];
};

/*
 * The emulation lab (VMPOKE_SCN_LAB), exported as "vmpoke_lab".  Task 0 on
 * vCPU 0 waits at CPL3 for seq_req != seq_done, loads rflags_in's
 * arithmetic flags, records its %rsp in rsp_at_site and executes the
 * 8-byte site at symbol "lab_site" (host-written; initially NOP8).  Each
 * landing pad records where control arrived:
 *   lab_fall  (lab_site + 8)   path = 1
 *   lab_taken                  path = 2
 *   lab_callee                 path = 3, ret_addr = [rsp], rsp_in_callee
 *                              (then returns to its return address)
 *   lab_ret_target             path = 4 (the site may RET: the task pushes
 *                              lab_ret_target before running the site)
 * then sets seq_done = seq_req and rings VMPOKE_HC_LAB_DONE.
 * "path" accumulates digits (path = path * 10 + pad) so a CALL that returns
 * and falls through reads 31.
 *
 * Registers and stack, for the probe emulation set (LOOP, PUSH/POP, call
 * *%reg...): after loading the flags the task plants regs_in into %rax
 * %rcx %rdx %rsi %rdi %r8-%r11 %r13-%r15 (VMPOKE_LAB_REGS; %rbx, %rbp,
 * %r12 are the lab's own) and stack_in[i] at rsp_at_site - 8 * (3 - i)
 * (below lab_ret_target, which [rsp_at_site] holds).  The first thing
 * every pad does is store those registers in regs_out, %rsp in rsp_out
 * and the words at rsp_at_site - 24 .. rsp_at_site + 8 in stack_out.
 */
#define VMPOKE_LAB_SITE_LEN	8
#define VMPOKE_LAB_REGS		12	/* rax rcx rdx rsi rdi r8 r9 r10 r11 r13 r14 r15 */
#define VMPOKE_LAB_STACK_IN	3
#define VMPOKE_LAB_STACK_OUT	5
/* The lab's labels (guest/lab.S), as the host finds them. */
#define VMPOKE_SYM_LAB_SITE		"lab_site"
#define VMPOKE_SYM_LAB_FALL		"lab_fall"
#define VMPOKE_SYM_LAB_TAKEN		"lab_taken"
#define VMPOKE_SYM_LAB_CALLEE		"lab_callee"
#define VMPOKE_SYM_LAB_RET_TARGET	"lab_ret_target"
struct vmpoke_lab {
	uint64_t seq_req;
	uint64_t seq_done;
	uint64_t rflags_in;
	uint64_t rflags_out;
	uint64_t path;
	uint64_t rsp_at_site;
	uint64_t rsp_in_callee;
	uint64_t ret_addr;
	uint64_t regs_in[VMPOKE_LAB_REGS];
	uint64_t regs_out[VMPOKE_LAB_REGS];
	uint64_t rsp_out;
	uint64_t stack_in[VMPOKE_LAB_STACK_IN];
	uint64_t stack_out[VMPOKE_LAB_STACK_OUT];
};

/*
 * `vmpoke bench poke`'s sites (guest/bench_sites.S): functions
 * "bench_pad_0" .. "bench_pad_<VMPOKE_BENCH_PAD_FUNCS - 1>", each
 * VMPOKE_BENCH_PAD_PER_FUNC NOP5s and a RET, that nothing executes.
 */
#define VMPOKE_SYM_BENCH_PAD_FMT	"bench_pad_%u"
#define VMPOKE_BENCH_PAD_FUNCS		64
#define VMPOKE_BENCH_PAD_PER_FUNC	64

/*
 * Static keys and jump labels, in the Linux kernel's x86-64 format
 * (include/linux/jump_label.h, arch/x86/include/asm/jump_label.h).
 *
 * The image's "__jump_table" section holds 16-byte, 8-aligned entries
 * whose fields are each relative to their own address:
 *   code   = &e->code + e->code          the 2- or 5-byte site
 *   target = &e->target + e->target      where the JMP form goes
 *   key    = &e->key + (e->key & ~3)     a struct vmpoke_static_key
 * Key bit 0 is "branch" (static_branch_likely() sites), bit 1 "init".
 * A site is JMP (EB rel8 / E9 rel32 to target) when enabled ^ branch, else
 * NOP (66 90 / 0f 1f 44 00 00), as jump_label_type() decides.  The VMM
 * flips a key from outside: it makes seq odd, rewrites every site of the
 * key in one batch, writes enabled with the heads, and makes seq even
 * again.  A guest check that reads seq even and unchanged around
 * "read enabled, run the site" must see the branch enabled names; while
 * seq is odd, or moved, either way is correct (a seqlock).
 */
struct vmpoke_static_key {
	int32_t enabled;		/* atomic_t: > 0 is true */
	uint32_t seq;			/* odd while the VMM flips the key */
	uint64_t type;			/* bit 0: initially true */
};

struct vmpoke_jump_entry {
	int32_t code;
	int32_t target;
	int64_t key;			/* | VMPOKE_JUMP_BRANCH | VMPOKE_JUMP_INIT */
};

#define VMPOKE_JUMP_BRANCH	1ll
#define VMPOKE_JUMP_INIT	2ll
#define VMPOKE_SEC_JUMP_TABLE	"__jump_table"

/*
 * Static calls, in the kernel's x86-64 format (static_call.h,
 * arch/x86/kernel/static_call.c).  For a call NAME:
 *   __SCT__NAME  the trampoline, 4-aligned: E9 rel32 (JMP to the current
 *                function) or the NULL form C3 CC 90 90 90 (ret; int3;
 *                nops; after an update C3 CC CC CC CC), then the signature
 *                0f b9 cc (ud1 %esp, %ecx) at +5;
 *   __SCK__NAME  struct vmpoke_static_call_key: func (0 = NULL), and a
 *                seq the VMM makes odd while it updates the call;
 *   ".static_call_sites": {s32 addr, s32 key | TAIL | INIT}, each relative
 *                to its own address: a direct CALL site (E8 rel32, or NOP5
 *                when NULL) or, with TAIL, a JMP (E9 rel32, or C3 CC CC CC
 *                CC when NULL);
 *   ".static_call_targets": {s32 key, s32 func}, relative likewise: the
 *                functions the call may be pointed at (vmpoke's own; the
 *                kernel does not restrict them).
 */
struct vmpoke_static_call_key {
	uint64_t func;
	uint32_t seq;			/* odd while the VMM updates the call */
	uint32_t pad;
};

struct vmpoke_static_call_site {
	int32_t addr;
	int32_t key;			/* | VMPOKE_SC_TAIL | VMPOKE_SC_INIT */
};

struct vmpoke_static_call_target {
	int32_t key;
	int32_t func;
};

#define VMPOKE_SC_TAIL		1
#define VMPOKE_SC_INIT		2
#define VMPOKE_SC_TRAMP_PREFIX	"__SCT__"
#define VMPOKE_SC_KEY_PREFIX	"__SCK__"
#define VMPOKE_SEC_SC_SITES	".static_call_sites"
#define VMPOKE_SEC_SC_TARGETS	".static_call_targets"

#define VMPOKE_SYM_SITES	"vmpoke_sites"
#define VMPOKE_SYM_LAB		"vmpoke_lab"
#define VMPOKE_SYM_TASKS	"vmpoke_tasks"
#define VMPOKE_SYM_PERCPU	"vmpoke_percpu"
/*
 * The #BP stub (the doorbell, see VMPOKE_PORT_BP) and the guest's own #BP
 * handler it hands foreign traps to: both are entered with an exception
 * frame at %rsp, and the VMM decodes them to find that frame at any
 * instruction.  The VMM may move the stub's stack (saved %rax and frame)
 * down at the doorbell, the int3 stack gap (vmm/trap.c), so the stub must
 * address its frame through %rsp only.
 */
#define VMPOKE_SYM_BP_ENTRY	"guest_bp_entry"
#define VMPOKE_SYM_BP_HANDLER	"guest_bp_handler"
/*
 * Which text runs at which privilege.  [start, end) of VMPOKE_SYM_USER_TEXT
 * is the CPL3 task text: the sites and everything the tasks execute.  Every
 * other executable byte of the image is kernel (CPL0) text: boot, the trap
 * stubs, the scheduler and the library they call.  The VMM patches kernel
 * text without INT3 (stop-the-world) where the host cannot trap a CPL0 INT3
 * (vmm_cpl0_int3_trappable()); a guest without these symbols is all
 * kernel text to it.
 */
#define VMPOKE_SYM_USER_TEXT_START	"__user_text_start"
#define VMPOKE_SYM_USER_TEXT_END	"__user_text_end"
/* [start, end) of text that runs on the trap path: never patchable. */
#define VMPOKE_SYM_ENTRY_START	"__entry_text_start"
#define VMPOKE_SYM_ENTRY_END	"__entry_text_end"
/*
 * [start, end) of the VMM-owned executable region (since ABI version 2):
 * page aligned, inside the image's text segment (so within +-2 GB of all
 * guest text and executable at CPL3 and CPL0), filled with INT3.  The
 * guest never writes or jumps into it; the VMM puts out-of-line probe
 * slots there (later: optimized-probe detours).  The VMM checks its
 * bounds against the image and VMPOKE_XOL_MAX_SIZE before using it.
 */
#define VMPOKE_SYM_XOL_START	"__xol_start"
#define VMPOKE_SYM_XOL_END	"__xol_end"
#define VMPOKE_XOL_MAX_SIZE	(1u << 20)

/*
 * Livepatch (since ABI version 3).  A livepatchable function starts with
 * the 5-byte NOP 0f 1f 44 00 00 (gcc -pg -mfentry -mnop-mcount, the
 * kernel's fentry site) and lives in the CPL3 task text; its replacements
 * are named NAME__vN (N >= 2).  The VMM redirects the entry NOP to a stub
 * it writes into [__klp_stubs_start, __klp_stubs_end) (page aligned,
 * executable, filled with INT3, never written or entered by the guest
 * otherwise): the stub tests bit 0 of the current task's patch_state and
 * jumps to the replacement or to NAME + 5.  Once every task has switched,
 * the entry becomes a direct JMP to the replacement and the stub is freed.
 *
 * Optionally the guest gives NAME a struct vmpoke_klp_func named
 * __KLP__NAME, which the VMM keeps up to date so that the guest's checks
 * know which version each task must get: state OLD (every task runs NAME),
 * TRANSITION (a task runs func if its patch_state has bit 0, else NAME),
 * NEW (every task runs func).  The VMM writes func before state leaves
 * OLD, and changes state only when that changes no task's version.
 */
#define VMPOKE_SYM_KLP_STUBS_START	"__klp_stubs_start"
#define VMPOKE_SYM_KLP_STUBS_END	"__klp_stubs_end"
#define VMPOKE_KLP_STUBS_MAX_SIZE	(1u << 16)
#define VMPOKE_KLP_FUNC_PREFIX		"__KLP__"
#define VMPOKE_KLP_VERSION_SEP		"__v"
enum vmpoke_klp_state {
	VMPOKE_KLP_OLD		= 0,
	VMPOKE_KLP_TRANSITION	= 1,
	VMPOKE_KLP_NEW		= 2,
};
struct vmpoke_klp_func {
	uint32_t state;			/* enum vmpoke_klp_state */
	uint32_t pad;
	uint64_t func;			/* the replacement, for TRANSITION and NEW */
};

#endif /* VMPOKE_ABI_H */
