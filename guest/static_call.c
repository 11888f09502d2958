// SPDX-License-Identifier: MIT
/*
 * static_call.c - the guest's static calls (CPL3 task text), in the
 * kernel's format (vmpoke_abi.h).  One call, sc_op, with three allowed
 * targets and the NULL form:
 *   __SCT__sc_op  trampoline (initially JMP sc_op_add)
 *   __SCK__sc_op  key {func, seq}
 *   sites: two direct CALL sites in sc_call_a()/sc_call_b() and one tail
 *   call (JMP) in sc_call_tail().
 * A target stores its result through out; NULL stores nothing, so the
 * caller's sentinel stays.  The tasks check every site's result against
 * the function the key names, seqlock-fair as the static keys are.
 */
#include "guest.h"
#include "user.h"
#include "static_call.h"

#define SC_SENTINEL	0x5c5c5c5c5c5c5c5cull

void sc_op_add(uint64_t x, uint64_t *out)
{
	*out = x + 0x5c;
}

void sc_op_mul(uint64_t x, uint64_t *out)
{
	*out = x * 3;
}

void sc_op_xor(uint64_t x, uint64_t *out)
{
	*out = x ^ 0xc5c5;
}

struct vmpoke_static_call_key __SCK__sc_op = { .func = (uintptr_t)sc_op_add };

SC_TRAMP(".static_call.text", sc_op, sc_op_add);
SC_TARGET(sc_op, sc_op_add);
SC_TARGET(sc_op, sc_op_mul);
SC_TARGET(sc_op, sc_op_xor);

/* The tail-call site by hand: a JMP to the trampoline. */
__asm__(".pushsection .text.sc_tail, \"ax\"\n"
	".globl sc_call_tail\n"
	".type sc_call_tail, @function\n"
	"sc_call_tail:\n"
	"1:	jmp __SCT__sc_op\n"
	"	.byte 0xcc\n"
	".size sc_call_tail, . - sc_call_tail\n"
	".pushsection .static_call_sites, \"a\"\n"
	".balign 4\n"
	".long 1b - .\n"
	".long __SCK__sc_op + 1 - .\n"
	".popsection\n"
	".popsection\n");

__attribute__((noinline)) void sc_call_a(uint64_t x, uint64_t *out)
{
	SC_CALL(sc_op, x, out);
}

__attribute__((noinline)) void sc_call_b(uint64_t x, uint64_t *out)
{
	SC_CALL(sc_op, x, out);
}

typedef void (*sc_fn)(uint64_t x, uint64_t *out);

/* What the call gives for x when the key names func; 0 if func is unknown. */
static int sc_expect(uint64_t func, uint64_t x, uint64_t *want)
{
	if (!func)
		*want = SC_SENTINEL;
	else if (func == (uintptr_t)sc_op_add)
		*want = x + 0x5c;
	else if (func == (uintptr_t)sc_op_mul)
		*want = x * 3;
	else if (func == (uintptr_t)sc_op_xor)
		*want = x ^ 0xc5c5;
	else
		return 0;
	return 1;
}

static void sc_check(struct vmpoke_task *t, sc_fn site, uint64_t x, const char *what)
{
	struct vmpoke_static_call_key *k = &__SCK__sc_op;
	uint64_t r = SC_SENTINEL, want, func;
	uint32_t s0, s1;

	s0 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
	func = __atomic_load_n(&k->func, __ATOMIC_ACQUIRE);
	site(x, &r);
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	s1 = __atomic_load_n(&k->seq, __ATOMIC_ACQUIRE);
	if ((s0 & 1) || s0 != s1) {
		/* raced with an update: any allowed target, or NULL */
		if (r != SC_SENTINEL && r != x + 0x5c && r != x * 3 && r != (x ^ 0xc5c5))
			user_check_fail(t, (uintptr_t)site, x, r, what);
		return;
	}
	if (!sc_expect(func, x, &want))
		user_check_fail(t, (uintptr_t)site, func, 0, "sc_op: unknown func");
	else if (r != want)
		user_check_fail(t, (uintptr_t)site, want, r, what);
}

void sc_check_all(struct vmpoke_task *t, uint64_t x)
{
	sc_check(t, sc_call_a, x, "sc_call_a");
	sc_check(t, sc_call_b, x + 1, "sc_call_b");
	sc_check(t, sc_call_tail, x + 2, "sc_call_tail");
}
