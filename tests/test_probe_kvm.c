// SPDX-License-Identifier: MIT
/*
 * test_probe_kvm.c - INT3 probes against the running guest on a real
 * /dev/kvm.  The lib_* functions (guest/probelib.c) count their own calls
 * per vCPU in lib_calls_<name>[], and the HOT tasks check every result,
 * so a probe that loses or invents a hit, runs the original instruction
 * wrongly or corrupts a register shows up as a count mismatch or a guest
 * check failure.  Probes placed before vmm_start() see every call of a
 * finite run, which makes the counts exact.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <capstone/capstone.h>
#include <string.h>
#include <unistd.h>

#include "patcher.h"
#include "probe.h"
#include "symtab.h"
#include "testlib.h"
#include "vmm.h"
#include "../patcher/probe_internal.h"

#define RUN_TIMEOUT_MS	120000
#define ITERATIONS	400	/* per task */
#define TASKS		2

static const char *const lib_names[] = {
	"add", "mul_add", "checksum", "switch", "sum_calls",
};
#define NR_LIBS	(sizeof(lib_names) / sizeof(lib_names[0]))

struct penv {
	struct vm *vm;
	struct patcher *p;
	unsigned int vcpus;
};

/* A VM and a patcher, not started: probes placed now see every call. */
static bool penv_create(struct penv *e, unsigned int vcpus, uint64_t iterations)
{
	struct vm_config cfg = {
		.image = testlib_image(), .nr_vcpus = vcpus, .mem_mib = 64,
		.tasks = TASKS, .hz = 1000, .scenario = VMPOKE_SCN_HOT,
		.iterations = iterations, .seed = 11, .quiet = true,
	};
	int code;

	memset(e, 0, sizeof(*e));
	e->vcpus = vcpus;
	e->vm = vmm_create(&cfg, &code);
	EXPECT_TRUE_MSG(e->vm != NULL, "vmm_create(%s) failed: exit %d", cfg.image, code);
	if (!e->vm)
		return false;
	e->p = patcher_create(e->vm, NULL);
	EXPECT_NOT_NULL(e->p);
	return e->p != NULL;
}

static bool penv_start(struct penv *e)
{
	if (vmm_start(e->vm))
		return false;
	EXPECT_TRUE_MSG(!vmm_wait_hcall(e->vm, VMPOKE_HC_READY, e->vcpus, RUN_TIMEOUT_MS),
			"the guest did not report READY on %u vCPUs", e->vcpus);
	return true;
}

/* A finite run must end DONE: every task finished with every check passed. */
static void penv_wait_done(struct penv *e)
{
	struct vmm_result res;
	enum vmm_outcome o = vmm_wait(e->vm, RUN_TIMEOUT_MS, &res);

	EXPECT_TRUE_MSG(o == VMM_DONE, "run ended with outcome %d: %s", o, res.message);
}

static void penv_end(struct penv *e, bool expect_healthy)
{
	struct vmm_result res;

	if (!e->vm)
		return;
	if (expect_healthy) {
		EXPECT_EQ_U64(0, vmm_hcall_count(e->vm, VMPOKE_HC_CHECK_FAIL));
		EXPECT_EQ_U64(0, vmm_hcall_count(e->vm, VMPOKE_HC_FAULT));
	}
	patcher_destroy(e->p);
	vmm_stop(e->vm);
	vmm_wait(e->vm, RUN_TIMEOUT_MS, &res);
	vmm_destroy(e->vm);
	e->vm = NULL;
}

static uint64_t sym_addr(struct penv *e, const char *name)
{
	const struct sym *s = symtab_find(vmm_symtab(e->vm), name);

	EXPECT_TRUE_MSG(s != NULL, "the guest has no symbol %s", name);
	return s ? s->addr : 0;
}

static uint64_t lib_calls(struct penv *e, const char *lib, unsigned int vcpu)
{
	char name[64];
	uint64_t v = 0;

	snprintf(name, sizeof(name), "lib_calls_%s", lib);
	EXPECT_EQ(vmm_gva_read(e->vm, sym_addr(e, name) + vcpu * 8, &v, 8), 0);
	return v;
}

static struct probe *place(struct penv *e, uint64_t addr, const struct probe_opts *o)
{
	const char *reason = NULL;
	char msg[512];
	struct probe *pr = probe_add(e->p, addr, o, &reason, msg, sizeof(msg));

	EXPECT_TRUE_MSG(pr != NULL, "probe_add refused: %s", msg);
	return pr;
}

/*
 * A probe on every library function, placed before the tasks start: each
 * probe's hits on each vCPU equal that vCPU's own lib_calls_ count, which
 * is exactly tasks x iterations x calls per iteration.  Then removed: the
 * guest's text is as it was.
 */
static void test_probe_lib_counts(void)
{
	struct probe *pr[NR_LIBS];
	struct probe_counts c;
	uint8_t before[NR_LIBS][16], after[16];
	struct penv e;
	char name[64], msg[256];
	unsigned int i, v;

	if (!testlib_require_kvm() || !penv_create(&e, 2, ITERATIONS))
		goto out;
	for (i = 0; i < NR_LIBS; i++) {
		snprintf(name, sizeof(name), "lib_%s", lib_names[i]);
		EXPECT_EQ(vmm_gva_read(e.vm, sym_addr(&e, name), before[i], 16), 0);
		pr[i] = place(&e, sym_addr(&e, name), NULL);
		if (!pr[i])
			goto out;
		EXPECT_EQ(probe_kind_of(pr[i]), PROBE_KIND_INT3);
		EXPECT_EQ_U64(sym_addr(&e, name), probe_addr(pr[i]));
	}
	if (!penv_start(&e))
		goto out;
	penv_wait_done(&e);
	for (i = 0; i < NR_LIBS; i++) {
		uint64_t per_call = !strcmp(lib_names[i], "add") ? 1 + 4 : 1;

		probe_counts(pr[i], &c);
		EXPECT_EQ_U64(0, c.missed);
		for (v = 0; v < e.vcpus; v++) {
			EXPECT_EQ_U64((uint64_t)TASKS * ITERATIONS * per_call,
				      lib_calls(&e, lib_names[i], v));
			EXPECT_EQ_U64(lib_calls(&e, lib_names[i], v), c.per_vcpu[v]);
		}
		EXPECT_EQ_U64(c.per_vcpu[0] + c.per_vcpu[1], c.hits);
		EXPECT_EQ(probe_remove(pr[i], msg, sizeof(msg)), 0);
		EXPECT_TRUE(probe_removed(pr[i]));
		snprintf(name, sizeof(name), "lib_%s", lib_names[i]);
		EXPECT_EQ(vmm_gva_read(e.vm, sym_addr(&e, name), after, 16), 0);
		EXPECT_EQ(memcmp(before[i], after, 16), 0);
	}
out:
	penv_end(&e, true);
}

/*
 * A handler that returns SKIP: it does lib_add's work itself (rax = rdi +
 * rsi) and returns to the caller (rip = [rsp], rsp += 8).  The tasks'
 * checks all pass, yet lib_add's body never runs: its counter stays 0.
 */
static enum probe_verdict skip_add(struct probe_hit_ctx *ctx, void *opaque)
{
	struct penv *e = opaque;
	uint64_t ret;

	if (vmm_gva_read(e->vm, ctx->regs->rsp, &ret, 8))
		return PROBE_RESUME;
	ctx->regs->rax = ctx->regs->rdi + ctx->regs->rsi;
	ctx->regs->rip = ret;
	ctx->regs->rsp += 8;
	return PROBE_SKIP;
}

static void test_probe_skip(void)
{
	struct probe_opts o = { .handler = skip_add };
	struct probe_counts c;
	struct probe *pr;
	struct penv e;

	if (!testlib_require_kvm() || !penv_create(&e, 2, ITERATIONS))
		goto out;
	o.opaque = &e;
	pr = place(&e, sym_addr(&e, "lib_add"), &o);
	if (!pr || !penv_start(&e))
		goto out;
	penv_wait_done(&e);
	probe_counts(pr, &c);
	EXPECT_EQ_U64((uint64_t)e.vcpus * TASKS * ITERATIONS * 5, c.hits);
	for (unsigned int v = 0; v < e.vcpus; v++)
		EXPECT_EQ_U64(0, lib_calls(&e, "add", v));
	/* the caller of lib_sum_calls still got its sums: no check failed */
out:
	penv_end(&e, true);
}

/*
 * The same SKIP, but off by one: the guest's own checks must see it
 * (register writes really reach the guest).
 */
static enum probe_verdict skip_add_wrong(struct probe_hit_ctx *ctx, void *opaque)
{
	enum probe_verdict v = skip_add(ctx, opaque);

	ctx->regs->rax += 1;
	return v;
}

static void test_probe_skip_seen(void)
{
	struct probe_opts o = { .handler = skip_add_wrong, .max_hits = 50 };
	struct probe_counts c;
	struct probe *pr;
	struct penv e;

	if (!testlib_require_kvm() || !penv_create(&e, 1, 0))
		goto out;
	o.opaque = &e;
	vmm_set_check_fail_fatal(e.vm, false);
	pr = place(&e, sym_addr(&e, "lib_add"), &o);
	if (!pr || !penv_start(&e))
		goto out;
	for (int i = 0; i < 200 && !probe_removed(pr); i++) {
		usleep(10000);
		probe_reap(e.p);
	}
	probe_counts(pr, &c);
	EXPECT_EQ_U64(50, c.hits);		/* max_hits, exactly */
	EXPECT_TRUE(probe_removed(pr));	/* reaped */
	EXPECT_TRUE_MSG(vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL) > 0,
			"an off-by-one lib_add went unnoticed by the guest");
out:
	penv_end(&e, false);
}

/*
 * Recursion, seed 001 (docs/design.md): a handler that sends the vCPU straight back to the
 * probe (SKIP with rip unchanged) must not loop: the hit right after the
 * SKIP counts as missed and runs the original.  Exactly one hit and one
 * miss per call.
 */
static enum probe_verdict skip_to_self(struct probe_hit_ctx *ctx, void *opaque)
{
	(void)ctx;
	(void)opaque;
	return PROBE_SKIP;	/* ctx->regs->rip is the probe address */
}

struct reenter {
	struct patcher *p;
	atomic_int calls, add_refused, remove_refused;
	char reason[32];
};

/* Seed 003 (docs/design.md): a handler that calls back into the controller API. */
static enum probe_verdict call_controller(struct probe_hit_ctx *ctx, void *opaque)
{
	struct reenter *r = opaque;
	const char *reason = NULL;
	char msg[256];

	if (atomic_fetch_add(&r->calls, 1) >= 3)
		return PROBE_RESUME;
	if (!probe_add(r->p, ctx->regs->rip, NULL, &reason, msg, sizeof(msg))) {
		atomic_fetch_add(&r->add_refused, 1);
		snprintf(r->reason, sizeof(r->reason), "%s", reason ? reason : "");
	}
	if (probe_remove(ctx->probe, msg, sizeof(msg)))
		atomic_fetch_add(&r->remove_refused, 1);
	return PROBE_RESUME;
}

static void test_probe_recursion(void)
{
	struct probe_opts o = { .handler = skip_to_self };
	struct reenter re = { 0 };
	struct probe_opts o2 = { .handler = call_controller, .opaque = &re };
	struct probe_counts c;
	struct probe *pr, *pr2;
	struct penv e;
	char msg[256];

	if (!testlib_require_kvm() || !penv_create(&e, 2, ITERATIONS))
		goto out;
	re.p = e.p;
	pr = place(&e, sym_addr(&e, "lib_checksum"), &o);
	pr2 = place(&e, sym_addr(&e, "lib_switch"), &o2);
	if (!pr || !pr2 || !penv_start(&e))
		goto out;
	penv_wait_done(&e);
	probe_counts(pr, &c);
	EXPECT_EQ_U64((uint64_t)e.vcpus * TASKS * ITERATIONS, c.hits);
	EXPECT_EQ_U64(c.hits, c.missed);
	EXPECT_EQ_U64(lib_calls(&e, "checksum", 0) + lib_calls(&e, "checksum", 1), c.hits);
	/* the controller API refused from a handler instead of deadlocking */
	EXPECT_EQ_U64(3, atomic_load(&re.add_refused));
	EXPECT_EQ_U64(3, atomic_load(&re.remove_refused));
	EXPECT_TRUE_MSG(!strcmp(re.reason, "in_handler"), "reason %s", re.reason);
	EXPECT_FALSE(probe_removed(pr2));
	EXPECT_EQ(probe_remove(pr2, msg, sizeof(msg)), 0);
out:
	penv_end(&e, true);
}

static bool reason_known(const char *r)
{
	for (unsigned int i = 0; r && probe_reasons[i]; i++)
		if (!strcmp(r, probe_reasons[i]))
			return true;
	return false;
}

static void expect_refused(struct penv *e, uint64_t addr, const char *want)
{
	const char *reason = NULL;
	char msg[512];
	struct probe *pr = probe_add(e->p, addr, NULL, &reason, msg, sizeof(msg));

	EXPECT_TRUE_MSG(pr == NULL && reason && !strcmp(reason, want),
			"0x%llx: expected refusal %s, got %s (%s)",
			(unsigned long long)addr, want, pr ? "a probe" : reason, msg);
	EXPECT_TRUE_MSG(strstr(msg, want) != NULL, "message '%s' does not name %s", msg, want);
	if (pr)
		probe_remove(pr, msg, sizeof(msg));
}

/* Code the trap path runs, and what is not code, is refused by name. */
static void test_probe_refusals(void)
{
	struct probe_opts opt = { .kind = (enum probe_kind)7 };	/* no such kind */
	const char *reason = NULL;
	struct probe *pr;
	struct penv e;
	char msg[512];

	if (!testlib_require_kvm() || !penv_create(&e, 1, 0) || !penv_start(&e))
		goto out;
	expect_refused(&e, sym_addr(&e, "guest_bp_entry"), "entry_text");
	expect_refused(&e, sym_addr(&e, VMPOKE_SYM_XOL_START) + 64, "not_code");
	expect_refused(&e, sym_addr(&e, "lib_calls_add"), "not_code");
	expect_refused(&e, sym_addr(&e, "lib_checksum") + 1, "not_boundary");
	if (!patcher_cpl0_trappable(e.p))
		expect_refused(&e, sym_addr(&e, "memcpy"), "cpl0_untrappable");
	pr = probe_add(e.p, sym_addr(&e, "lib_add"), &opt, &reason, msg, sizeof(msg));
	EXPECT_NULL(pr);
	EXPECT_TRUE_MSG(reason && !strcmp(reason, "kind_unsupported"), "%s", msg);
	/* a second probe on the same instruction: the first is live there */
	pr = place(&e, sym_addr(&e, "lib_add"), NULL);
	expect_refused(&e, sym_addr(&e, "lib_add"), "live_site");
	if (pr)
		EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
out:
	penv_end(&e, true);
}

/*
 * bpftrace 'kprobe:*': a probe on every symbol of the image.  Each one is
 * placed, or refused with a reason from the one list; the guest keeps
 * running with all of them armed, and stays healthy; removing them all
 * leaves every byte of text as it was.
 */
static void test_probe_every_symbol(void)
{
	const struct symtab *st;
	struct probe **pr;
	unsigned int n, i, placed = 0, refused = 0;
	uint64_t lo, hi, hits = 0;
	uint8_t *text0 = NULL, *text1 = NULL;
	struct probe_counts c;
	struct penv e;
	char msg[512];

	if (!testlib_require_kvm() || !penv_create(&e, 2, 0))
		return;
	st = vmm_symtab(e.vm);
	n = (unsigned int)symtab_count(st);
	pr = calloc(n, sizeof(*pr));
	lo = sym_addr(&e, "_start");
	hi = sym_addr(&e, VMPOKE_SYM_XOL_END);
	text0 = malloc(hi - lo);
	text1 = malloc(hi - lo);
	EXPECT_TRUE_FATAL(pr && text0 && text1 && hi > lo);
	/*
	 * The text as it stands once the guest is READY: boot itself writes
	 * text (jl_boot_corrupt() plants a bad jump-label site), and that is
	 * not ours to restore.
	 */
	if (!penv_start(&e))
		goto out;
	EXPECT_EQ(vmm_gva_read(e.vm, lo, text0, hi - lo), 0);
	for (i = 0; i < n; i++) {
		const struct sym *s = symtab_at(st, i);
		const char *reason = NULL;

		pr[i] = probe_add(e.p, s->addr, NULL, &reason, msg, sizeof(msg));
		if (pr[i]) {
			placed++;
			continue;
		}
		refused++;
		EXPECT_TRUE_MSG(reason_known(reason), "%s: refused with unknown reason %s (%s)",
				s->name, reason ? reason : "(none)", msg);
	}
	EXPECT_TRUE_MSG(placed >= NR_LIBS, "only %u of %u symbols placed", placed, n);
	EXPECT_TRUE_MSG(refused > 0, "nothing refused: entry text and data are symbols too");
	usleep(500000);
	for (i = 0; i < n; i++) {
		if (!pr[i])
			continue;
		probe_counts(pr[i], &c);
		hits += c.hits;
		EXPECT_TRUE_MSG(probe_remove(pr[i], msg, sizeof(msg)) == 0, "%s", msg);
	}
	EXPECT_TRUE_MSG(hits > 0, "%u probes armed for 0.5 s and not one hit", placed);
	EXPECT_EQ(vmm_gva_read(e.vm, lo, text1, hi - lo), 0);
	/* XOL slots hold copies now; everything below them must be as it was */
	EXPECT_EQ(memcmp(text0, text1, sym_addr(&e, VMPOKE_SYM_XOL_START) - lo), 0);
	fprintf(stderr, "\n  every symbol: %u placed, %u refused, %llu hits in 0.5 s\n",
		placed, refused, (unsigned long long)hits);
out:
	free(pr);
	free(text0);
	free(text1);
	penv_end(&e, true);
}

/*
 * Slot reuse waits for the busy-range check: a removed probe's slot with
 * a vCPU's RIP planted inside stays pending; once the RIP is gone it is
 * reused.  Then more probes come and go than there are slots.
 */
static void test_probe_slot_reuse(void)
{
	struct probe *pr;
	struct probe_xol *x;
	struct kvm_regs saved, regs;
	uint64_t addr, slot;
	struct penv e;
	char msg[1024];
	unsigned int i, n;

	if (!testlib_require_kvm() || !penv_create(&e, 2, 0) || !penv_start(&e))
		goto out;
	/* lib_mul_add starts with mov %rdx,%rax: out of line, boosted */
	addr = sym_addr(&e, "lib_mul_add");
	pr = place(&e, addr, NULL);
	if (!pr)
		goto out;
	EXPECT_EQ(probe_insn_of(pr)->exec, PROBE_EXEC_SLOT);
	slot = probe_slot_of(pr);
	x = probe_xol_of(e.p);
	EXPECT_TRUE_FATAL(slot && x);
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_offline(e.vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e.vm, 1, &saved), 0);
	regs = saved;
	regs.rip = slot + 3;		/* the JMP back */
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &regs), 0);
	EXPECT_EQ_U64(0, xol_reclaim(e.p, x, msg, sizeof(msg)));
	EXPECT_EQ_U64(1, xol_count(x, XOL_PENDING));	/* still pending */
	EXPECT_EQ(vmm_vcpu_set_regs(e.vm, 1, &saved), 0);
	EXPECT_EQ(vmm_vcpu_online(e.vm, 1), 0);
	/*
	 * Planted RIP gone.  A task of the guest may itself have been preempted
	 * inside the slot when the probe went (CPL3 runs natively here): it
	 * leaves when next scheduled, so retry as synchronize_rcu_tasks() waits.
	 */
	for (i = 0, n = 0; i < 200 && n != 1; i++) {
		n = (unsigned int)xol_reclaim(e.p, x, msg, sizeof(msg));
		if (n != 1)
			usleep(10000);
	}
	EXPECT_TRUE_MSG(n == 1, "the slot stayed busy: %s", msg);
	EXPECT_EQ_U64(0, xol_count(x, XOL_PENDING));
	/* more add/remove rounds than slots: reuse under load */
	n = x->nslots + 16;
	for (i = 0; i < n; i++) {
		pr = place(&e, addr, NULL);
		if (!pr)
			break;
		if (probe_remove(pr, msg, sizeof(msg))) {
			EXPECT_TRUE_MSG(false, "round %u: %s", i, msg);
			break;
		}
	}
	EXPECT_EQ_U64(n, i);
	usleep(100000);
out:
	penv_end(&e, true);
}

/* The address a RIP-relative operand of the instruction at code[] names; 0 if none. */
static uint64_t rip_operand_target(const uint8_t *code, size_t len, uint64_t addr)
{
	uint64_t target = 0;
	cs_insn *in;
	csh cs;

	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK)
		return 0;
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON);
	if (cs_disasm(cs, code, len, addr, 1, &in) == 1) {
		for (unsigned int i = 0; i < in->detail->x86.op_count; i++) {
			const cs_x86_op *o = &in->detail->x86.operands[i];

			if (o->type == X86_OP_MEM && o->mem.base == X86_REG_RIP)
				target = addr + in->size + (uint64_t)o->mem.disp;
		}
		cs_free(in, 1);
	}
	cs_close(&cs);
	return target;
}

/*
 * A probe on lib_mul_add's RIP-relative load of lib_scale (imul
 * disp(%rip), compiled so; guest/probelib.c): it runs out of line with
 * the displacement re-encoded for the slot, which must still name
 * lib_scale.  Placed before the tasks start, it sees every call; the
 * tasks check every result of lib_mul_add, which a wrong displacement
 * would change (it would multiply by whatever the slot's copy read).
 */
static void test_probe_rip_relative(void)
{
	uint8_t code[256], slot[PROBE_SLOT_SIZE];
	const struct probe_insn *pi;
	struct probe *pr = NULL;
	uint64_t fn, scale, at = 0, total = 0;
	struct probe_insn d;
	struct probe_counts c;
	struct penv e;
	const char *why;
	char msg[256];
	size_t off;

	if (!testlib_require_kvm() || !penv_create(&e, 2, ITERATIONS))
		goto out;
	fn = sym_addr(&e, "lib_mul_add");
	scale = sym_addr(&e, "lib_scale");
	EXPECT_EQ_FATAL(vmm_gva_read(e.vm, fn, code, sizeof(code)), 0);
	for (off = 0; off < 64 && !at; off += d.len) {
		if (probe_insn_decode(code + off, sizeof(code) - off, fn + off, &d, &why, msg,
				      sizeof(msg)) || !d.len)
			break;
		if (d.rip_relative)
			at = fn + off;
	}
	EXPECT_TRUE_MSG(at != 0, "lib_mul_add has no RIP-relative instruction in its "
			"first 64 bytes");
	if (!at)
		goto out;
	EXPECT_EQ_U64(scale, rip_operand_target(code + (at - fn), 16, at));
	pr = place(&e, at, NULL);
	if (!pr)
		goto out;
	pi = probe_insn_of(pr);
	EXPECT_EQ(pi->exec, PROBE_EXEC_SLOT);
	EXPECT_TRUE(pi->rip_relative);
	EXPECT_EQ_FATAL(vmm_gva_read(e.vm, probe_slot_of(pr), slot, sizeof(slot)), 0);
	EXPECT_TRUE_MSG(probe_slot_of(pr) != at, "the slot is the original");
	EXPECT_EQ_U64(scale, rip_operand_target(slot, sizeof(slot), probe_slot_of(pr)));
	if (!penv_start(&e))
		goto out;
	penv_wait_done(&e);
	probe_counts(pr, &c);
	for (unsigned int v = 0; v < e.vcpus; v++) {
		EXPECT_EQ_U64(lib_calls(&e, "mul_add", v), c.per_vcpu[v]);
		total += c.per_vcpu[v];
	}
	EXPECT_EQ_U64((uint64_t)TASKS * ITERATIONS * e.vcpus, total);
	EXPECT_EQ_U64(total, c.hits);
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
out:
	penv_end(&e, true);
}

TEST_SUITE(probe_kvm, "probe_kvm", true,
	   TEST(test_probe_lib_counts), TEST(test_probe_skip),
	   TEST(test_probe_skip_seen), TEST(test_probe_recursion),
	   TEST(test_probe_refusals), TEST(test_probe_every_symbol),
	   TEST(test_probe_slot_reuse), TEST(test_probe_rip_relative))
