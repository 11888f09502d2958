// SPDX-License-Identifier: MIT
/*
 * livepatch.c - the guest's livepatch targets (vmpoke_abi.h, "Livepatch"):
 * CPL3 task text, built with -pg -mfentry -mnop-mcount (every function
 * starts with the fentry NOP5 the VMM redirects) and frame pointers (the
 * VMM walks the stacks of tasks preempted in here).
 *
 *   lp_mix    x * 3 + 1     lp_mix__v2  x * 3 + 2    lp_mix__v3  x * 5 + 3
 *   lp_hash   x ^ 0x1234    lp_hash__v2 (x ^ 0x1234) + 0x10
 *   lp_sleep  x + 7         lp_sleep__v2 x + 8  (both block for the sleeper)
 *
 * The check is exact but fair.  The VMM switches a task (patch_state) only
 * while the task is preempted, and never while it is inside the body being
 * replaced.  So a task that was not preempted outside f between reading
 * its expected version and reading it again after f returned must get
 * exactly that version, the same before and after: every target counts
 * the preemptions inside its own body (lp_inner[]), the check counts all
 * of them (t->switches), and the difference is the preemptions outside f.
 * If there were any, or a force() happened (VMPOKE_PATCH_FORCED moved),
 * any version of f is accepted.  A task the VMM switched while it sat
 * inside f (seed 004's bug class, `--inject no-stack-check`) returns with
 * the old result into code that expects the new one: a check failure.
 */
#include "guest.h"
#include "user.h"
#include "livepatch.h"

typedef uint64_t (*lp_fn)(struct vmpoke_task *t, uint64_t x);

#define LP_FN		__attribute__((noinline, used))
#define LP_CAP		VMPOKE_TASKS_CAPACITY

/* Preemptions of each task inside a target's body. */
static uint64_t lp_inner[LP_CAP];
/* The sleeper asks lp_sleep to block (set around its own call only). */
static uint8_t lp_nap[LP_CAP];
/*
 * Exported for tests: ticks a nap lasts (re-read while napping, so a test
 * can hold the sleeper inside lp_sleep and let it go), the sleeper inside
 * its nap, naps done.
 */
volatile uint32_t lp_sleep_ticks;
volatile uint32_t lp_sleeper_in;
volatile uint64_t lp_sleeps;

struct vmpoke_klp_func __KLP__lp_mix, __KLP__lp_hash, __KLP__lp_sleep;

static inline uint64_t lp_load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

static inline uint64_t lp_ticks(void)
{
	uint64_t v;

	__asm__ volatile("movq %%gs:%c1, %0" : "=r"(v) : "i"(PCPU_TICKS));
	return v;
}

#define LP_IN(t)	uint64_t lp_sw0_ = lp_load(&(t)->switches)
#define LP_OUT(t)	(lp_inner[(t)->id % LP_CAP] += lp_load(&(t)->switches) - lp_sw0_)

/* Block in a loop across ticks, inside the caller's body. */
static inline __attribute__((always_inline)) void lp_block(struct vmpoke_task *t)
{
	uint64_t t0;

	if (!lp_nap[t->id % LP_CAP] || !lp_sleep_ticks)
		return;
	lp_sleeper_in = 1;
	t0 = lp_ticks();
	while (lp_ticks() - t0 < lp_sleep_ticks)
		__asm__ volatile("pause" : : : "memory");
	lp_sleeper_in = 0;
	lp_sleeps++;
}

/* One version of a target: its own function, with its own fentry NOP5. */
#define LP_VERSION(name, expr)						\
LP_FN uint64_t name(struct vmpoke_task *t, uint64_t x)			\
{									\
	LP_IN(t);							\
	x = (expr);							\
	LP_OUT(t);							\
	return x;							\
}

LP_VERSION(lp_mix, x * 3 + 1)
LP_VERSION(lp_mix__v2, x * 3 + 2)
LP_VERSION(lp_mix__v3, x * 5 + 3)
LP_VERSION(lp_hash, x ^ 0x1234)
LP_VERSION(lp_hash__v2, (x ^ 0x1234) + 0x10)
/* lp_block() is inlined: the sleeper's loop is inside lp_sleep's body */
LP_VERSION(lp_sleep, (lp_block(t), x + 7))
LP_VERSION(lp_sleep__v2, (lp_block(t), x + 8))

/* What version fn returns for x; 0 if fn is none of ours. */
static int lp_ref(uintptr_t fn, uint64_t x, uint64_t *r)
{
	if (fn == (uintptr_t)lp_mix)
		*r = x * 3 + 1;
	else if (fn == (uintptr_t)lp_mix__v2)
		*r = x * 3 + 2;
	else if (fn == (uintptr_t)lp_mix__v3)
		*r = x * 5 + 3;
	else if (fn == (uintptr_t)lp_hash)
		*r = x ^ 0x1234;
	else if (fn == (uintptr_t)lp_hash__v2)
		*r = (x ^ 0x1234) + 0x10;
	else if (fn == (uintptr_t)lp_sleep)
		*r = x + 7;
	else if (fn == (uintptr_t)lp_sleep__v2)
		*r = x + 8;
	else
		return 0;
	return 1;
}

/* Is r what some version of the target orig returns for x? */
static int lp_any(lp_fn orig, uint64_t x, uint64_t r)
{
	static const lp_fn all[] = { lp_mix, lp_mix__v2, lp_mix__v3, lp_hash,
				     lp_hash__v2, lp_sleep, lp_sleep__v2 };
	static const uint8_t family[] = { 0, 0, 0, 1, 1, 2, 2 };
	unsigned int i, fam = 3;
	uint64_t v;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i] == orig)
			fam = family[i];
	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (family[i] == fam && lp_ref((uintptr_t)all[i], x, &v) && v == r)
			return 1;
	return 0;
}

/* The version this task must run now, by __KLP__ and its patch_state. */
static uintptr_t lp_want(struct vmpoke_task *t, const struct vmpoke_klp_func *d,
			 lp_fn orig, uint32_t *ps)
{
	uint32_t st = __atomic_load_n(&d->state, __ATOMIC_SEQ_CST);
	uint64_t fn = __atomic_load_n(&d->func, __ATOMIC_SEQ_CST);

	*ps = __atomic_load_n(&t->patch_state, __ATOMIC_SEQ_CST);
	if (st == VMPOKE_KLP_NEW || (st == VMPOKE_KLP_TRANSITION &&
				     (*ps & VMPOKE_PATCH_PATCHED)))
		return fn;
	return (uintptr_t)orig;
}

static void lp_check(struct vmpoke_task *t, lp_fn f, const struct vmpoke_klp_func *d,
		     uint64_t x, const char *what, const char *switched)
{
	uint64_t *inner = &lp_inner[t->id % LP_CAP];
	uint64_t sw0, sw1, in0, in1, r, want;
	uintptr_t e0, e1;
	uint32_t ps0, ps1;

	sw0 = lp_load(&t->switches);
	in0 = lp_load(inner);
	e0 = lp_want(t, d, f, &ps0);
	r = f(t, x);
	e1 = lp_want(t, d, f, &ps1);
	in1 = lp_load(inner);
	sw1 = lp_load(&t->switches);
	if (!lp_any(f, x, r)) {
		user_check_fail(t, (uintptr_t)f, x, r, what);
		return;
	}
	/* preempted outside f, or forced: either version is fair */
	if (sw1 - sw0 != in1 - in0 || ((ps0 ^ ps1) & VMPOKE_PATCH_FORCED))
		return;
	if (!lp_ref(e1, x, &want))
		user_check_fail(t, (uintptr_t)f, e1, r, "lp: unknown version");
	else if (e0 != e1 || r != want)
		/* e0 != e1: switched while inside f, back into code expecting e1 */
		user_check_fail(t, (uintptr_t)f, want, r, e0 != e1 ? switched : what);
}

void lp_check_all(struct vmpoke_task *t, uint64_t x)
{
	lp_check(t, lp_mix, &__KLP__lp_mix, x, "lp_mix", "lp_mix: switched inside");
	lp_check(t, lp_hash, &__KLP__lp_hash, x + 1, "lp_hash", "lp_hash: switched inside");
	lp_check(t, lp_sleep, &__KLP__lp_sleep, x + 2, "lp_sleep",
		 "lp_sleep: switched inside");
}

/*
 * The sleeper: half of its time blocked inside lp_sleep (a nap of
 * lp_sleep_ticks ticks), the other half outside it, calling the targets
 * like every task.  So a transition that replaces lp_sleep always finds it
 * a straggler for a while, and always sees it leave.
 */
void lp_sleeper_main(struct vmpoke_task *t)
{
	uint64_t x = 0x5eed + t->id, t0;

	if (!lp_sleep_ticks)
		lp_sleep_ticks = guest_cfg.hz / 2;
	for (;;) {
		lp_nap[t->id % LP_CAP] = 1;
		lp_check(t, lp_sleep, &__KLP__lp_sleep, x, "lp_sleep (sleeper)",
			 "lp_sleep: switched inside");
		lp_nap[t->id % LP_CAP] = 0;
		t0 = lp_ticks();
		do {
			lp_check_all(t, ++x & 0xffffff);
			t->iterations++;
		} while (lp_sleep_ticks && lp_ticks() - t0 < lp_sleep_ticks);
	}
}
