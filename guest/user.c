/* SPDX-License-Identifier: MIT */
/*
 * user.c - the CPL3 workloads, one task function per scenario.
 *
 * Tasks run natively at CPL3 with IF=1 and are preempted by the LAPIC
 * timer (entry.S).  They reach the VMM only through MMIO doorbells.
 *
 * Finishing (boot_info.iterations > 0): a task rings VMPOKE_HC_TASK_DONE,
 * sets its state DONE and parks (done_park()).  The scheduler never
 * resumes a DONE task, and it never takes the CPU from the current task
 * while no other is runnable, so once every task of a vCPU is DONE the
 * current one - whichever it is - runs its park loop, sees that all are
 * DONE and rings VMPOKE_HC_DONE (result 0) for the vCPU, once
 * (guest_vcpu_done_rung[]).  The doorbell is therefore never stranded in a
 * task that was preempted between DONE and ringing, and the VMM sees
 * every task DONE when the vCPU reports DONE.  Without a tick (hz = 0)
 * nothing would ever move the vCPU on, so a finishing task hands the CPU
 * to the next never-started task itself (see task_handoff()).
 */
#include "guest.h"
#include "user.h"
#include "sites.h"
#include "probelib.h"
#include "jump_label.h"
#include "static_call.h"
#include "livepatch.h"

#define INT3_DEFAULT_COUNT	1000

extern void lab_task_main(struct vmpoke_task *t) __attribute__((weak));

void user_park(void)
{
	for (;;)
		__asm__ volatile("pause" : : : "memory");
}

static void copy_what(char *d, const char *s)
{
	unsigned int i = 0;

	for (; s && s[i] && i < sizeof(((struct vmpoke_check *)0)->what) - 1; i++)
		d[i] = s[i];
	for (; i < sizeof(((struct vmpoke_check *)0)->what); i++)
		d[i] = 0;
}

void user_puts(struct vmpoke_task *t, const char *s)
{
	char *text = vmpoke_percpu[t->vcpu].mailbox.text;
	unsigned int i;

	for (i = 0; s[i] && i < sizeof(vmpoke_percpu[0].mailbox.text) - 1; i++)
		text[i] = s[i];
	text[i] = 0;
	user_doorbell(VMPOKE_HC_PUTS, 0);
}

void user_check_fail(struct vmpoke_task *t, uint64_t site, uint64_t expected,
		     uint64_t actual, const char *what)
{
	struct vmpoke_check *c = &t->last_check;

	c->site = site;
	c->expected = expected;
	c->actual = actual;
	c->vcpu = t->vcpu;
	c->task = t->id;
	copy_what(c->what, what);
	/* the mailbox too, for a VMM that reads the check from there */
	vmpoke_percpu[t->vcpu].mailbox.check = *c;
	t->check_failures++;
	user_doorbell(VMPOKE_HC_CHECK_FAIL, t->id);
}

/*
 * hz = 0: no tick will ever take the CPU from us, and every other task of
 * this vCPU is RUNNABLE but has never run, so its context is just entry
 * point, stack and argument.  Start it here, at CPL3.
 */
static void task_handoff(struct vmpoke_task *t)
{
	uint32_t base = t->vcpu * VMPOKE_MAX_TASKS, s;
	struct vmpoke_task *n;

	for (s = 0; s < guest_tasks_per_vcpu; s++) {
		n = &vmpoke_tasks.tasks[base + s];
		if (n->state != VMPOKE_TASK_RUNNABLE)
			continue;
		n->state = VMPOKE_TASK_RUNNING;
		n->switches++;
		vmpoke_percpu[t->vcpu].current_task = n->id;
		__asm__ volatile("movq %0, %%rsp; jmp *%1"
				 : : "r"(n->ctx.rsp), "r"(n->ctx.rip),
				   "D"(n->ctx.rdi) : "memory");
		__builtin_unreachable();
	}
}

static int vcpu_all_done(uint32_t vcpu)
{
	const struct vmpoke_task *t = &vmpoke_tasks.tasks[vcpu * VMPOKE_MAX_TASKS];
	uint32_t s;

	for (s = 0; s < guest_tasks_per_vcpu; s++)
		if (__atomic_load_n(&t[s].state, __ATOMIC_SEQ_CST) !=
		    VMPOKE_TASK_DONE)
			return 0;
	return 1;
}

static void __attribute__((noreturn)) done_park(struct vmpoke_task *t)
{
	uint32_t *rung = &guest_vcpu_done_rung[t->vcpu];

	for (;;) {
		if (!__atomic_load_n(rung, __ATOMIC_SEQ_CST) &&
		    vcpu_all_done(t->vcpu) &&
		    !__atomic_exchange_n(rung, 1, __ATOMIC_SEQ_CST)) {
			vmpoke_percpu[t->vcpu].mailbox.arg[0] = VMPOKE_RESULT_OK;
			user_doorbell(VMPOKE_HC_DONE, VMPOKE_RESULT_OK);
		}
		__asm__ volatile("pause" : : : "memory");
	}
}

void user_task_done(struct vmpoke_task *t)
{
	/* doorbell first: once DONE we may never run again */
	user_doorbell(VMPOKE_HC_TASK_DONE, t->id);
	__atomic_store_n(&t->state, VMPOKE_TASK_DONE, __ATOMIC_SEQ_CST);
	if (!guest_cfg.hz)
		task_handoff(t);
	done_park(t);
}

static uint64_t next_x(uint64_t *state)
{
	*state = *state * 6364136223846793005ull + 1442695040888963407ull;
	return (*state >> 33) & SITE_X_MASK;
}

/* One checker per site: returns 0 or reports and returns 1. */
typedef int (*site_check_fn)(struct vmpoke_task *t, uint64_t x);

#define CHECK_SET(name, fn, e0, e1, e2, n)				\
static int name(struct vmpoke_task *t, uint64_t x)			\
{									\
	uint64_t r = fn(x), e[3] = { (e0), (e1), (e2) };		\
	unsigned int i;							\
									\
	for (i = 0; i < (n); i++)					\
		if (r == e[i])						\
			return 0;					\
	user_check_fail(t, (uintptr_t)fn, e[0], r, #fn);		\
	return 1;							\
}

CHECK_SET(check_nop5_a, site_nop5_a, x ^ 0x1111, x ^ 0x2222, 0, 2)
CHECK_SET(check_nop5_b, site_nop5_b, x + 0x33, x + 0x44, 0, 2)
CHECK_SET(check_nop2_a, site_nop2_a, x ^ 0x5555, x ^ 0x6666, 0, 2)
CHECK_SET(check_nop2_b, site_nop2_b, x + 0x77, x + 0x88, 0, 2)
CHECK_SET(check_call_a, site_call_a, x + 0x100, x + 0x200, x + 0x300, 3)
CHECK_SET(check_call_b, site_call_b, x + 0x101, x + 0x201, x + 0x301, 3)
CHECK_SET(check_jcc_a, site_jcc_a,
	  (x & 1) ? x ^ 0xa1 : x ^ 0xa0, x ^ 0xa2, 0, (x & 1) ? 2 : 1)
CHECK_SET(check_jcc_b, site_jcc_b,
	  (x & 2) ? x + 0xb0 : x + 0xb1, x + 0xb2, 0, (x & 2) ? 1 : 2)
CHECK_SET(check_multi_a, site_multi_a, (uint32_t)x ^ 0x5a, 0, 0, 1)
CHECK_SET(check_multi_b, site_multi_b, (uint32_t)(~(x + 7) << 1), 0, 0, 1)
CHECK_SET(check_multi_c, site_multi_c, (uint32_t)x ^ 0x3c, 0, 0, 1)

static const site_check_fn site_checks[] = {
	check_nop5_a, check_nop5_b, check_nop2_a, check_nop2_b,
	check_call_a, check_call_b, check_jcc_a, check_jcc_b,
	check_multi_a, check_multi_b, check_multi_c,
};
#define NR_CHECKS (sizeof(site_checks) / sizeof(site_checks[0]))

static int lib_expect(struct vmpoke_task *t, uintptr_t fn,
		      uint64_t expected, uint64_t actual, const char *what)
{
	if (expected == actual)
		return 0;
	user_check_fail(t, fn, expected, actual, what);
	return 1;
}

/* Fletcher-32 again, written as the definition (two sums mod 65535). */
static uint32_t ref_fletcher(const uint8_t *buf, size_t n)
{
	uint64_t lo = 0xffff, hi = 0xffff;

	while (n--) {
		lo += *buf++;
		lo -= lo >= 65535 ? 65535 : 0;
		hi += lo;
		hi -= hi >= 65535 ? 65535 : 0;
	}
	return (uint32_t)(hi << 16 | lo);
}

/*
 * One call of every lib_* function (probelib.c), each result checked
 * against a value computed here independently: a campaign that patches a
 * library function shows up in the guest's own check failures.
 */
static void check_lib(struct vmpoke_task *t, uint64_t x)
{
	uint64_t v[LIB_SUM_LEN], ops[10];
	uint8_t buf[LIB_CSUM_LEN];
	uint32_t op = (uint32_t)(x % 10);
	unsigned int i;

	lib_expect(t, (uintptr_t)lib_add, x + 0x1234,
		   lib_add(x, 0x1234), "lib_add");
	lib_expect(t, (uintptr_t)lib_mul_add, x * 5 + 7 * 3,
		   lib_mul_add(x, 5, 7), "lib_mul_add");
	for (i = 0; i < LIB_CSUM_LEN; i++)
		buf[i] = (uint8_t)(x >> (i % 8) * 8) + (uint8_t)i;
	lib_expect(t, (uintptr_t)lib_checksum, ref_fletcher(buf, LIB_CSUM_LEN),
		   lib_checksum(buf, LIB_CSUM_LEN), "lib_checksum");
	ops[0] = x + 11;
	ops[1] = x ^ 0x5a5a;
	ops[2] = x * 7;
	ops[3] = x >> 3;
	ops[4] = x - 1000;
	ops[5] = ~x;
	ops[6] = x << 5;
	ops[7] = x | 0x100;
	ops[8] = x & 0xff00;
	ops[9] = x * x;
	lib_expect(t, (uintptr_t)lib_switch, ops[op], lib_switch(op, x),
		   "lib_switch");
	for (i = 0; i < LIB_SUM_LEN; i++)
		v[i] = x + i;
	lib_expect(t, (uintptr_t)lib_sum_calls, LIB_SUM_LEN * x + 6,
		   lib_sum_calls(v, LIB_SUM_LEN), "lib_sum_calls");
}

/*
 * HOT: every site in table order, a fresh input per call.  TORTURE: the
 * same sites, but each pass starts at a random site and consecutive calls
 * of one site see inputs that flip both the Jcc conditions, so tasks
 * preempted on one vCPU are spread over every site and variant.
 */
static void __attribute__((noreturn)) run_sites(struct vmpoke_task *t,
						int torture)
{
	uint64_t rng = guest_cfg.seed ^ (0x9e3779b97f4a7c15ull * (t->id + 1));
	uint64_t n = guest_cfg.iterations, x;
	unsigned int i, k, start;

	for (;;) {
		x = next_x(&rng);
		start = torture ? x % NR_CHECKS : 0;
		for (k = 0; k < NR_CHECKS; k++) {
			i = (start + k) % NR_CHECKS;
			site_checks[i](t, torture ? (x + k) & SITE_X_MASK
						  : next_x(&rng));
		}
		check_lib(t, x);
		jl_check_all(t);
		sc_check_all(t, x);
		lp_check_all(t, x);
		t->iterations++;
		if (n && t->iterations >= n)
			break;
	}
	user_task_done(t);
}

static void hot_task(struct vmpoke_task *t)
{
	run_sites(t, 0);
}

static void torture_task(struct vmpoke_task *t)
{
	run_sites(t, 1);
}

static void lp_sleeper_task(struct vmpoke_task *t)
{
	lp_sleeper_main(t);
}

static void park_task(struct vmpoke_task *t)
{
	(void)t;
	user_park();
}

static void idle_task(struct vmpoke_task *t)
{
	uint64_t n = guest_cfg.iterations;

	for (;;) {
		__asm__ volatile("pause" : : : "memory");
		t->iterations++;
		if (n && t->iterations >= n)
			user_task_done(t);
	}
}

/* A function of its own, so a fault report names it. */
void __attribute__((noinline, noreturn)) user_ud_crash(void)
{
	__asm__ volatile("ud2");
	__builtin_unreachable();
}

void __attribute__((noinline)) user_pf_crash(void)
{
	/* above the 4 GiB the VMM maps */
	(void)*(volatile uint64_t *)0x5000000000ull;
}

static void ud_task(struct vmpoke_task *t)
{
	(void)t;
	user_ud_crash();
}

static void pf_task(struct vmpoke_task *t)
{
	user_pf_crash();
	user_check_fail(t, (uintptr_t)user_pf_crash, 0, 0, "pf did not fault");
	user_park();
}

static void selfcheck_task(struct vmpoke_task *t)
{
	user_check_fail(t, (uintptr_t)selfcheck_task, 0, 1, "selfcheck");
	user_park();
}

/* The guest's own int3, handled by guest_bp_handler (entry.S). */
void __attribute__((noinline)) user_int3(void)
{
	__asm__ volatile("int3" : : : "memory");
}

static void int3_task(struct vmpoke_task *t)
{
	uint64_t n = guest_cfg.iterations ? guest_cfg.iterations
					  : INT3_DEFAULT_COUNT;
	uint64_t i, seen;

	for (i = 0; i < n; i++) {
		user_int3();
		t->iterations++;
	}
	seen = __atomic_load_n(&t->own_int3, __ATOMIC_SEQ_CST);
	if (seen != n)
		user_check_fail(t, (uintptr_t)user_int3, n, seen, "own int3");
	user_task_done(t);
}

static void lab_task(struct vmpoke_task *t)
{
	if (lab_task_main) {
		lab_task_main(t);
	} else {
		user_puts(t, "guest: lab_task_main is not linked in");
		user_check_fail(t, 0, 0, 0, "lab not built");
	}
	user_park();
}

/*
 * Called at CPL0 by boot.c: which function task (vcpu, slot) starts in.
 * HOT, TORTURE, INT3 and IDLE run on every task.  UD, PF, SELFCHECK and
 * LAB run on task 0 of vCPU 0 only, the others park, so one run reports
 * exactly one fault or check.  TRIPLE (vCPU 0) and PING never reach CPL3:
 * boot.c handles them before the tasks exist.  Kernel text, though it
 * lives here beside the tasks it names.
 */
__kernel_text guest_task_fn guest_task_entry(uint32_t scenario, uint32_t vcpu,
					    uint32_t slot)
{
	int first = vcpu == 0 && slot == 0;

	switch (scenario) {
	case VMPOKE_SCN_HOT:
		return hot_task;
	case VMPOKE_SCN_TORTURE:
		return torture_task;
	case VMPOKE_SCN_LIVEPATCH:
		/* the last task of vCPU 0 is the livepatch straggler */
		return vcpu == 0 && slot + 1 == guest_cfg.tasks_per_vcpu ?
		       lp_sleeper_task : torture_task;
	case VMPOKE_SCN_INT3:
		return int3_task;
	case VMPOKE_SCN_IDLE:
		return idle_task;
	case VMPOKE_SCN_UD:
		return first ? ud_task : park_task;
	case VMPOKE_SCN_PF:
		return first ? pf_task : park_task;
	case VMPOKE_SCN_SELFCHECK:
		return first ? selfcheck_task : park_task;
	case VMPOKE_SCN_LAB:
		return first ? lab_task : park_task;
	default:	/* TRIPLE: vCPU 0 never gets here */
		return park_task;
	}
}
