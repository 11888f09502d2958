/* SPDX-License-Identifier: MIT */
/*
 * entry.S - the guest's CPL0 code: the boot trampoline and every trap path.
 *
 * Design of the guest (every file in guest/):
 *
 *  - CPL0 is emulated instruction by instruction on the KVM we run on
 *    (~0.5-1 us each, and int3/SSE/x87/popcnt/... are fatal there), while
 *    CPL3 runs natively.  So every workload runs at CPL3 and CPL0 is only
 *    boot, these stubs and the scheduler tick: a few dozen general-purpose
 *    instructions each.  CPL3 reaches the VMM with MMIO stores; CPL0 with
 *    port IO.
 *  - All IDT gates are interrupt gates: CPL0 always runs with IF=0, so
 *    interrupts never nest and the entry frame is at rsp0 - 40 of the
 *    vCPU's own kernel stack.  Only a #BP can nest under it: a breakpoint
 *    the VMM put in the timer's callee (sched_call.c) on a host that traps
 *    CPL0 INT3s.  vmpoke_abi.h's "CPL0 frames" is the rule the VMM walks.
 *  - The LAPIC timer preempts tasks.  Its handler pushes the GPRs below the
 *    hardware frame in exactly the order of struct vmpoke_task_ctx, so the
 *    kernel stack *is* a context.  When the next RUNNABLE task of this
 *    vCPU (round-robin, tasks never migrate) differs from the current one,
 *    the stack is copied to the current task, which is marked RUNNABLE
 *    (context first, state second: a reader that sees RUNNABLE sees a
 *    whole context), the next task's context is copied over the frame, it
 *    is marked RUNNING and iretq resumes it.
 *  - The VMM reads these contexts, the task table and the per-vCPU blocks
 *    from guest memory.  Guest memory is writable by the (buggy or
 *    torn-by-a-patch) guest itself, so the VMM may trust a layout only after
 *    checking the magic/version/size/capacity fields, and must bounds-check
 *    every value it reads; the guest keeps its side simple and in ABI order.
 *
 * Everything a trap runs lives in .entry.text, between __entry_text_start
 * and __entry_text_end (guest.ld): the patcher must never patch it.
 */
#include "offsets.h"

#define TASKS	(vmpoke_tasks + TASKTAB_TASKS)

/*
 * _start(vcpu = %rdi, boot_info = %rsi): long mode, IF=0, %rsp = 0.
 * Take this vCPU's kernel stack, point GS at its percpu block (GS holds
 * the null selector first so that iretq to CPL3 has nothing to clear),
 * then let guest_boot() do the rest in C; it returns the first task's
 * context, which we pop and iretq into.
 */
	.section .text.boot, "ax", @progbits
	.globl	_start
	.type	_start, @function
_start:
	cli
	cld
	cmpq	$64, %rdi
	jae	.Lbad_vcpu
	leaq	1(%rdi), %rax
	shlq	$13, %rax			/* KSTACK_SIZE */
	leaq	guest_kstacks(%rax), %rsp
	xorl	%eax, %eax
	movl	%eax, %fs
	movl	%eax, %gs
	imulq	$PCPU_SIZE, %rdi, %rax
	leaq	vmpoke_percpu(%rax), %rax
	movq	%rax, %rdx
	shrq	$32, %rdx
	movl	$0xc0000101, %ecx		/* MSR_GS_BASE */
	wrmsr
	call	guest_boot
	movq	%rax, %rsp
	jmp	guest_enter_ctx
.Lbad_vcpu:
	/* No stack and no mailbox for an id we cannot index: DONE, halt. */
	movl	$2, %eax			/* VMPOKE_HC_DONE */
	outl	%eax, $PORT_HCALL
1:	hlt
	jmp	1b
	.size	_start, . - _start

/*
 * An x87 store to the MMIO doorbell at CPL0 (VMPOKE_SCN_EMUFAIL): KVM must
 * emulate the MMIO access and its emulator has no x87 stores, so the run
 * ends in KVM_EXIT_INTERNAL_ERROR (on kvm_pvm CPL0 x87 alone does that).
 */
	.globl	guest_emulation_failure
	.type	guest_emulation_failure, @function
guest_emulation_failure:
	movq	$0xd0000800, %rax		/* VMPOKE_MMIO_BASE + 0x800 */
	fldz
	fstpl	(%rax)
1:	hlt
	jmp	1b
	.size	guest_emulation_failure, . - guest_emulation_failure

/*
 * CPL0 with %rsp in unmapped memory pushes (VMPOKE_SCN_BADSTACK): the #PF
 * cannot be delivered on this stack, only on the IST fault stack, so the
 * VMM must see a #PF report with this RSP, not a triple fault.
 */
	.globl	guest_bad_stack
	.type	guest_bad_stack, @function
guest_bad_stack:
	movabsq	$0x5000000000, %rsp
	pushq	$0
1:	hlt
	jmp	1b
	.size	guest_bad_stack, . - guest_bad_stack

/* Destroy the IDT and fault: a triple fault (VMPOKE_SCN_TRIPLE). */
	.globl	guest_triple_fault
	.type	guest_triple_fault, @function
guest_triple_fault:
	pushq	$0
	pushq	$0
	lidt	6(%rsp)				/* limit 0, base 0 */
	movq	0, %rax				/* page 0 is not present: #PF */
1:	hlt
	jmp	1b
	.size	guest_triple_fault, . - guest_triple_fault

	.section .entry.text, "ax", @progbits

/* %rsp = a struct vmpoke_task_ctx: load it and return to its CPL. */
	.globl	guest_enter_ctx
	.type	guest_enter_ctx, @function
guest_enter_ctx:
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%r11
	popq	%r10
	popq	%r9
	popq	%r8
	popq	%rbp
	popq	%rdi
	popq	%rsi
	popq	%rdx
	popq	%rcx
	popq	%rbx
	popq	%rax
	iretq
	.size	guest_enter_ctx, . - guest_enter_ctx

/*
 * #BP: ask the VMM first.  The shape is fixed by the ABI: the VMM finds
 * the frame at %rsp + 8 while we sit in the inb, may rewrite it, and
 * answers RESUME (0) or FOREIGN (1).
 */
	.globl	guest_bp_entry
	.type	guest_bp_entry, @function
guest_bp_entry:
	pushq	%rax
	inb	$PORT_BP, %al
	testb	%al, %al
	jnz	1f
	popq	%rax
	iretq
1:	popq	%rax
	jmp	guest_bp_handler
	.size	guest_bp_entry, . - guest_bp_entry

/*
 * The guest's own int3 handling, for INT3s vmpoke does not own: count it
 * and resume after it, as a kernel without a debugger does.
 */
	.globl	guest_bp_handler
	.type	guest_bp_handler, @function
guest_bp_handler:
	pushq	%rax
	movslq	%gs:PCPU_CURRENT, %rax
	testq	%rax, %rax
	js	1f
	imulq	$TASK_SIZE, %rax, %rax
	incq	TASKS + TASK_OWN_INT3(%rax)
1:	incq	%gs:PCPU_FOREIGN_BP
	popq	%rax
	iretq
	.size	guest_bp_handler, . - guest_bp_handler

/* #DB: same shape.  Nothing in the guest single-steps, so a foreign #DB is a bug: report it. */
	.globl	guest_db_entry
	.type	guest_db_entry, @function
guest_db_entry:
	pushq	%rax
	inb	$PORT_DB, %al
	testb	%al, %al
	jnz	1f
	popq	%rax
	iretq
1:	popq	%rax
	pushq	$0
	pushq	$1
	jmp	guest_fault_common
	.size	guest_db_entry, . - guest_db_entry

/*
 * Every other exception: the stub pushes a zero error code when the CPU
 * does not, then the vector; guest_fault_common fills the mailbox, rings
 * VMPOKE_HC_FAULT and halts for good.  Stack: vector, error, rip, cs,
 * rflags, rsp, ss.
 */
.macro FAULT_STUB name, vec, err
	.globl	\name
	.type	\name, @function
\name:
	.if \err == 0
	pushq	$0
	.endif
	pushq	$\vec
	jmp	guest_fault_common
	.size	\name, . - \name
.endm

	FAULT_STUB guest_exc_de, 0, 0
	FAULT_STUB guest_exc_nmi, 2, 0
	FAULT_STUB guest_exc_of, 4, 0
	FAULT_STUB guest_exc_br, 5, 0
	FAULT_STUB guest_exc_ud, 6, 0
	FAULT_STUB guest_exc_nm, 7, 0
	FAULT_STUB guest_exc_df, 8, 1
	FAULT_STUB guest_exc_cso, 9, 0
	FAULT_STUB guest_exc_ts, 10, 1
	FAULT_STUB guest_exc_np, 11, 1
	FAULT_STUB guest_exc_ss, 12, 1
	FAULT_STUB guest_exc_gp, 13, 1
	FAULT_STUB guest_exc_pf, 14, 1
	FAULT_STUB guest_exc_15, 15, 0
	FAULT_STUB guest_exc_mf, 16, 0
	FAULT_STUB guest_exc_ac, 17, 1
	FAULT_STUB guest_exc_mc, 18, 0
	FAULT_STUB guest_exc_xm, 19, 0
	FAULT_STUB guest_exc_ve, 20, 0
	FAULT_STUB guest_exc_cp, 21, 1
	FAULT_STUB guest_exc_22, 22, 0
	FAULT_STUB guest_exc_23, 23, 0
	FAULT_STUB guest_exc_24, 24, 0
	FAULT_STUB guest_exc_25, 25, 0
	FAULT_STUB guest_exc_26, 26, 0
	FAULT_STUB guest_exc_27, 27, 0
	FAULT_STUB guest_exc_hv, 28, 0
	FAULT_STUB guest_exc_vc, 29, 1
	FAULT_STUB guest_exc_sx, 30, 1
	FAULT_STUB guest_exc_31, 31, 0

	.globl	guest_fault_common
	.type	guest_fault_common, @function
guest_fault_common:
	movq	0(%rsp), %rax
	movq	%rax, %gs:FAULT_VECTOR
	movq	8(%rsp), %rax
	movq	%rax, %gs:FAULT_ERROR
	movq	16(%rsp), %rax
	movq	%rax, %gs:FAULT_RIP
	movq	40(%rsp), %rax
	movq	%rax, %gs:FAULT_RSP
	xorl	%eax, %eax
	cmpq	$14, 0(%rsp)
	jne	1f
	movq	%cr2, %rax
1:	movq	%rax, %gs:FAULT_CR2
	movl	%gs:PCPU_VCPU, %eax
	movl	%eax, %gs:FAULT_VCPU
	movl	%gs:PCPU_CURRENT, %eax
	movl	%eax, %gs:FAULT_TASK
	movl	$HC_FAULT, %eax
	outl	%eax, $PORT_HCALL
2:	cli
	hlt
	jmp	2b
	.size	guest_fault_common, . - guest_fault_common

/*
 * LAPIC timer: the preemptive scheduler (see the top of this file).
 * The running task's context is stale by definition (RUNNING: the vCPU
 * has it), so it is saved only when another task takes the CPU: a vCPU
 * with one runnable task pays no copy per tick.
 * Registers: %r8 = the interrupted task's global id, %rbx = the first
 * global id of this vCPU, %eax = slot being tried, %esi = tasks per vCPU,
 * %ecx = slots left to try, %rdx / %r9 = byte offsets of the next /
 * interrupted task in the table.
 */
	.globl	guest_timer_entry
	.type	guest_timer_entry, @function
guest_timer_entry:
	testb	$3, 8(%rsp)
	jz	.Ltimer_cpl0
	pushq	%rax
	pushq	%rbx
	pushq	%rcx
	pushq	%rdx
	pushq	%rsi
	pushq	%rdi
	pushq	%rbp
	pushq	%r8
	pushq	%r9
	pushq	%r10
	pushq	%r11
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	/* %rsp now points at a struct vmpoke_task_ctx. */
	movslq	%gs:PCPU_CURRENT, %r8
	testq	%r8, %r8
	js	.Ltimer_out
	movl	%r8d, %eax
	andl	$7, %eax			/* VMPOKE_MAX_TASKS - 1 */
	movq	%r8, %rbx
	subq	%rax, %rbx
	movl	guest_tasks_per_vcpu(%rip), %esi
	leal	-1(%rsi), %ecx			/* the other slots, round-robin */
	testl	%ecx, %ecx
	jz	.Ltimer_out
1:	incl	%eax
	cmpl	%esi, %eax
	jb	2f
	xorl	%eax, %eax
2:	leaq	(%rbx,%rax), %rdx
	imulq	$TASK_SIZE, %rdx, %rdx
	cmpl	$TS_RUNNABLE, TASKS + TASK_STATE(%rdx)
	je	3f
	decl	%ecx
	jnz	1b
	/* No other task runnable: the interrupted one (maybe DONE) goes on. */
	jmp	.Ltimer_out
3:	/* Save the interrupted task: context first, then state. */
	imulq	$TASK_SIZE, %r8, %r9
	leaq	TASKS + TASK_CTX(%r9), %rdi
	movq	%rsp, %rsi
	movl	$CTX_WORDS, %ecx
	rep movsq
	/* A DONE task stays DONE; only a RUNNING one becomes RUNNABLE. */
	cmpl	$TS_RUNNING, TASKS + TASK_STATE(%r9)
	jne	4f
	movl	$TS_RUNNABLE, TASKS + TASK_STATE(%r9)
4:	/* Load the next one over the frame. */
	leaq	TASKS + TASK_CTX(%rdx), %rsi
	movq	%rsp, %rdi
	movl	$CTX_WORDS, %ecx
	rep movsq
	movl	$TS_RUNNING, TASKS + TASK_STATE(%rdx)
	incq	TASKS + TASK_SWITCHES(%rdx)
	addq	%rbx, %rax
	movl	%eax, %gs:PCPU_CURRENT
.Ltimer_out:
	/* The task registers are saved on this stack: C may clobber them. */
	call	sched_tick_hook
	incq	%gs:PCPU_TICKS
	movl	$LAPIC_EOI, %eax
	movl	$0, (%rax)
	jmp	guest_enter_ctx
.Ltimer_cpl0:
	/* Cannot happen (CPL0 runs with IF=0); do not touch any task. */
	pushq	%rax
	movl	$LAPIC_EOI, %eax
	movl	$0, (%rax)
	popq	%rax
	iretq
	.size	guest_timer_entry, . - guest_timer_entry

/* Spurious LAPIC interrupt: no EOI by definition. */
	.globl	guest_spurious_entry
	.type	guest_spurious_entry, @function
guest_spurious_entry:
	iretq
	.size	guest_spurious_entry, . - guest_spurious_entry

/* IDT targets of the 32 exception vectors, read by guest/boot.c. */
	.section .rodata
	.balign	8
	.globl	guest_exc_stubs
	.type	guest_exc_stubs, @object
guest_exc_stubs:
	.quad	guest_exc_de, guest_db_entry, guest_exc_nmi, guest_bp_entry
	.quad	guest_exc_of, guest_exc_br, guest_exc_ud, guest_exc_nm
	.quad	guest_exc_df, guest_exc_cso, guest_exc_ts, guest_exc_np
	.quad	guest_exc_ss, guest_exc_gp, guest_exc_pf, guest_exc_15
	.quad	guest_exc_mf, guest_exc_ac, guest_exc_mc, guest_exc_xm
	.quad	guest_exc_ve, guest_exc_cp, guest_exc_22, guest_exc_23
	.quad	guest_exc_24, guest_exc_25, guest_exc_26, guest_exc_27
	.quad	guest_exc_hv, guest_exc_vc, guest_exc_sx, guest_exc_31
	.size	guest_exc_stubs, . - guest_exc_stubs

	.section .note.GNU-stack, "", @progbits
