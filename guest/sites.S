/* SPDX-License-Identifier: MIT */
/*
 * sites.S - the patchable functions and the exported site table.
 *
 * Each site_* function takes x (%rdi, < 2^24) and returns a value from a
 * small legal set that depends on which variant of its site ran (the
 * semantics are listed in guest/sites.h, which the CPL3 workload checks
 * against).  Sites sit at fixed offsets in a page-aligned section so that
 * some straddle an 8-byte boundary, a 64-byte line or a 4 KiB page: the
 * offsets are placed with ".org off, 0x90" - single-byte NOPs executed
 * before the site - so that gas refuses to build if a prologue grows past
 * its site.  Branches are written as bytes so that their sizes never
 * depend on relaxation.
 *
 * Before a CALL or MULTI site %eax holds a poison value, so skipping (part
 * of) the site returns a value outside the legal set instead of silently
 * succeeding.  No branch of a containing function targets the inside of a
 * MULTI range; alternative blocks are functions of their own
 * (site_multi_*_alt) that jump back to the end of the range.
 */
#include "offsets.h"

#define POISON	0xdeadbeef

.macro FUNC name
	.globl	\name
	.type	\name, @function
\name:
.endm
.macro ENDF name
	.size	\name, . - \name
.endm
/* jmp rel32 / call rel32 / jcc rel32 / jmp rel8, never relaxed */
.macro JMP32 target
	.byte	0xe9
	.long	\target - (. + 4)
.endm
.macro CALL32 target
	.byte	0xe8
	.long	\target - (. + 4)
.endm
.macro JNZ32 target
	.byte	0x0f, 0x85
	.long	\target - (. + 4)
.endm
.macro JZ32 target
	.byte	0x0f, 0x84
	.long	\target - (. + 4)
.endm
.macro NOP5
	.byte	0x0f, 0x1f, 0x44, 0x00, 0x00
.endm
.macro NOP2
	.byte	0x66, 0x90
.endm
/* place the next byte at page offset \off; fill executed as NOPs */
.macro AT off
	.org	\off, 0x90
.endm
/* padding between functions: never executed */
.macro PAD off
	.org	\off, 0xcc
.endm

	.section .text.sites, "ax", @progbits
	.balign	4096

/* CALL32 targets: three distinct legal results. */
FUNC callee_v1
	leaq	0x100(%rdi), %rax
	ret
ENDF callee_v1
	.balign	16, 0xcc
FUNC callee_v2
	leaq	0x200(%rdi), %rax
	ret
ENDF callee_v2
	.balign	16, 0xcc
FUNC callee_v3
	leaq	0x300(%rdi), %rax
	ret
ENDF callee_v3

/* MULTI, 3 insns / 7 bytes at 0x3e: crosses a line. (~(x + 7)) << 1, 32-bit */
	PAD	0x30
FUNC site_multi_b
	movl	$POISON, %eax
	AT	0x3e
.Lmulti_b:
	leal	7(%rdi), %eax			/* 8d 47 07 */
	notl	%eax				/* f7 d0 */
	shll	$1, %eax			/* d1 e0 */
.Lmulti_b_end:
	ret
ENDF site_multi_b
	.balign	16, 0xcc
FUNC site_multi_b_alt
	leal	7(%rdi), %eax
	notl	%eax
	shll	$1, %eax
	JMP32	.Lmulti_b_end
ENDF site_multi_b_alt

/* NOP5 at 0x106: crosses 8.  x ^ 0x1111, jumped x ^ 0x2222 */
	PAD	0x100
FUNC site_nop5_a
	movq	%rdi, %rax
	AT	0x106
.Lnop5_a:
	NOP5
	xorq	$0x1111, %rax
	ret
.Lnop5_a_t:
	xorq	$0x2222, %rax
	ret
ENDF site_nop5_a

/* NOP2 at 0x187: crosses 8.  x ^ 0x5555, jumped x ^ 0x6666 */
	PAD	0x180
FUNC site_nop2_a
	movq	%rdi, %rax
	AT	0x187
.Lnop2_a:
	NOP2
	xorq	$0x5555, %rax
	ret
.Lnop2_a_t:
	xorq	$0x6666, %rax
	ret
ENDF site_nop2_a

/* NOP2 at 0x1bf: crosses a line.  x + 0x77, jumped x + 0x88 */
	PAD	0x1b0
FUNC site_nop2_b
	movq	%rdi, %rax
	AT	0x1bf
.Lnop2_b:
	NOP2
	addq	$0x77, %rax
	ret
.Lnop2_b_t:
	addq	$0x88, %rax
	ret
ENDF site_nop2_b

/* CALL at 0x23d: crosses a line.  callee_v{1,2,3}(x) */
	PAD	0x230
FUNC site_call_a
	movl	$POISON, %eax
	AT	0x23d
.Lcall_a:
	CALL32	callee_v1
	ret
ENDF site_call_a

/* CALL at 0x288: inside one 8-byte word.  callee_v{1,2,3}(x) + 1 */
	PAD	0x280
FUNC site_call_b
	movl	$POISON, %eax
	AT	0x288
.Lcall_b:
	CALL32	callee_v1
	incq	%rax
	ret
ENDF site_call_b

/* JNZ at 0x2fd: crosses a line.  odd x: x ^ 0xa1 / x ^ 0xa2, even: x ^ 0xa0 */
	PAD	0x2f0
FUNC site_jcc_a
	movq	%rdi, %rax
	testb	$1, %dil
	AT	0x2fd				/* NOPs keep the flags */
.Ljcc_a:
	JNZ32	.Ljcc_a_t0
	xorq	$0xa0, %rax
	ret
.Ljcc_a_t0:
	xorq	$0xa1, %rax
	ret
.Ljcc_a_t1:
	xorq	$0xa2, %rax
	ret
ENDF site_jcc_a

/* JZ at 0x348.  bit 1 clear: x + 0xb1 / x + 0xb2, set: x + 0xb0 */
	PAD	0x340
FUNC site_jcc_b
	movq	%rdi, %rax
	testb	$2, %dil
	AT	0x348
.Ljcc_b:
	JZ32	.Ljcc_b_t0
	addq	$0xb0, %rax
	ret
.Ljcc_b_t0:
	addq	$0xb1, %rax
	ret
.Ljcc_b_t1:
	addq	$0xb2, %rax
	ret
ENDF site_jcc_b

/* MULTI, 2 insns / 5 bytes at 0x386: crosses 8.  x ^ 0x5a, 32-bit */
	PAD	0x380
FUNC site_multi_a
	movl	$POISON, %eax
	AT	0x386
.Lmulti_a:
	movl	%edi, %eax			/* 89 f8 */
	xorl	$0x5a, %eax			/* 83 f0 5a */
.Lmulti_a_end:
	ret
ENDF site_multi_a
	.balign	16, 0xcc
FUNC site_multi_a_alt
	movl	%edi, %eax
	xorl	$0x5a, %eax
	JMP32	.Lmulti_a_end
ENDF site_multi_a_alt

/*
 * MULTI, 3 insns / 7 bytes at 0x40c: crosses 8.  (uint32_t)x ^ 0x3c.
 * The pause in the middle ends a translation block under QEMU TCG (the
 * nested test harness), which delivers interrupts only between blocks:
 * it lets a tick preempt a task inside a MULTI range there too, as
 * hardware can anywhere, so the shadow check has something to find.
 */
	PAD	0x400
FUNC site_multi_c
	movl	$POISON, %eax
	AT	0x40c
.Lmulti_c:
	movl	%edi, %eax			/* 89 f8 */
	pause					/* f3 90 */
	xorl	$0x3c, %eax			/* 83 f0 3c */
.Lmulti_c_end:
	ret
ENDF site_multi_c
	.balign	16, 0xcc
FUNC site_multi_c_alt
	movl	%edi, %eax
	pause
	xorl	$0x3c, %eax
	JMP32	.Lmulti_c_end
ENDF site_multi_c_alt

/* NOP5 at 0xffe: crosses a page.  x + 0x33, jumped x + 0x44 */
	PAD	0xff0
FUNC site_nop5_b
	movq	%rdi, %rax
	AT	0xffe
.Lnop5_b:
	NOP5
	addq	$0x33, %rax
	ret
.Lnop5_b_t:
	addq	$0x44, %rax
	ret
ENDF site_nop5_b

/*
 * Never called: a function with a jump table (an indirect JMP), for the
 * refusal of multi-instruction sites where a computed jump could land
 * inside the range (optprobes' can_optimize()).  x + 1 either way.
 */
FUNC site_jump_table
	movl	%edi, %eax
	addl	$1, %eax
	leaq	.Ljt_table(%rip), %rcx
	andl	$1, %edi
	jmp	*(%rcx,%rdi,8)
.Ljt_0:
	ret
.Ljt_1:
	ret
ENDF site_jump_table

	.section .rodata
	.balign	8
.Ljt_table:
	.quad	.Ljt_0, .Ljt_1
	.section .text.sites, "ax", @progbits

/* The exported table (struct vmpoke_site_table). */
.macro SITE addr, kind, len, flags, t0, t1=0, t2=0, t3=0, nt=1
	.quad	\addr
	.long	\kind, \len, \nt, \flags
	.quad	\t0, \t1, \t2, \t3
.endm

#define NR_SITES 11

	.section .data.sites, "aw", @progbits
	.balign	64
	.globl	vmpoke_sites
	.type	vmpoke_sites, @object
vmpoke_sites:
	.quad	SITES_MAGIC
	.long	ABI_VERSION, NR_SITES
	SITE	.Lnop5_a, SITE_NOP5_JMP32, 5, SITEF_8, .Lnop5_a_t
	SITE	.Lnop5_b, SITE_NOP5_JMP32, 5, SITEF_8|SITEF_LINE|SITEF_PAGE, .Lnop5_b_t
	SITE	.Lnop2_a, SITE_NOP2_JMP8, 2, SITEF_8, .Lnop2_a_t
	SITE	.Lnop2_b, SITE_NOP2_JMP8, 2, SITEF_8|SITEF_LINE, .Lnop2_b_t
	SITE	.Lcall_a, SITE_CALL32, 5, SITEF_8|SITEF_LINE, callee_v1, callee_v2, callee_v3, nt=3
	SITE	.Lcall_b, SITE_CALL32, 5, 0, callee_v1, callee_v2, callee_v3, nt=3
	SITE	.Ljcc_a, SITE_JCC32, 6, SITEF_8|SITEF_LINE, .Ljcc_a_t0, .Ljcc_a_t1, nt=2
	SITE	.Ljcc_b, SITE_JCC32, 6, 0, .Ljcc_b_t0, .Ljcc_b_t1, nt=2
	SITE	.Lmulti_a, SITE_MULTI, 5, SITEF_8, site_multi_a_alt
	SITE	.Lmulti_b, SITE_MULTI, 7, SITEF_8|SITEF_LINE, site_multi_b_alt
	SITE	.Lmulti_c, SITE_MULTI, 7, SITEF_8, site_multi_c_alt
	.skip	(MAX_SITES - NR_SITES) * SITE_DESC_SIZE
	.size	vmpoke_sites, . - vmpoke_sites

	.section .note.GNU-stack, "", @progbits
