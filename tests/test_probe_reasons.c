// SPDX-License-Identifier: MIT
/*
 * test_probe_reasons.c - every name in probe_reasons[] (include/probe.h)
 * produced by at least one input, and each refusal's message starting
 * "WHERE: reason".  One running guest (HOT); the instruction forms are
 * planted in bench_pad_0 (CPL3 text nothing executes: NOP5s and a RET),
 * the states the engine must see (a full XOL region, a vCPU inside a
 * displaced range or stuck in a handler, an unmapped page, Capstone
 * unable to start) are planted and undone around their row.
 *
 * Only no_memory has no input: it is what an allocation failure returns.
 * cpl0_untrappable and has_handler depend on the host: one of them is
 * produced where the host cannot trap a CPL0 INT3 (kvm_pvm), the other
 * where it can.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <capstone/capstone.h>

#include "patcher.h"
#include "probe.h"
#include "symtab.h"
#include "testlib.h"
#include "vmm.h"
#include "../patcher/probe_internal.h"

#define R_TIMEOUT_MS	120000
#define PAD		"bench_pad_0"
#define PAD_MAX		512
#define MAX_REASONS	64

struct renv {
	struct vm *vm;
	struct patcher *p;
	uint64_t pad;
	size_t padlen;
	uint8_t pad_orig[PAD_MAX];
	bool seen[MAX_REASONS];
	bool trappable;			/* the host traps a CPL0 INT3 */
};

static uint64_t rsym(struct renv *e, const char *name)
{
	const struct sym *s = symtab_find(vmm_symtab(e->vm), name);

	EXPECT_TRUE_MSG(s != NULL, "the guest has no symbol %s", name);
	return s ? s->addr : 0;
}

static int reason_index(const char *r)
{
	for (int i = 0; r && probe_reasons[i] && i < MAX_REASONS; i++)
		if (!strcmp(r, probe_reasons[i]))
			return i;
	return -1;
}

/*
 * A refusal: reason `want`, and the message "WHERE: want" with WHERE as
 * the engine names addr (sym+0xoff, or the bare address).
 */
static void saw(struct renv *e, uint64_t addr, const char *reason, const char *msg,
		const char *want)
{
	const struct sym *s;
	char prefix[160];
	uint64_t off;
	int i = reason_index(want);

	EXPECT_TRUE_MSG(reason && !strncmp(reason, want, strlen(want)),
			"0x%llx: expected %s, got %s (%s)", (unsigned long long)addr, want,
			reason ? reason : "no refusal", msg);
	s = symtab_lookup(vmm_symtab(e->vm), addr, &off);
	if (s)
		snprintf(prefix, sizeof(prefix), "%s+0x%llx: %s", s->name,
			 (unsigned long long)off, want);
	else
		snprintf(prefix, sizeof(prefix), "0x%llx: %s", (unsigned long long)addr, want);
	EXPECT_TRUE_MSG(!strncmp(msg, prefix, strlen(prefix)),
			"message '%s' does not start '%s'", msg, prefix);
	EXPECT_TRUE_MSG(i >= 0, "%s is not in probe_reasons[]", want);
	if (i >= 0 && reason && !strncmp(reason, want, strlen(want)) &&
	    !strncmp(msg, prefix, strlen(prefix)))
		e->seen[i] = true;
}

/* probe_add must refuse addr with `want`. */
static void refused(struct renv *e, uint64_t addr, const struct probe_opts *o,
		    const char *want)
{
	const char *reason = NULL;
	char msg[512] = "";
	struct probe *pr = probe_add(e->p, addr, o, &reason, msg, sizeof(msg));

	EXPECT_NULL(pr);
	if (pr) {
		probe_remove(pr, msg, sizeof(msg));
		reason = NULL;
	}
	saw(e, addr, reason, msg, want);
}

/* An INT3 probe placed at addr; its optimization must be refused with `want`. */
static void opt_refused(struct renv *e, uint64_t addr, const struct probe_opts *o,
			const char *want)
{
	struct probe_opts io = o ? *o : (struct probe_opts){ 0 };
	const char *reason = NULL;
	char msg[512] = "";
	struct probe *pr;

	io.kind = PROBE_KIND_INT3;
	pr = probe_add(e->p, addr, &io, &reason, msg, sizeof(msg));
	EXPECT_TRUE_MSG(pr != NULL, "0x%llx: the INT3 probe was refused: %s",
			(unsigned long long)addr, msg);
	if (!pr)
		return;
	reason = NULL;
	EXPECT_NE(probe_optimize(pr, &reason, msg, sizeof(msg)), 0);
	EXPECT_EQ(probe_kind_of(pr), PROBE_KIND_INT3);
	saw(e, addr, reason, msg, want);
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
}

/* bench_pad_0 as it was, then bytes at its start, NOPs up to a NOP5 boundary. */
static void plant(struct renv *e, const uint8_t *bytes, size_t n)
{
	uint8_t buf[PAD_MAX];
	size_t end = (n + 4) / 5 * 5;

	memcpy(buf, e->pad_orig, e->padlen);
	memcpy(buf, bytes, n);
	memset(buf + n, 0x90, end - n);
	EXPECT_EQ_FATAL(vmm_gva_write(e->vm, e->pad, buf, e->padlen), 0);
}

static void unplant(struct renv *e)
{
	EXPECT_EQ_FATAL(vmm_gva_write(e->vm, e->pad, e->pad_orig, e->padlen), 0);
}

static bool renv_boot(struct renv *e)
{
	struct vm_config cfg = {
		.image = testlib_image(), .nr_vcpus = 2, .mem_mib = 64, .tasks = 2,
		.hz = 1000, .scenario = VMPOKE_SCN_HOT, .seed = 5, .quiet = true,
	};
	const struct sym *s;
	int code;

	memset(e, 0, sizeof(*e));
	e->vm = vmm_create(&cfg, &code);
	EXPECT_TRUE_MSG(e->vm != NULL, "vmm_create(%s) failed: exit %d", cfg.image, code);
	if (!e->vm)
		return false;
	e->p = patcher_create(e->vm, NULL);
	EXPECT_NOT_NULL_FATAL(e->p);
	s = symtab_find(vmm_symtab(e->vm), PAD);
	EXPECT_TRUE_FATAL(s && s->size && s->size <= PAD_MAX);
	e->pad = s->addr;
	e->padlen = s->size;
	EXPECT_EQ_FATAL(vmm_start(e->vm), 0);
	EXPECT_TRUE_MSG(!vmm_wait_hcall(e->vm, VMPOKE_HC_READY, 2, R_TIMEOUT_MS),
			"the guest did not report READY");
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, e->pad, e->pad_orig, e->padlen), 0);
	e->trappable = patcher_cpl0_trappable(e->p);
	return true;
}

/* Instructions that never run anywhere but where they are. */
static const struct {
	const char *reason;
	uint8_t bytes[15];
	size_t len;
} insn_rows[] = {
	{ "far_transfer", { 0xcb }, 1 },			/* lret */
	{ "far_transfer", { 0x48, 0xcb }, 2 },			/* lretq */
	{ "far_transfer", { 0xff, 0x2c, 0x24 }, 3 },		/* ljmp *(%rsp) */
	{ "far_transfer", { 0xff, 0x1c, 0x24 }, 3 },		/* lcall *(%rsp) */
	{ "iret", { 0x48, 0xcf }, 2 },				/* iretq */
	{ "iret", { 0xcf }, 1 },				/* iretl */
	{ "int", { 0xcd, 0x80 }, 2 },				/* int $0x80 */
	{ "int", { 0xcd, 0x03 }, 2 },				/* int $3, the long form */
	{ "int", { 0xf1 }, 1 },					/* int1 */
	{ "foreign_int3", { 0xcc }, 1 },			/* int3 not ours */
	{ "hlt", { 0xf4 }, 1 },
	{ "syscall", { 0x0f, 0x05 }, 2 },
	{ "syscall", { 0x48, 0x0f, 0x07 }, 3 },			/* sysretq */
	{ "syscall", { 0x0f, 0x34 }, 2 },			/* sysenter */
	{ "syscall", { 0x0f, 0x35 }, 2 },			/* sysexit */
	{ "mov_ss", { 0x8e, 0xd0 }, 2 },			/* mov %eax,%ss */
	{ "mov_ss", { 0x8e, 0x16 }, 2 },			/* mov (%rsi),%ss */
	{ "not_code", { 0x17 }, 1 },				/* pop %ss: invalid here */
	{ "vmx", { 0x0f, 0x01, 0xc1 }, 3 },			/* vmcall */
	{ "vmx", { 0x0f, 0x01, 0xd9 }, 3 },			/* vmmcall */
	{ "indirect_call_mem", { 0xff, 0x10 }, 2 },		/* call *(%rax) */
	{ "indirect_call_mem", { 0xff, 0x15, 0, 0, 0, 0 }, 6 },	/* call *0(%rip) */
	{ "unsupported", { 0x66, 0xe9, 0x00, 0x00 }, 4 },	/* jmp rel16 */
	{ "unsupported", { 0x66, 0x0f, 0x84, 0x00, 0x00 }, 5 },	/* je rel16 */
	{ "unsupported", { 0x66, 0x66, 0xff, 0xd3 }, 4 },	/* call *%bx: not emulated, no slot */
	/* jmp rel32 that Capstone reads as rel16 (fuzz_decode) */
	{ "unsupported", { 0x67, 0x48, 0xe9, 0x00, 0x00, 0x00, 0x00 }, 7 },
};

/* Where the engine looks before the instruction: address rows. */
static void rows_addresses(struct renv *e)
{
	struct probe_opts bad_kind = { .kind = (enum probe_kind)7 };

	refused(e, rsym(e, "lib_calls_add"), NULL, "not_code");
	refused(e, rsym(e, VMPOKE_SYM_XOL_START) + 64, NULL, "not_code");
	refused(e, 0x1000, NULL, "not_in_function");
	refused(e, rsym(e, "lib_checksum") + 1, NULL, "not_boundary");
	refused(e, rsym(e, "guest_bp_entry"), NULL, "entry_text");
	if (!e->trappable)
		refused(e, rsym(e, "memcpy"), NULL, "cpl0_untrappable");
	refused(e, rsym(e, "lib_add"), &bad_kind, "kind_unsupported");
}

static void rows_instructions(struct renv *e)
{
	for (size_t i = 0; i < sizeof(insn_rows) / sizeof(insn_rows[0]); i++) {
		plant(e, insn_rows[i].bytes, insn_rows[i].len);
		refused(e, e->pad, NULL, insn_rows[i].reason);
	}
	unplant(e);
}

/*
 * mov disp(%rip),%rax whose disp, moved to any slot of the XOL region,
 * leaves s32: the region lies one way of the pad, the disp points 2 GB
 * the other way.
 */
static void row_rip_unreachable(struct renv *e)
{
	uint8_t mov[7] = { 0x48, 0x8b, 0x05 };
	int32_t disp = rsym(e, VMPOKE_SYM_XOL_START) > e->pad ? INT32_MIN + 16 :
			INT32_MAX - 16;

	memcpy(mov + 3, &disp, 4);
	plant(e, mov, sizeof(mov));
	refused(e, e->pad, NULL, "rip_rel_unreachable");
	unplant(e);
}

/*
 * `67 48 e8 rel32`: 7 bytes to the CPU, a 5-byte CALL rel16 to Capstone 4
 * (fuzz_decode).  The CALL itself is unsupported; Capstone's "boundary"
 * at +5 lies inside the CPU's immediate, where an INT3 would change the
 * call's target: not a boundary anyone can trust.
 */
static void row_misread_branch(struct renv *e)
{
	static const uint8_t call[] = { 0x67, 0x48, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x90 };
	const char *reason = NULL;
	char msg[512] = "";
	struct probe *pr;

	plant(e, call, sizeof(call));
	refused(e, e->pad, NULL, "unsupported");
	pr = probe_add(e->p, e->pad + 5, NULL, &reason, msg, sizeof(msg));
	EXPECT_NULL(pr);
	if (pr)
		probe_remove(pr, msg, sizeof(msg));
	saw(e, e->pad + 5, pr ? NULL : reason, msg, "not_boundary");
	EXPECT_TRUE_MSG(strstr(msg, "Capstone and the CPU read"), "%s", msg);
	unplant(e);
}

/* A probe live there already (and a site's bytes under it). */
static void row_live_site(struct renv *e)
{
	const char *reason = NULL;
	char msg[512];
	struct probe *pr = probe_add(e->p, rsym(e, "lib_add"), NULL, &reason, msg,
				     sizeof(msg));

	EXPECT_TRUE_MSG(pr != NULL, "%s", msg);
	refused(e, rsym(e, "lib_add"), NULL, "live_site");
	if (pr)
		EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
}

/* A handler that asks for a probe itself, once. */
struct in_handler {
	struct renv *e;
	atomic_int state;		/* 0 waiting, 1 asking, 2 answered */
	uint64_t addr;
	const char *reason;
	char msg[512];
};

static enum probe_verdict ask_in_handler(struct probe_hit_ctx *ctx, void *opaque)
{
	struct in_handler *h = opaque;
	int zero = 0;
	struct probe *pr;

	(void)ctx;
	if (!atomic_compare_exchange_strong(&h->state, &zero, 1))
		return PROBE_RESUME;
	pr = probe_add(h->e->p, h->addr, NULL, &h->reason, h->msg, sizeof(h->msg));
	if (pr)
		h->reason = "placed";	/* wrong: the row fails; left for teardown */
	atomic_store(&h->state, 2);
	return PROBE_RESUME;
}

static bool wait_state(atomic_int *s, int want, unsigned int ms)
{
	for (unsigned int i = 0; i < ms / 10 && atomic_load(s) != want; i++)
		usleep(10000);
	return atomic_load(s) == want;
}

static void row_in_handler(struct renv *e)
{
	static struct in_handler h;
	struct probe_opts o = { .handler = ask_in_handler, .opaque = &h };
	const char *reason = NULL;
	char msg[512];
	struct probe *pr;

	memset(&h, 0, sizeof(h));
	h.e = e;
	h.addr = rsym(e, "lib_mul_add");
	pr = probe_add(e->p, rsym(e, "lib_add"), &o, &reason, msg, sizeof(msg));
	EXPECT_TRUE_MSG(pr != NULL, "%s", msg);
	if (!pr)
		return;
	EXPECT_TRUE_MSG(wait_state(&h.state, 2, 20000), "the handler never ran");
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
	if (atomic_load(&h.state) == 2)
		saw(e, h.addr, h.reason, h.msg, "in_handler");
}

/*
 * The optimized-probe rules, each on a planted region: a jump into the
 * JMP's bytes, a jump table, the end of the function, a CALL before the
 * end of the region, max_hits, a region longer than a site, and (below) a
 * vCPU inside the range.
 */
static void rows_optimized(struct renv *e)
{
	static const uint8_t jmp_in[] = { 0xeb, 0x04, 0x90, 0x90, 0x90, 0x90 };
	static const uint8_t call_reg[] = { 0xff, 0xd0 };	/* call *%rax */
	static const uint8_t long_insn[] = {			/* 4 NOPs, 15 bytes */
		0x90, 0x90, 0x90, 0x90, 0x2e, 0x64, 0xf0, 0x48, 0x81, 0x84, 0xd8,
		0x78, 0x56, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12,
	};
	struct probe_opts counted = { .max_hits = 5 };

	plant(e, jmp_in, sizeof(jmp_in));
	opt_refused(e, e->pad + 2, NULL, "jump_into_range");
	plant(e, call_reg, sizeof(call_reg));
	opt_refused(e, e->pad, NULL, "call_in_region");
	plant(e, long_insn, sizeof(long_insn));
	opt_refused(e, e->pad, NULL, "too_long");
	unplant(e);
	opt_refused(e, e->pad + e->padlen - 1, NULL, "leaves_function");	/* its RET */
	opt_refused(e, e->pad, &counted, "max_hits");
	opt_refused(e, rsym(e, "lib_switch"), NULL, "indirect_jump");
}

/* vCPU 1, offline, with its RIP planted inside the range to displace. */
static void row_shadow_busy(struct renv *e)
{
	struct kvm_regs saved, regs;

	EXPECT_EQ_FATAL(vmm_vcpu_offline(e->vm, 1), 0);
	EXPECT_EQ_FATAL(vmm_vcpu_get_regs(e->vm, 1, &saved), 0);
	regs = saved;
	regs.rip = e->pad + 2;
	EXPECT_EQ(vmm_vcpu_set_regs(e->vm, 1, &regs), 0);
	opt_refused(e, e->pad, NULL, "shadow_busy");
	EXPECT_EQ(vmm_vcpu_set_regs(e->vm, 1, &saved), 0);
	EXPECT_EQ(vmm_vcpu_online(e->vm, 1), 0);
}

/* Where the host traps CPL0 INT3s: a handler probe on CPL0 text. */
static enum probe_verdict count_only(struct probe_hit_ctx *ctx, void *opaque)
{
	(void)ctx;
	(void)opaque;
	return PROBE_RESUME;
}

static void row_has_handler(struct renv *e)
{
	struct probe_opts o = { .handler = count_only };

	if (e->trappable)
		opt_refused(e, rsym(e, "memcpy"), &o, "has_handler");
}

/* Every XOL slot taken: an instruction that needs one is refused. */
static void row_no_slot(struct renv *e)
{
	static const uint8_t mov[] = { 0x48, 0x89, 0xd0 };	/* mov %rdx,%rax: a slot */
	struct probe_xol *x = probe_xol_of(e->p);
	int *taken;
	unsigned int n = 0;
	char msg[256];

	EXPECT_TRUE_FATAL(x && x->ok);
	taken = calloc(x->nslots, sizeof(*taken));
	EXPECT_NOT_NULL_FATAL(taken);
	while (n < x->nslots && (taken[n] = xol_alloc(e->p, x, msg, sizeof(msg))) >= 0)
		n++;
	EXPECT_TRUE_MSG(n > 0, "no slot to take");
	plant(e, mov, sizeof(mov));
	refused(e, e->pad, NULL, "no_slot");
	unplant(e);
	while (n--)
		xol_unuse(x, taken[n]);
	free(taken);
}

/* Capstone's allocator failing: cs_open() cannot start. */
static void *no_malloc(size_t n)
{
	(void)n;
	return NULL;
}

static void *no_calloc(size_t n, size_t m)
{
	(void)n;
	(void)m;
	return NULL;
}

static void *no_realloc(void *p, size_t n)
{
	(void)p;
	(void)n;
	return NULL;
}

static void row_no_decoder(struct renv *e)
{
	cs_opt_mem none = { no_malloc, no_calloc, no_realloc, free, vsnprintf };
	cs_opt_mem libc = { malloc, calloc, realloc, free, vsnprintf };

	EXPECT_EQ_FATAL(cs_option(0, CS_OPT_MEM, (size_t)&none), CS_ERR_OK);
	refused(e, rsym(e, "lib_add"), NULL, "no_decoder");
	EXPECT_EQ_FATAL(cs_option(0, CS_OPT_MEM, (size_t)&libc), CS_ERR_OK);
}

/*
 * A page of bench pads (4 KiB pages map the first 2 MiB) unmapped in the
 * guest's page tables while nothing executes it: its function cannot be
 * read.  The PTE is put back as it was.
 */
static void row_fault(struct renv *e)
{
	const struct symtab *st = vmm_symtab(e->vm);
	uint64_t page = (rsym(e, "bench_pad_20") + 4095) & ~4095ull, pte, zero = 0, off;
	uint64_t pte_at = VMPOKE_PT_GPA + (page >> 12) * 8;
	const struct sym *s;

	/* every byte of the page belongs to a bench pad */
	for (uint64_t a = page; a < page + 4096; a += 64) {
		s = symtab_lookup(st, a, &off);
		EXPECT_TRUE_FATAL(s && !strncmp(s->name, "bench_pad_", 10));
	}
	s = symtab_lookup(st, page + 64, &off);
	EXPECT_TRUE_FATAL(page < (2ull << 20));
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, pte_at, &pte, 8), 0);
	EXPECT_EQ_FATAL(pte & ~0xfffull, page);
	EXPECT_EQ_FATAL(vmm_gva_write(e->vm, pte_at, &zero, 8), 0);
	refused(e, s->addr, NULL, "fault");
	EXPECT_EQ_FATAL(vmm_gva_write(e->vm, pte_at, &pte, 8), 0);
}

/*
 * A vCPU held inside a probe handler cannot acknowledge a sync: the next
 * placement's sync gives up after VMM_SYNC_GIVEUP_MS (10 s) and the
 * placement is refused as sync.  Then the handler lets go.
 */
struct holder {
	atomic_int state;		/* 0 armed, 1 holding, 2 let go */
};

static enum probe_verdict hold(struct probe_hit_ctx *ctx, void *opaque)
{
	struct holder *h = opaque;
	int zero = 0;

	(void)ctx;
	if (!atomic_compare_exchange_strong(&h->state, &zero, 1))
		return PROBE_RESUME;
	/* a test handler that holds its vCPU on purpose, 30 s at most */
	for (int i = 0; i < 30000 && atomic_load(&h->state) == 1; i++)
		usleep(1000);
	return PROBE_RESUME;
}

static void row_sync(struct renv *e)
{
	static struct holder h;
	struct probe_opts o = { .handler = hold, .opaque = &h };
	uint8_t before[16], after[16];
	const char *reason = NULL;
	char msg[512];
	struct probe *pr;
	bool core = vmm_sync_core_enabled(e->vm);

	/*
	 * The holding probe goes in with core syncs, which wait for no vCPU
	 * thread, so its own placement cannot meet the vCPU it is about to
	 * hold (with acknowledged syncs a hit before its last sync would);
	 * the second placement gets the acknowledged sync, which must.
	 */
	atomic_store(&h.state, 0);
	pr = probe_add(e->p, rsym(e, "lib_add"), &o, &reason, msg, sizeof(msg));
	EXPECT_TRUE_MSG(pr != NULL, "%s", msg);
	if (!pr)
		return;
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, rsym(e, "lib_mul_add"), before, sizeof(before)), 0);
	if (wait_state(&h.state, 1, 20000)) {
		EXPECT_EQ(vmm_sync_set_core(e->vm, false), 0);
		refused(e, rsym(e, "lib_mul_add"), NULL, "sync");
		if (core)
			EXPECT_EQ(vmm_sync_set_core(e->vm, true), 0);
	} else {
		EXPECT_TRUE_MSG(false, "the holding handler never ran");
	}
	atomic_store(&h.state, 2);
	EXPECT_EQ(probe_remove(pr, msg, sizeof(msg)), 0);
	/* the refused placement left nothing behind */
	EXPECT_EQ_FATAL(vmm_gva_read(e->vm, rsym(e, "lib_mul_add"), after, sizeof(after)), 0);
	EXPECT_EQ(memcmp(before, after, sizeof(after)), 0);
}

static void test_every_reason(void)
{
	struct renv e;

	if (!testlib_require_kvm())
		return;
	if (renv_boot(&e)) {
		rows_addresses(&e);
		rows_instructions(&e);
		row_rip_unreachable(&e);
		row_misread_branch(&e);
		row_live_site(&e);
		row_in_handler(&e);
		rows_optimized(&e);
		row_shadow_busy(&e);
		row_has_handler(&e);
		row_no_slot(&e);
		row_no_decoder(&e);
		row_fault(&e);
		row_sync(&e);
		for (int i = 0; probe_reasons[i]; i++) {
			const char *r = probe_reasons[i];

			/* allocation failure only; one of the two per host */
			if (!strcmp(r, "no_memory") ||
			    (!strcmp(r, "cpl0_untrappable") && e.trappable) ||
			    (!strcmp(r, "has_handler") && !e.trappable))
				continue;
			EXPECT_TRUE_MSG(i < MAX_REASONS && e.seen[i],
					"no input produced the refusal %s", r);
		}
		/* the text under every row is back */
		{
			uint8_t now[PAD_MAX];

			EXPECT_EQ(vmm_gva_read(e.vm, e.pad, now, e.padlen), 0);
			EXPECT_EQ(memcmp(now, e.pad_orig, e.padlen), 0);
		}
	}
	testlib_vm_end(e.vm, e.p);
}

TEST_SUITE(probe_reasons, "probe_reasons", true, TEST(test_every_reason))
