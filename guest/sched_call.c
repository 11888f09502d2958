// SPDX-License-Identifier: MIT
/*
 * sched_call.c - a static call in kernel (CPL0) text: the LAPIC timer
 * calls sched_tick_hook() on every tick (guest/entry.S), which calls
 * through sc_tick.  Both targets count their calls, so the VMM can see
 * which one the tick runs after an update.  This file is kernel text
 * (guest.ld lists only the task text), so the VMM rewrites its sites
 * stop-the-world where the host cannot trap a CPL0 INT3; where it can, a
 * tick that hits the site's INT3 nests a #BP frame under the timer's
 * (vmpoke_abi.h, "CPL0 frames").
 */
#include "guest.h"
#include "static_call.h"

uint64_t sc_tick_calls[2];

void sc_tick_a(uint64_t x, uint64_t *out)
{
	(void)x;
	(void)out;
	__atomic_fetch_add(&sc_tick_calls[0], 1, __ATOMIC_RELAXED);
}

void sc_tick_b(uint64_t x, uint64_t *out)
{
	(void)x;
	(void)out;
	__atomic_fetch_add(&sc_tick_calls[1], 1, __ATOMIC_RELAXED);
}

struct vmpoke_static_call_key __SCK__sc_tick = { .func = (uintptr_t)sc_tick_a };

SC_TRAMP(".text.sc_tick_tramp", sc_tick, sc_tick_a);
SC_TARGET(sc_tick, sc_tick_a);
SC_TARGET(sc_tick, sc_tick_b);

/* Called from the timer at CPL0 with every task register saved. */
__attribute__((noinline)) void sched_tick_hook(void)
{
	uint64_t x = 0, *out = NULL;

	SC_CALL(sc_tick, x, out);
}
