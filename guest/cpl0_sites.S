/* SPDX-License-Identifier: MIT */
/*
 * cpl0_sites.S - CALL sites in kernel (CPL0) text, run by scenario CPL0
 * (boot.c: every vCPU loops here at CPL0 instead of starting tasks).
 *
 * The two sites differ only in the alignment of %rsp at the CALL: 16 bytes
 * in cpl0_site_call_a, 8 in cpl0_site_call_b.  A trap from CPL0 pushes its
 * frame on this same stack after aligning RSP to 16, so at the first the
 * frame's SS slot is exactly where an emulated CALL pushes its return
 * address (the int3 stack gap, vmm/trap.c).  Each returns callee(x), one of
 * x + 0x100 / x + 0x200 (cpl0_callee_v1 / _v2), or the poison if the CALL
 * was skipped; boot.c checks the result.
 */
#include "offsets.h"

#define POISON	0xdeadbeef

	.section .text.kernel, "ax", @progbits

	.globl	cpl0_callee_v1
	.type	cpl0_callee_v1, @function
cpl0_callee_v1:
	leaq	0x100(%rdi), %rax
	ret
	.size	cpl0_callee_v1, . - cpl0_callee_v1

	.globl	cpl0_callee_v2
	.type	cpl0_callee_v2, @function
cpl0_callee_v2:
	leaq	0x200(%rdi), %rax
	ret
	.size	cpl0_callee_v2, . - cpl0_callee_v2

	.globl	cpl0_site_call_a
	.type	cpl0_site_call_a, @function
cpl0_site_call_a:
	pushq	%rbp
	movq	%rsp, %rbp
	andq	$-16, %rsp
	movl	$POISON, %eax
	call	cpl0_callee_v1			/* %rsp 16-byte aligned here */
	leave
	ret
	.size	cpl0_site_call_a, . - cpl0_site_call_a

	.globl	cpl0_site_call_b
	.type	cpl0_site_call_b, @function
cpl0_site_call_b:
	pushq	%rbp
	movq	%rsp, %rbp
	andq	$-16, %rsp
	subq	$8, %rsp
	movl	$POISON, %eax
	call	cpl0_callee_v1			/* %rsp 8 mod 16 here */
	leave
	ret
	.size	cpl0_site_call_b, . - cpl0_site_call_b

	.section .note.GNU-stack, "", @progbits
