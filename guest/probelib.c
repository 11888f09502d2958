/* SPDX-License-Identifier: MIT */
/*
 * probelib.c - ordinary C functions for campaigns to probe and patch
 * (issue 8): CPL3 task text, built like any other code (prologues,
 * RIP-relative loads, calls, a loop, a jump table), so probes meet real
 * compiler output.  The tasks of the default scenario call each of them
 * once per iteration and check the results (user.c).
 *
 * Every function counts its own calls per vCPU in lib_calls_<name>[vcpu]
 * with one locked add: exact hit-count tests compare a probe's hits on a
 * vCPU with that vCPU's counter.  A task is never migrated and one add
 * is one instruction, so preemption cannot lose a count.
 *
 * noipa keeps each one a real, separately called function: no inlining,
 * no clones with other names, no constants propagated into it.
 */
#include "guest.h"
#include "probelib.h"

#define LIB_FN __attribute__((noipa, used))

uint64_t lib_calls_add[VMPOKE_MAX_VCPUS];
uint64_t lib_calls_mul_add[VMPOKE_MAX_VCPUS];
uint64_t lib_calls_checksum[VMPOKE_MAX_VCPUS];
uint64_t lib_calls_switch[VMPOKE_MAX_VCPUS];
uint64_t lib_calls_sum_calls[VMPOKE_MAX_VCPUS];

/* Read through a RIP-relative load (a plain global, -mcmodel=small). */
uint64_t lib_scale = 3;

/* This vCPU's id: GS points at its percpu block at CPL3 too (entry.S). */
static inline uint32_t lib_vcpu(void)
{
	uint32_t v;

	__asm__ volatile("movl %%gs:%c1, %0" : "=r"(v) : "i"(PCPU_VCPU));
	return v & (VMPOKE_MAX_VCPUS - 1);
}

static inline void lib_count(uint64_t *calls)
{
	__atomic_fetch_add(&calls[lib_vcpu()], 1, __ATOMIC_RELAXED);
}

LIB_FN uint64_t lib_add(uint64_t a, uint64_t b)
{
	lib_count(lib_calls_add);
	return a + b;
}

LIB_FN uint64_t lib_mul_add(uint64_t a, uint64_t b, uint64_t c)
{
	lib_count(lib_calls_mul_add);
	return a * b + c * lib_scale;
}

/* Fletcher-32 over bytes: a loop with loads and two running sums. */
LIB_FN uint32_t lib_checksum(const uint8_t *buf, size_t n)
{
	uint32_t a = 0xffff, b = 0xffff;
	size_t i;

	lib_count(lib_calls_checksum);
	for (i = 0; i < n; i++) {
		a = (a + buf[i]) % 65535;
		b = (b + a) % 65535;
	}
	return b << 16 | a;
}

/* Dense cases: gcc -O2 builds a jump table (jmp *table(,%reg,8)). */
LIB_FN uint64_t lib_switch(uint32_t op, uint64_t x)
{
	lib_count(lib_calls_switch);
	switch (op) {
	case 0: return x + 11;
	case 1: return x ^ 0x5a5a;
	case 2: return x * 7;
	case 3: return x >> 3;
	case 4: return x - 1000;
	case 5: return ~x;
	case 6: return x << 5;
	case 7: return x | 0x100;
	case 8: return x & 0xff00;
	case 9: return x * x;
	default: return 0;
	}
}

/* A loop with a call in it: sum of v[i] through lib_add. */
LIB_FN uint64_t lib_sum_calls(const uint64_t *v, size_t n)
{
	uint64_t s = 0;
	size_t i;

	lib_count(lib_calls_sum_calls);
	for (i = 0; i < n; i++)
		s = lib_add(s, v[i]);
	return s;
}
