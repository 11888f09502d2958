/* SPDX-License-Identifier: MIT */
/*
 * bench_sites.S - patch sites for `vmpoke bench poke`.
 *
 * VMPOKE_BENCH_PAD_FUNCS CPL3 functions bench_pad_0 .. bench_pad_63, each
 * made of VMPOKE_BENCH_PAD_PER_FUNC NOP5 instructions and a ret: 4096
 * sites in all (include/vmpoke_abi.h names them for the host).
 * Nobody calls them: the benchmark needs thousands of real
 * instruction-boundary sites (every NOP5 here is one by construction)
 * that no vCPU executes, so a batch of 4096 measures the protocol and not
 * the workload.  They are split into small functions because preparing a
 * site decodes its whole containing function: one 4096-instruction
 * function would make preparation quadratic in the batch size.
 */

#include "offsets.h"

.macro bench_pad_fn n
	.balign 64
	.globl	bench_pad_\n
	.type	bench_pad_\n, @function
bench_pad_\n:
	.rept	BENCH_PAD_PER_FUNC
	/* nopl 0x0(%rax,%rax,1) */
	.byte	0x0f, 0x1f, 0x44, 0x00, 0x00
	.endr
	ret
	.size	bench_pad_\n, . - bench_pad_\n
.endm

	.text
	.irp	n, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, \
		16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, \
		32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, \
		48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63
	bench_pad_fn \n
	.endr
