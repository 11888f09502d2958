/* SPDX-License-Identifier: MIT */
/*
 * bench_sites.S - patch sites for `vmpoke bench poke`.
 *
 * bench_pad is a CPL3 function made of BENCH_PAD_SITES NOP5 instructions
 * and a ret.  Nobody calls it: the benchmark needs thousands of real
 * instruction-boundary sites (every NOP5 here is one by construction)
 * that no vCPU executes, so a batch of 4096 measures the protocol and not
 * the workload.  The host derives the count from the symbol size.
 */

#define BENCH_PAD_SITES	4096

	.text
	.balign 64
	.globl	bench_pad
	.type	bench_pad, @function
bench_pad:
	.rept	BENCH_PAD_SITES
	/* nopl 0x0(%rax,%rax,1) */
	.byte	0x0f, 0x1f, 0x44, 0x00, 0x00
	.endr
	ret
	.size	bench_pad, . - bench_pad
