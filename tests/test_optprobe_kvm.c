// SPDX-License-Identifier: MIT
/*
 * test_optprobe_kvm.c - optimized probes (issue 9) against the running
 * guest on a real /dev/kvm.  The lib_* functions count their own calls per
 * vCPU in lib_calls_<name>[], so a detour that loses or invents a hit
 * shows as a count mismatch, and the HOT tasks check every result, so a
 * wrongly relocated region shows as a check failure.  Probes are placed
 * before vmm_start() of a finite run: the counts are then exact.
 */
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "patcher.h"
#include "probe.h"
#include "symtab.h"
#include "testlib.h"
#include "vmm.h"
#include "../patcher/probe_internal.h"
#include "../patcher/relocate.h"

#define OPT_TIMEOUT_MS	120000
#define OPT_TASKS	2

static const char *const opt_libs[] = {
	"add", "mul_add", "checksum", "switch", "sum_calls",
};
#define NR_OPT_LIBS	(sizeof(opt_libs) / sizeof(opt_libs[0]))

struct oenv {
	struct vm *vm;
	struct patcher *p;
	unsigned int vcpus;
};

static bool oenv_boot_inject(struct oenv *e, unsigned int vcpus, uint64_t iterations,
			     enum poke_inject inject)
{
	struct patcher_opts popts = { .inject = inject };
	struct vm_config cfg = {
		.image = testlib_image(), .nr_vcpus = vcpus, .mem_mib = 64,
		.tasks = OPT_TASKS, .hz = 1000, .scenario = VMPOKE_SCN_HOT,
		.iterations = iterations, .seed = 5, .quiet = true,
	};
	int code;

	memset(e, 0, sizeof(*e));
	e->vcpus = vcpus;
	e->vm = vmm_create(&cfg, &code);
	EXPECT_TRUE_MSG(e->vm != NULL, "vmm_create(%s): exit %d", cfg.image, code);
	if (e->vm)
		e->p = patcher_create(e->vm, inject ? &popts : NULL);
	return e->vm && e->p;
}

static bool oenv_boot(struct oenv *e, unsigned int vcpus, uint64_t iterations)
{
	return oenv_boot_inject(e, vcpus, iterations, POKE_INJECT_NONE);
}

static bool oenv_start(struct oenv *e)
{
	EXPECT_EQ_FATAL(vmm_start(e->vm), 0);
	EXPECT_TRUE_MSG(!vmm_wait_hcall(e->vm, VMPOKE_HC_READY, e->vcpus, OPT_TIMEOUT_MS),
			"the guest did not report READY");
	return true;
}

static void oenv_end(struct oenv *e)
{
	if (e->vm)
		testlib_vm_end(e->vm, e->p);
}

static uint64_t osym(struct oenv *e, const char *fmt, const char *name)
{
	char buf[64];
	const struct sym *s;

	snprintf(buf, sizeof(buf), fmt, name);
	s = symtab_find(vmm_symtab(e->vm), buf);
	EXPECT_TRUE_MSG(s != NULL, "the guest has no symbol %s", buf);
	return s ? s->addr : 0;
}

static struct probe *oplace(struct oenv *e, uint64_t addr)
{
	struct probe_opts o = { .kind = PROBE_KIND_AUTO };
	const char *reason = NULL;
	char msg[512];
	struct probe *pr = probe_add(e->p, addr, &o, &reason, msg, sizeof(msg));

	EXPECT_TRUE_MSG(pr != NULL, "probe_add refused: %s", msg);
	return pr;
}

/* The probe's hits per vCPU equal the function's own counters, exactly. */
static void expect_exact(struct oenv *e, struct probe *pr, const char *lib)
{
	struct probe_counts c;
	uint64_t calls, total = 0;

	probe_counts(pr, &c);
	for (unsigned int v = 0; v < e->vcpus; v++) {
		EXPECT_EQ(vmm_gva_read(e->vm, osym(e, "lib_calls_%s", lib) + 8 * v, &calls, 8),
			  0);
		EXPECT_TRUE_MSG(c.per_vcpu[v] == calls, "lib_%s vCPU %u: probe %llu, guest "
				"%llu", lib, v, (unsigned long long)c.per_vcpu[v],
				(unsigned long long)calls);
		total += calls;
	}
	EXPECT_EQ_U64(total, c.hits);
	EXPECT_TRUE_MSG(total > 0, "lib_%s was never called", lib);
}

/* The detour's counting prologue is what its comment says, per Capstone. */
static void test_optprobe_prologue(void)
{
	uint8_t b[OPTPROBE_CODE_SIZE];
	size_t n = optprobe_prologue(0x200000, b, sizeof(b));

	EXPECT_TRUE(n > 0 && n < 64);
	/* mov %gs:8,%eax reads struct vmpoke_percpu.vcpu */
	EXPECT_EQ(b[8], 0x65);
	EXPECT_EQ(b[12], offsetof(struct vmpoke_percpu, vcpu));
	/* lea counters(%rip),%rcx: rel32 at 22 is relative to 26 */
	EXPECT_EQ_U64(OPTPROBE_CODE_SIZE, 26 + (uint64_t)(int64_t)(int32_t)
		      ((uint32_t)b[22] | (uint32_t)b[23] << 8 | (uint32_t)b[24] << 16 |
		       (uint32_t)b[25] << 24));
	EXPECT_EQ(optprobe_prologue(0, b, 8), 0);
}

/*
 * An optimized probe on each lib_* function where allowed, the named rule
 * where not (lib_switch has a jump table); counts equal the guest's own,
 * exactly; removing them leaves the text as it was.
 */
static void test_optprobe_each_lib(void)
{
	struct probe *pr[NR_OPT_LIBS] = { 0 };
	uint8_t before[NR_OPT_LIBS][16], after[16];
	struct vmm_result res;
	struct oenv e;
	char msg[512];

	if (!testlib_require_kvm() || !oenv_boot(&e, 2, 300))
		goto out;
	for (size_t i = 0; i < NR_OPT_LIBS; i++) {
		uint64_t a = osym(&e, "lib_%s", opt_libs[i]);

		EXPECT_EQ(vmm_gva_read(e.vm, a, before[i], 16), 0);
		pr[i] = oplace(&e, a);
		if (!pr[i])
			continue;
		if (probe_kind_of(pr[i]) != PROBE_KIND_OPTIMIZED) {
			const char *why = probe_opt_refusal(pr[i]);
			bool known = false;

			for (size_t k = 0; probe_reasons[k]; k++)
				known |= !strncmp(why, probe_reasons[k], strlen(probe_reasons[k])) &&
					 why[0];
			EXPECT_TRUE_MSG(known, "lib_%s stayed INT3 without a named rule ('%s')",
					opt_libs[i], why);
		}
	}
	/* the two the issue names: a plain function, and a jump table */
	EXPECT_TRUE_MSG(pr[0] && probe_kind_of(pr[0]) == PROBE_KIND_OPTIMIZED,
			"lib_add: '%s'", pr[0] ? probe_opt_refusal(pr[0]) : "");
	EXPECT_TRUE_MSG(pr[3] && !strcmp(probe_opt_refusal(pr[3]), "indirect_jump"),
			"lib_switch: '%s'", pr[3] ? probe_opt_refusal(pr[3]) : "");
	if (!oenv_start(&e))
		goto out;
	EXPECT_TRUE_MSG(vmm_wait(e.vm, OPT_TIMEOUT_MS, &res) == VMM_DONE, "run: %s",
			res.message);
	for (size_t i = 0; i < NR_OPT_LIBS; i++) {
		if (!pr[i])
			continue;
		expect_exact(&e, pr[i], opt_libs[i]);
		EXPECT_EQ(probe_remove(pr[i], msg, sizeof(msg)), 0);
		/* removed, the detour freed (the run is over): the counts stay exact */
		probe_reap(e.p);
		if (pr[i]->retired)
			EXPECT_EQ(atomic_load(&pr[i]->retired->state), DETOUR_FREED);
		expect_exact(&e, pr[i], opt_libs[i]);
		EXPECT_EQ(vmm_gva_read(e.vm, osym(&e, "lib_%s", opt_libs[i]), after, 16), 0);
		EXPECT_TRUE_MSG(!memcmp(before[i], after, 16), "lib_%s not restored",
				opt_libs[i]);
	}
out:
	oenv_end(&e);
}

/*
 * Unoptimize and optimize again while the function is hot: every hit is
 * counted once - by the detour, or by the INT3 probe while it is one.
 */
static void test_optprobe_unoptimize_hot(void)
{
	struct vmm_result res;
	struct probe *pr;
	struct oenv e;
	const char *why;
	char msg[512];
	unsigned int flips = 0;

	if (!testlib_require_kvm() || !oenv_boot(&e, 2, 300000))
		goto out;
	pr = oplace(&e, osym(&e, "lib_%s", "mul_add"));
	if (!pr || !oenv_start(&e))
		goto out;
	EXPECT_TRUE_MSG(probe_kind_of(pr) == PROBE_KIND_OPTIMIZED, "lib_mul_add: '%s'",
			probe_opt_refusal(pr));
	while (vmm_wait(e.vm, 5, &res) == VMM_TIMEOUT && flips < 200) {
		if (probe_kind_of(pr) == PROBE_KIND_OPTIMIZED) {
			EXPECT_EQ(probe_unoptimize(pr, msg, sizeof(msg)), 0);
			EXPECT_EQ(probe_kind_of(pr), PROBE_KIND_INT3);
		} else if (probe_optimize(pr, &why, msg, sizeof(msg))) {
			/* a task sat in the shadow: a legal outcome, try again */
			EXPECT_TRUE_MSG(!strcmp(why, "shadow_busy"), "%s", msg);
		}
		flips++;
	}
	/*
	 * End optimized: an INT3 hit costs ~1000 iterations' time, so a run
	 * left on INT3 by a last shadow_busy would take minutes on a busy host.
	 */
	for (int i = 0; i < 100 && probe_kind_of(pr) != PROBE_KIND_OPTIMIZED; i++)
		if (probe_optimize(pr, &why, msg, sizeof(msg)))
			usleep(1000);
	EXPECT_TRUE_MSG(vmm_wait(e.vm, OPT_TIMEOUT_MS, &res) == VMM_DONE, "run: %s",
			res.message);
	EXPECT_TRUE_MSG(flips > 2, "only %u flips while the guest ran", flips);
	expect_exact(&e, pr, "mul_add");
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
out:
	oenv_end(&e);
}

/*
 * Remove while a context is inside the detour (a vCPU's RIP planted in
 * it, offline): the detour is not freed, its slots stay in use, its counts
 * stay readable; once the context is gone it is freed.
 */
static void test_optprobe_remove_busy(void)
{
	struct kvm_regs saved, regs;
	struct probe_xol *x;
	struct optprobe_detour *d;
	struct probe *pr;
	struct oenv e;
	char msg[512];
	unsigned int used, i;

	if (!testlib_require_kvm() || !oenv_boot(&e, 2, 0) || !oenv_start(&e))
		goto out;
	pr = oplace(&e, osym(&e, "lib_%s", "add"));
	if (!pr)
		goto out;
	EXPECT_EQ_FATAL(probe_kind_of(pr), PROBE_KIND_OPTIMIZED);
	d = pr->detour;
	x = probe_xol_of(e.p);
	used = xol_count(x, XOL_USED);
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e.vm, 1, &saved), 0);
	regs = saved;
	regs.rip = d->body;		/* preempted in the relocated copy */
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &regs), 0);
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
	EXPECT_EQ(atomic_load(&d->state), DETOUR_RETIRED);
	EXPECT_EQ(x->state[d->slot], XOL_USED);		/* not freed */
	EXPECT_EQ(x->state[d->slot + OPTPROBE_SLOTS - 1], XOL_USED);
	probe_reap(e.p);
	EXPECT_EQ(atomic_load(&d->state), DETOUR_RETIRED);
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &saved), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	/* a guest task may itself be preempted in it: retry, as slots do */
	for (i = 0; i < 200 && atomic_load(&d->state) != DETOUR_FREED; i++) {
		probe_reap(e.p);
		if (atomic_load(&d->state) != DETOUR_FREED)
			usleep(10000);
	}
	EXPECT_EQ(atomic_load(&d->state), DETOUR_FREED);
	EXPECT_EQ(x->state[d->slot], XOL_FREE);
	EXPECT_EQ_U64(used - OPTPROBE_SLOTS - 1, xol_count(x, XOL_USED));	/* and the INT3 slot */
out:
	oenv_end(&e);
}

struct hctx {
	uint64_t addr;
	atomic_uint_fast64_t calls, bad_rip;
};

static enum probe_verdict count_handler(struct probe_hit_ctx *ctx, void *opaque)
{
	struct hctx *h = opaque;

	atomic_fetch_add(&h->calls, 1);
	if (ctx->regs->rip != h->addr)
		atomic_fetch_add(&h->bad_rip, 1);
	return PROBE_RESUME;
}

/*
 * With a handler: the detour rings VMPOKE_HC_PROBE (one exit, no #BP);
 * the handler sees the context at the probe address, once per call.
 */
static void test_optprobe_handler(void)
{
	struct hctx h = { 0 };
	struct probe_opts o = { .kind = PROBE_KIND_OPTIMIZED, .handler = count_handler,
				.opaque = &h };
	struct vmm_result res;
	struct probe *pr;
	const char *why;
	struct oenv e;
	char msg[512];

	if (!testlib_require_kvm() || !oenv_boot(&e, 2, 2000))
		goto out;
	h.addr = osym(&e, "lib_%s", "mul_add");
	pr = probe_add(e.p, h.addr, &o, &why, msg, sizeof(msg));
	EXPECT_TRUE_MSG(pr != NULL, "%s", msg);
	if (!pr || !oenv_start(&e))
		goto out;
	EXPECT_TRUE_MSG(probe_kind_of(pr) == PROBE_KIND_OPTIMIZED, "'%s'",
			probe_opt_refusal(pr));
	EXPECT_TRUE_MSG(vmm_wait(e.vm, OPT_TIMEOUT_MS, &res) == VMM_DONE, "run: %s",
			res.message);
	expect_exact(&e, pr, "mul_add");
	EXPECT_EQ_U64(atomic_load(&h.calls), vmm_hcall_count(e.vm, VMPOKE_HC_PROBE));
	EXPECT_EQ_U64(0, atomic_load(&h.bad_rip));
	{
		struct probe_counts c;

		probe_counts(pr, &c);
		EXPECT_EQ_U64(c.hits, atomic_load(&h.calls));
	}
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
out:
	oenv_end(&e);
}

/*
 * Seed 000, planted: vCPU 1 (offline) sits at lib_mul_add+3, the second
 * displaced instruction, with %rax non-canonical.  The probe shadow sees
 * it and the probe stays INT3 ("shadow_busy"); with the check skipped
 * (--inject no-optimize-shadow) the JMP goes in, and the context resumes
 * inside its rel32: the bytes there ("00 00" while the detour is within
 * 64 KiB, add %al,(%rax)) fault on %rax, and the guest reports it.
 */
static void plant_in_range(bool inject)
{
	struct probe_opts o = { .kind = PROBE_KIND_INT3 };
	struct kvm_regs saved, regs;
	struct vmm_result res;
	enum vmm_outcome out;
	struct probe *pr;
	struct oenv e;
	const char *why = "";
	char msg[512];
	uint64_t addr;
	int r;

	if (!oenv_boot_inject(&e, 2, 0, inject ? POKE_INJECT_NO_OPTIMIZE_SHADOW :
			      POKE_INJECT_NONE) || !oenv_start(&e))
		goto out;
	addr = osym(&e, "lib_%s", "mul_add");
	pr = probe_add(e.p, addr, &o, &why, msg, sizeof(msg));
	EXPECT_TRUE_MSG(pr != NULL, "%s", msg);
	if (!pr)
		goto out;
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e.vm, 1, &saved), 0);
	regs = saved;
	regs.rip = addr + 3;		/* mov %gs:vcpu,%edx, inside the JMP's bytes */
	regs.rax = 0xdead000000000000ull;
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &regs), 0);
	r = probe_optimize(pr, &why, msg, sizeof(msg));
	if (!inject) {
		EXPECT_TRUE_MSG(r == -1 && !strcmp(why, "shadow_busy"), "optimize: %d %s",
				r, msg);
		EXPECT_TRUE_MSG(strstr(msg, "vcpu 1") != NULL, "culprit not named: %s", msg);
		EXPECT_EQ(probe_kind_of(pr), PROBE_KIND_INT3);
		EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &saved), 0);
		EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
		EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
		goto out;
	}
	EXPECT_TRUE_MSG(r == 0 && probe_kind_of(pr) == PROBE_KIND_OPTIMIZED, "optimize: %s",
			msg);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	out = vmm_wait(e.vm, 20000, &res);
	EXPECT_TRUE_MSG(out == VMM_GUEST_FAULT || out == VMM_GUEST_CHECK ||
			out == VMM_TRIPLE_FAULT || out == VMM_INTERNAL_ERROR,
			"not detected: outcome %d (%s)", out, res.message);
	/* the guest is dead: nothing to restore through the protocol */
	patcher_destroy(e.p);
	e.p = NULL;
	vmm_stop(e.vm);
	vmm_wait(e.vm, OPT_TIMEOUT_MS, &res);
	vmm_destroy(e.vm);
	return;
out:
	oenv_end(&e);
}

static void test_optprobe_shadow_planted(void)
{
	if (testlib_require_kvm())
		plant_in_range(false);
}

static void test_optprobe_inject_no_shadow(void)
{
	if (testlib_require_kvm())
		plant_in_range(true);
}

TEST_SUITE(optprobe_unit, "optprobe_unit", false, TEST(test_optprobe_prologue))
TEST_SUITE(optprobe_kvm, "optprobe_kvm", true,
	   TEST(test_optprobe_each_lib), TEST(test_optprobe_unoptimize_hot),
	   TEST(test_optprobe_remove_busy), TEST(test_optprobe_handler),
	   TEST(test_optprobe_shadow_planted), TEST(test_optprobe_inject_no_shadow))
