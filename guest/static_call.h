/* SPDX-License-Identifier: MIT */
/* static_call.h - the guest's static call sc_op (static_call.c). */
#ifndef GUEST_STATIC_CALL_H
#define GUEST_STATIC_CALL_H

#include <stdint.h>
#include "vmpoke_abi.h"

struct vmpoke_task;

/*
 * A direct CALL of __SCT__<name>, recorded in .static_call_sites with the
 * key __SCK__<name> (objtool finds these in the kernel; we list them).
 * The callee is void f(uint64_t x, uint64_t *out).
 */
#define SC_CALL(name, x, out)						\
	__asm__ volatile("1: .byte 0xe8\n\t.long __SCT__" #name " - (1b + 5)\n\t" \
			 ".pushsection .static_call_sites, \"a\"\n\t"	\
			 ".balign 4\n\t.long 1b - .\n\t"		\
			 ".long __SCK__" #name " - .\n\t.popsection"	\
			 : "+D"(x), "+S"(out)				\
			 : : "rax", "rcx", "rdx", "r8", "r9", "r10",	\
			     "r11", "memory", "cc")

/* The trampoline __SCT__<name>: JMP first, then the signature. */
#define SC_TRAMP(section, name, first)					\
	__asm__(".pushsection " section ", \"ax\"\n"			\
		".balign 4\n"						\
		".globl __SCT__" #name "\n"				\
		".type __SCT__" #name ", @function\n"			\
		"__SCT__" #name ":\n"					\
		"	.byte 0xe9\n"					\
		"	.long " #first " - (. + 4)\n"			\
		"	.byte 0x0f, 0xb9, 0xcc\n"			\
		".size __SCT__" #name ", . - __SCT__" #name "\n"	\
		".popsection\n")

/* One allowed target of <name> in .static_call_targets. */
#define SC_TARGET(name, fn)						\
	__asm__(".pushsection .static_call_targets, \"a\"\n"		\
		".balign 4\n"						\
		".long __SCK__" #name " - ., " #fn " - .\n"		\
		".popsection\n")

extern struct vmpoke_static_call_key __SCK__sc_op;
void sc_op_add(uint64_t x, uint64_t *out);
void sc_op_mul(uint64_t x, uint64_t *out);
void sc_op_xor(uint64_t x, uint64_t *out);
void sc_call_a(uint64_t x, uint64_t *out);
void sc_call_b(uint64_t x, uint64_t *out);
void sc_call_tail(uint64_t x, uint64_t *out);
/* Every site of sc_op, each checked against the key (HOT, TORTURE). */
void sc_check_all(struct vmpoke_task *t, uint64_t x);

/*
 * sc_tick: a static call in kernel (CPL0) text, made by the LAPIC timer on
 * every tick (guest_timer_entry -> sched_tick_hook), with targets
 * sc_tick_a and sc_tick_b that count their calls in sc_tick_calls[0/1].
 */
extern struct vmpoke_static_call_key __SCK__sc_tick;
extern uint64_t sc_tick_calls[2];
void sched_tick_hook(void);

#endif /* GUEST_STATIC_CALL_H */
