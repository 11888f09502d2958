/* SPDX-License-Identifier: MIT */
/*
 * lab.S - the emulation lab (VMPOKE_SCN_LAB), CPL3.
 *
 * The host writes one instruction (padded with NOPs to 8 bytes) at
 * lab_site, then bumps vmpoke_lab.seq_req.  We load the requested
 * arithmetic flags, record %rsp and execute the site; the landing pad it
 * reaches appends its digit to vmpoke_lab.path.  The host runs the same
 * request twice, once with the real instruction and once with an INT3 the
 * VMM emulates, and compares what the pads recorded.
 *
 * vmpoke_abi.h is C-only, so the struct vmpoke_lab offsets and the doorbell
 * address are spelled out here; tests/test_lab.c asserts them with
 * offsetof() so a layout change breaks the build of the tests, not the lab.
 */

#define LAB_SEQ_REQ		0
#define LAB_SEQ_DONE		8
#define LAB_RFLAGS_IN		16
#define LAB_RFLAGS_OUT		24
#define LAB_PATH		32
#define LAB_RSP_AT_SITE		40
#define LAB_RSP_IN_CALLEE	48
#define LAB_RET_ADDR		56
#define LAB_REGS_IN		64	/* 12 words: rax rcx rdx rsi rdi r8-r11 r13-r15 */
#define LAB_REGS_OUT		160
#define LAB_RSP_OUT		256
#define LAB_STACK_IN		264	/* 3 words, planted at rsp_at_site - 24 .. - 8 */
#define LAB_STACK_OUT		288	/* 5 words, rsp_at_site - 24 .. + 8 */
#define LAB_SIZE		328

/* VMPOKE_MMIO_CMD(VMPOKE_HC_LAB_DONE) = 0xd0000000 + 8 * 7 */
#define LAB_DOORBELL		0xd0000038

/* CF PF AF ZF SF OF: the only flags a request may set. */
#define LAB_ARITH_FLAGS		0x8d5

/*
 * First thing at every pad, before anything clobbers them: the planted
 * registers, %rsp and the stack window around rsp_at_site (%rbp - 8) as
 * the site left them.  mov does not touch the flags.
 */
.macro lab_save
	movq	%rax, LAB_REGS_OUT + 0(%rbx)
	movq	%rcx, LAB_REGS_OUT + 8(%rbx)
	movq	%rdx, LAB_REGS_OUT + 16(%rbx)
	movq	%rsi, LAB_REGS_OUT + 24(%rbx)
	movq	%rdi, LAB_REGS_OUT + 32(%rbx)
	movq	%r8, LAB_REGS_OUT + 40(%rbx)
	movq	%r9, LAB_REGS_OUT + 48(%rbx)
	movq	%r10, LAB_REGS_OUT + 56(%rbx)
	movq	%r11, LAB_REGS_OUT + 64(%rbx)
	movq	%r13, LAB_REGS_OUT + 72(%rbx)
	movq	%r14, LAB_REGS_OUT + 80(%rbx)
	movq	%r15, LAB_REGS_OUT + 88(%rbx)
	movq	%rsp, LAB_RSP_OUT(%rbx)
	movq	-32(%rbp), %rax
	movq	%rax, LAB_STACK_OUT + 0(%rbx)
	movq	-24(%rbp), %rax
	movq	%rax, LAB_STACK_OUT + 8(%rbx)
	movq	-16(%rbp), %rax
	movq	%rax, LAB_STACK_OUT + 16(%rbx)
	movq	-8(%rbp), %rax
	movq	%rax, LAB_STACK_OUT + 24(%rbx)
	movq	(%rbp), %rax
	movq	%rax, LAB_STACK_OUT + 32(%rbx)
.endm

/*
 * path = path * 10 + digit; clobbers %rax but not the flags, so a CALL
 * that returns and falls through still shows the site's flags.
 */
.macro lab_pad digit
	pushfq
	movq	(%rsp), %rax
	movq	%rax, LAB_RFLAGS_OUT(%rbx)
	movq	LAB_PATH(%rbx), %rax
	imulq	$10, %rax, %rax
	addq	$\digit, %rax
	movq	%rax, LAB_PATH(%rbx)
	popfq
.endm

	.section .data
	.balign 64
	/*
	 * Weak so that a guest kernel that defines the table itself (it is
	 * ABI, exported by name) wins at link time; the lab uses whichever.
	 */
	.weak	vmpoke_lab
	.type	vmpoke_lab, @object
	.size	vmpoke_lab, LAB_SIZE
vmpoke_lab:
	.zero	LAB_SIZE

	.text
	.balign 64
	.globl	lab_task_main
	.type	lab_task_main, @function
/*
 * void lab_task_main(struct vmpoke_task *task) - never returns.
 * %rbx = &vmpoke_lab, %rbp = %rsp at the top of a request (restored by
 * every exit path, whatever the site did to the stack), %r12 = the seq
 * being served.
 */
lab_task_main:
	leaq	vmpoke_lab(%rip), %rbx
.Lwait:
	/*
	 * CPL3 cannot hlt; spin in the guest with pause.  This loop never
	 * touches lab_site, which is why the host may rewrite the site with a
	 * plain store while we wait.
	 */
	movq	LAB_SEQ_REQ(%rbx), %r12
	cmpq	LAB_SEQ_DONE(%rbx), %r12
	jne	.Lserve
	pause
	jmp	.Lwait
.Lserve:
	/*
	 * Cross-modifying code (SDM 3A 8.1.3): the executing side must
	 * serialize after it observes the flag and before it runs the
	 * modified bytes.  cpuid is serializing and legal at CPL3; it
	 * clobbers %rbx, so the table address is reloaded.
	 */
	xorl	%eax, %eax
	cpuid
	leaq	vmpoke_lab(%rip), %rbx
	movq	%rsp, %rbp
	movq	$0, LAB_PATH(%rbx)
	movq	$0, LAB_RSP_IN_CALLEE(%rbx)
	movq	$0, LAB_RET_ADDR(%rbx)
	movq	$0, LAB_RFLAGS_OUT(%rbx)

	/* flags = (current & ~arith) | (rflags_in & arith) */
	pushfq
	popq	%rcx
	andq	$~LAB_ARITH_FLAGS, %rcx
	movq	LAB_RFLAGS_IN(%rbx), %rax
	andq	$LAB_ARITH_FLAGS, %rax
	orq	%rax, %rcx

	/* The site may RET: give it somewhere to return to. */
	leaq	lab_ret_target(%rip), %rax
	pushq	%rax
	pushq	%rcx
	popfq
	/* mov neither reads nor writes flags: plant the stack, then the registers */
	movq	LAB_STACK_IN + 0(%rbx), %rax
	movq	%rax, -32(%rbp)
	movq	LAB_STACK_IN + 8(%rbx), %rax
	movq	%rax, -24(%rbp)
	movq	LAB_STACK_IN + 16(%rbx), %rax
	movq	%rax, -16(%rbp)
	movq	LAB_REGS_IN + 0(%rbx), %rax
	movq	LAB_REGS_IN + 8(%rbx), %rcx
	movq	LAB_REGS_IN + 16(%rbx), %rdx
	movq	LAB_REGS_IN + 24(%rbx), %rsi
	movq	LAB_REGS_IN + 32(%rbx), %rdi
	movq	LAB_REGS_IN + 40(%rbx), %r8
	movq	LAB_REGS_IN + 48(%rbx), %r9
	movq	LAB_REGS_IN + 56(%rbx), %r10
	movq	LAB_REGS_IN + 64(%rbx), %r11
	movq	LAB_REGS_IN + 72(%rbx), %r13
	movq	LAB_REGS_IN + 80(%rbx), %r14
	movq	LAB_REGS_IN + 88(%rbx), %r15
	movq	%rsp, LAB_RSP_AT_SITE(%rbx)

	/*
	 * A function of its own 8 bytes, so that a probe placed here finds
	 * its containing function (and decodes it from lab_site).
	 */
	.globl	lab_site
	.type	lab_site, @function
lab_site:
	/* NOP8: 0f 1f 84 00 00 00 00 00 */
	.byte	0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00
	.size	lab_site, . - lab_site

	/*
	 * lab_taken stays within a rel8 of the site (LOOP, JrCXZ and Jcc
	 * rel8 reach it), so lab_fall's pad is out of line; a JMP touches
	 * neither the flags nor the planted registers.
	 */
	.globl	lab_fall
lab_fall:
	jmp	.Lfall

	.globl	lab_taken
lab_taken:
	lab_save
	lab_pad	2
	jmp	.Ldone

.Lfall:
	lab_save
	lab_pad	1
	jmp	.Ldone

	.globl	lab_callee
lab_callee:
	lab_save
	/* Before pushfq moves %rsp: what the CALL left on the stack. */
	movq	%rsp, LAB_RSP_IN_CALLEE(%rbx)
	movq	(%rsp), %rax
	movq	%rax, LAB_RET_ADDR(%rbx)
	lab_pad	3
	/* what the site planted in %rax, for the return path's lab_save */
	movq	LAB_REGS_OUT + 0(%rbx), %rax
	ret

	.globl	lab_ret_target
lab_ret_target:
	lab_save
	lab_pad	4

.Ldone:
	movq	%rbp, %rsp
	movq	%r12, LAB_SEQ_DONE(%rbx)
	movabsq	$LAB_DOORBELL, %rax
	movq	%r12, (%rax)
	jmp	.Lwait
	.size	lab_task_main, . - lab_task_main
