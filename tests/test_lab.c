// SPDX-License-Identifier: MIT
/*
 * test_lab.c - the emulation lab: every instruction form the trap hook
 * emulates, run once for real and once through a live INT3 site, under
 * flag states that drive every condition both ways.  The two runs must
 * leave identical traces (path digits, flags, return address, stack).
 *
 * The real instruction is written with a plain store while the lab task
 * waits: the lab's wait loop never executes lab_site, the store is ordered
 * before the seq_req store that releases the task (x86 stores are seen in
 * program order), and the task executes cpuid (serializing) after it sees
 * the new seq_req and before it reaches the site - the SDM's recipe for
 * cross-modifying code.  No other vCPU runs the lab.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "patcher.h"
#include "probe.h"
#include "../patcher/patcher_internal.h"
#include "symtab.h"
#include "testlib.h"
#include "vmm.h"

/* guest/lab.S spells these out; break the test build if the ABI moves. */
_Static_assert(offsetof(struct vmpoke_lab, seq_req) == 0, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, seq_done) == 8, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, rflags_in) == 16, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, rflags_out) == 24, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, path) == 32, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, rsp_at_site) == 40, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, rsp_in_callee) == 48, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, ret_addr) == 56, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, regs_in) == 64, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, regs_out) == 160, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, rsp_out) == 256, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, stack_in) == 264, "lab layout");
_Static_assert(offsetof(struct vmpoke_lab, stack_out) == 288, "lab layout");
_Static_assert(sizeof(struct vmpoke_lab) == 328, "lab layout");
_Static_assert(VMPOKE_MMIO_CMD(VMPOKE_HC_LAB_DONE) == 0xd0000038, "lab doorbell");

#define F_CF	0x001ull
#define F_PF	0x004ull
#define F_ZF	0x040ull
#define F_SF	0x080ull
#define F_OF	0x800ull
#define F_ARITH	0x8d5ull
#define LAB_TIMEOUT_MS	60000

/* Every condition is true under one of these and false under another. */
static const uint64_t flag_states[] = {
	0, F_CF, F_PF, F_ZF, F_SF, F_OF, F_SF | F_OF, F_CF | F_ZF,
	F_CF | F_PF | F_ZF | F_SF | F_OF,
};
#define NR_FLAG_STATES	(sizeof(flag_states) / sizeof(flag_states[0]))

struct lab {
	struct vm *vm;
	struct patcher *p;
	uint64_t lab, site, fall, taken, callee, ret_target;
	uint64_t done;			/* LAB_DONE doorbells seen */
	uint64_t seq;
};

/* What one request left behind. */
struct trace {
	uint64_t path, rflags_out, rsp_at_site, rsp_in_callee, ret_addr;
};

/* The SDM's conditions, written independently of patcher/emulate.c. */
static bool ref_cond(unsigned int cc, uint64_t f)
{
	bool cf = f & F_CF, pf = f & F_PF, zf = f & F_ZF, sf = f & F_SF, of = f & F_OF;
	bool r;

	switch (cc >> 1) {
	case 0: r = of; break;
	case 1: r = cf; break;
	case 2: r = zf; break;
	case 3: r = cf || zf; break;
	case 4: r = sf; break;
	case 5: r = pf; break;
	case 6: r = sf != of; break;
	default: r = zf || sf != of; break;
	}
	return (cc & 1) ? !r : r;
}

static bool sym_addr(const struct symtab *st, const char *name, uint64_t *out)
{
	const struct sym *s = symtab_find(st, name);

	EXPECT_TRUE_MSG(s != NULL, "the guest image has no symbol %s", name);
	if (!s)
		return false;
	*out = s->addr;
	return true;
}

static bool lab_boot(struct lab *l)
{
	struct vm_config cfg = {
		.image = testlib_image(), .nr_vcpus = 1, .mem_mib = 64,
		.tasks = 1, .hz = 0, .scenario = VMPOKE_SCN_LAB, .seed = 1,
		.quiet = true,
	};
	struct patcher_opts popts = { .inject = POKE_INJECT_NONE };
	const struct symtab *st;
	int code;

	memset(l, 0, sizeof(*l));
	l->vm = vmm_create(&cfg, &code);
	EXPECT_TRUE_MSG(l->vm != NULL, "vmm_create(%s) failed: exit %d",
			cfg.image, code);
	if (!l->vm)
		return false;
	st = vmm_symtab(l->vm);
	if (!sym_addr(st, VMPOKE_SYM_LAB, &l->lab) ||
	    !sym_addr(st, VMPOKE_SYM_LAB_SITE, &l->site) ||
	    !sym_addr(st, VMPOKE_SYM_LAB_FALL, &l->fall) ||
	    !sym_addr(st, VMPOKE_SYM_LAB_TAKEN, &l->taken) ||
	    !sym_addr(st, VMPOKE_SYM_LAB_CALLEE, &l->callee) ||
	    !sym_addr(st, VMPOKE_SYM_LAB_RET_TARGET, &l->ret_target))
		return false;
	EXPECT_EQ_U64(l->site + VMPOKE_LAB_SITE_LEN, l->fall);
	l->p = patcher_create(l->vm, &popts);
	EXPECT_NOT_NULL_FATAL(l->p);
	EXPECT_EQ_FATAL(vmm_start(l->vm), 0);
	EXPECT_TRUE_MSG(vmm_wait_hcall(l->vm, VMPOKE_HC_READY, 1, LAB_TIMEOUT_MS) == 0,
			"guest did not report READY in scenario LAB");
	return true;
}

static void lab_shutdown(struct lab *l)
{
	if (!l->vm)
		return;
	vmm_stop(l->vm);
	if (l->p)
		patcher_destroy(l->p);
	vmm_destroy(l->vm);
}

/* One request: flags in, wait for the doorbell (a condvar), trace out. */
static bool lab_request(struct lab *l, uint64_t flags, struct trace *t)
{
	struct vmpoke_lab st;
	uint64_t seq = ++l->seq;

	EXPECT_EQ_FATAL(vmm_gva_write(l->vm, l->lab + offsetof(struct vmpoke_lab,
					    rflags_in), &flags, 8), 0);
	EXPECT_EQ_FATAL(vmm_gva_write(l->vm, l->lab + offsetof(struct vmpoke_lab,
					    seq_req), &seq, 8), 0);
	if (vmm_wait_hcall(l->vm, VMPOKE_HC_LAB_DONE, ++l->done, LAB_TIMEOUT_MS)) {
		EXPECT_TRUE_MSG(false, "lab request %llu: no LAB_DONE within %d ms",
				(unsigned long long)seq, LAB_TIMEOUT_MS);
		return false;
	}
	EXPECT_EQ_FATAL(vmm_gva_read(l->vm, l->lab, &st, sizeof(st)), 0);
	EXPECT_EQ_U64(seq, st.seq_done);
	t->path = st.path;
	t->rflags_out = st.rflags_out & F_ARITH;
	t->rsp_at_site = st.rsp_at_site;
	t->rsp_in_callee = st.rsp_in_callee;
	t->ret_addr = st.ret_addr;
	return st.seq_done == seq;
}

/*
 * Run `insn` (len bytes, NOP-padded to 8) under every flag state, real and
 * emulated; check both traces are equal and the real one is `expect(f)`.
 */
static void lab_form(struct lab *l, const char *name, const uint8_t *insn,
		     size_t len, uint64_t (*expect)(uint64_t flags, const void *arg),
		     const void *arg)
{
	static const uint8_t nops[8][7] = {
		{ 0 }, { 0x90 }, { 0x66, 0x90 }, { 0x0f, 0x1f, 0x00 },
		{ 0x0f, 0x1f, 0x40, 0x00 }, { 0x0f, 0x1f, 0x44, 0x00, 0x00 },
		{ 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00 },
		{ 0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00 },
	};
	struct trace real[NR_FLAG_STATES], emu[NR_FLAG_STATES];
	uint8_t bytes[VMPOKE_LAB_SITE_LEN];
	struct poke_stats before, after;
	struct poke_site site;
	struct poke_live live;
	char msg[256];
	enum poke_err e;

	memcpy(bytes, insn, len);
	memcpy(bytes + len, nops[VMPOKE_LAB_SITE_LEN - len], VMPOKE_LAB_SITE_LEN - len);
	EXPECT_EQ_FATAL(vmm_gva_write(l->vm, l->site, bytes, sizeof(bytes)), 0);
	for (size_t i = 0; i < NR_FLAG_STATES; i++) {
		if (!lab_request(l, flag_states[i], &real[i]))
			return;
		EXPECT_TRUE_MSG(real[i].path == expect(flag_states[i], arg),
				"%s flags 0x%llx: real path %llu, expected %llu", name,
				(unsigned long long)flag_states[i],
				(unsigned long long)real[i].path,
				(unsigned long long)expect(flag_states[i], arg));
	}

	e = poke_site_prepare(l->p, &site, l->site, insn, insn, len, NULL,
			      msg, sizeof(msg));
	EXPECT_TRUE_MSG(e == POKE_OK, "%s: prepare: %s", name, msg);
	if (e != POKE_OK)
		return;
	traptable_live_of(&site, &live);
	e = poke_arm(l->p, &live, site.where, msg, sizeof(msg));
	EXPECT_TRUE_MSG(e == POKE_OK, "%s: arm: %s", name, msg);
	if (e != POKE_OK)
		return;
	patcher_stats(l->p, &before);
	for (size_t i = 0; i < NR_FLAG_STATES; i++)
		if (!lab_request(l, flag_states[i], &emu[i]))
			return;
	patcher_stats(l->p, &after);
	e = poke_disarm(l->p, &live, site.where, msg, sizeof(msg));
	EXPECT_TRUE_MSG(e == POKE_OK, "%s: disarm: %s", name, msg);
	/* Every armed request went through the hook, none around it. */
	EXPECT_EQ_U64(NR_FLAG_STATES, after.trap_hits - before.trap_hits);

	for (size_t i = 0; i < NR_FLAG_STATES; i++) {
		const struct trace *r = &real[i], *m = &emu[i];

		EXPECT_TRUE_MSG(!memcmp(r, m, sizeof(*r)),
				"%s flags 0x%llx: real path %llu flags 0x%llx rsp 0x%llx "
				"callee_rsp 0x%llx ret 0x%llx; emulated path %llu flags "
				"0x%llx rsp 0x%llx callee_rsp 0x%llx ret 0x%llx", name,
				(unsigned long long)flag_states[i],
				(unsigned long long)r->path, (unsigned long long)r->rflags_out,
				(unsigned long long)r->rsp_at_site,
				(unsigned long long)r->rsp_in_callee,
				(unsigned long long)r->ret_addr,
				(unsigned long long)m->path, (unsigned long long)m->rflags_out,
				(unsigned long long)m->rsp_at_site,
				(unsigned long long)m->rsp_in_callee,
				(unsigned long long)m->ret_addr);
		/* Flags pass through every form untouched. */
		EXPECT_EQ_U64(flag_states[i], r->rflags_out);
		if (r->path == 31) {
			EXPECT_EQ_U64(l->site + 5, r->ret_addr);
			EXPECT_EQ_U64(r->rsp_at_site - 8, r->rsp_in_callee);
		}
	}
}

static void put32(uint8_t *b, uint64_t from_end, uint64_t to)
{
	uint32_t rel = (uint32_t)(int32_t)(int64_t)(to - from_end);

	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(rel >> (8 * i));
}

/* Jcc cc to lab_taken, rel32 or rel8, at lab_site; its length. */
static size_t lab_jcc_insn(const struct lab *l, unsigned int cc, bool rel32, uint8_t *insn)
{
	if (rel32) {
		insn[0] = 0x0f;
		insn[1] = (uint8_t)(0x80 | cc);
		put32(insn + 2, l->site + 6, l->taken);
		return 6;
	}
	insn[0] = (uint8_t)(0x70 | cc);
	insn[1] = (uint8_t)(int8_t)(int64_t)(l->taken - (l->site + 2));
	return 2;
}

static uint64_t expect_jcc(uint64_t f, const void *arg)
{
	return ref_cond(*(const unsigned int *)arg, f) ? 2 : 1;
}

static uint64_t expect_const(uint64_t f, const void *arg)
{
	(void)f;
	return *(const uint64_t *)arg;
}

static void test_lab_jcc(bool rel32)
{
	struct lab l;

	if (!testlib_require_kvm())
		return;
	if (lab_boot(&l)) {
		for (unsigned int cc = 0; cc < 16; cc++) {
			uint8_t insn[6];
			char name[32];
			bool seen[2] = { false, false };

			lab_jcc_insn(&l, cc, rel32, insn);
			/* The flag set really drives cc both ways. */
			for (size_t i = 0; i < NR_FLAG_STATES; i++)
				seen[ref_cond(cc, flag_states[i])] = true;
			EXPECT_TRUE(seen[0]);
			EXPECT_TRUE(seen[1]);
			snprintf(name, sizeof(name), "j%x %s", cc, rel32 ? "rel32" : "rel8");
			lab_form(&l, name, insn, rel32 ? 6 : 2, expect_jcc, &cc);
		}
	}
	lab_shutdown(&l);
}

static void test_lab_jcc32(void)
{
	test_lab_jcc(true);
}

static void test_lab_jcc8(void)
{
	test_lab_jcc(false);
}

static void test_lab_call_ret(void)
{
	static const uint64_t call_path = 31, ret_path = 4;
	static const uint8_t ret[1] = { 0xc3 };
	uint8_t call[5] = { 0xe8 };
	struct lab l;

	if (!testlib_require_kvm())
		return;
	if (lab_boot(&l)) {
		put32(call + 1, l.site + 5, l.callee);
		lab_form(&l, "call rel32", call, 5, expect_const, &call_path);
		lab_form(&l, "ret", ret, 1, expect_const, &ret_path);
	}
	lab_shutdown(&l);
}

static void test_lab_jmp_nop(void)
{
	static const uint64_t taken = 2, fall = 1;
	static const uint8_t nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
	static const uint8_t nop2[2] = { 0x66, 0x90 };
	uint8_t jmp32[5] = { 0xe9 }, jmp8[2] = { 0xeb };
	struct lab l;

	if (!testlib_require_kvm())
		return;
	if (lab_boot(&l)) {
		put32(jmp32 + 1, l.site + 5, l.taken);
		jmp8[1] = (uint8_t)(int8_t)(int64_t)(l.taken - (l.site + 2));
		lab_form(&l, "jmp rel32", jmp32, 5, expect_const, &taken);
		lab_form(&l, "jmp rel8", jmp8, 2, expect_const, &taken);
		lab_form(&l, "nop5", nop5, 5, expect_const, &fall);
		lab_form(&l, "nop2", nop2, 2, expect_const, &fall);
	}
	lab_shutdown(&l);
}

/* Pure: the reference conditions themselves, against hand-checked cases. */
static void test_lab_ref_cond(void)
{
	EXPECT_TRUE(ref_cond(0xe, F_ZF));		/* jle: ZF */
	EXPECT_TRUE(ref_cond(0xe, F_SF));		/* jle: SF != OF */
	EXPECT_FALSE(ref_cond(0xe, F_SF | F_OF));
	EXPECT_TRUE(ref_cond(0xf, F_SF | F_OF));	/* jg */
	EXPECT_FALSE(ref_cond(0xf, F_ZF | F_SF | F_OF));
	EXPECT_TRUE(ref_cond(0x6, F_CF));		/* jbe */
	EXPECT_TRUE(ref_cond(0x7, 0));		/* ja */
	EXPECT_TRUE(ref_cond(0xa, F_PF));		/* jp */
	EXPECT_TRUE(ref_cond(0x1, 0));		/* jno */
}

/* --- the probe emulation set: registers, stack and flags planted ------- */

/* Indices into regs_in/regs_out (VMPOKE_LAB_REGS). */
enum { R_AX, R_CX, R_DX, R_SI, R_DI, R_8, R_9, R_10, R_11, R_13, R_14, R_15 };

struct lab_in {
	uint64_t flags;
	uint64_t regs[VMPOKE_LAB_REGS];
	uint64_t stack[VMPOKE_LAB_STACK_IN];
};

/* Everything a request left behind, with the planted state. */
struct lab_out {
	uint64_t path, rflags_out, rsp_at_site, rsp_in_callee, ret_addr, rsp_out;
	uint64_t regs[VMPOKE_LAB_REGS];
	uint64_t stack[VMPOKE_LAB_STACK_OUT];
};

static bool lab_request_full(struct lab *l, const struct lab_in *in, struct lab_out *o)
{
	struct vmpoke_lab st;
	struct trace t;

	EXPECT_EQ_FATAL(vmm_gva_write(l->vm, l->lab + offsetof(struct vmpoke_lab, regs_in),
				      in->regs, sizeof(in->regs)), 0);
	EXPECT_EQ_FATAL(vmm_gva_write(l->vm, l->lab + offsetof(struct vmpoke_lab, stack_in),
				      in->stack, sizeof(in->stack)), 0);
	if (!lab_request(l, in->flags, &t))
		return false;
	EXPECT_EQ_FATAL(vmm_gva_read(l->vm, l->lab, &st, sizeof(st)), 0);
	memset(o, 0, sizeof(*o));
	o->path = t.path;
	o->rflags_out = t.rflags_out;
	o->rsp_at_site = t.rsp_at_site;
	o->rsp_in_callee = t.rsp_in_callee;
	o->ret_addr = t.ret_addr;
	o->rsp_out = st.rsp_out;
	memcpy(o->regs, st.regs_out, sizeof(o->regs));
	memcpy(o->stack, st.stack_out, sizeof(o->stack));
	return true;
}

static void lab_out_print(const char *what, const struct lab_out *o)
{
	fprintf(stderr, "    %s: path %llu flags 0x%llx rsp_at_site 0x%llx rsp_out 0x%llx "
		"callee_rsp 0x%llx ret 0x%llx\n      regs", what,
		(unsigned long long)o->path, (unsigned long long)o->rflags_out,
		(unsigned long long)o->rsp_at_site, (unsigned long long)o->rsp_out,
		(unsigned long long)o->rsp_in_callee, (unsigned long long)o->ret_addr);
	for (int i = 0; i < VMPOKE_LAB_REGS; i++)
		fprintf(stderr, " %llx", (unsigned long long)o->regs[i]);
	fprintf(stderr, "\n      stack");
	for (int i = 0; i < VMPOKE_LAB_STACK_OUT; i++)
		fprintf(stderr, " %llx", (unsigned long long)o->stack[i]);
	fprintf(stderr, "\n");
}

/* One input and the path the SDM says the real instruction takes. */
struct lab_case {
	struct lab_in in;
	uint64_t path;
};

/*
 * Write insn (padded) at lab_site; run every case for real, then with
 * an INT3 probe on it (no handler), which runs it as `exec` says
 * ("emulated" in the VMM, or out of line: "boosted" or "stepped"); both
 * runs must leave the same registers, flags, stack window, %rsp and
 * path, and the real one the expected path.
 */
static void lab_probe_run(struct lab *l, const char *name, const uint8_t *insn, size_t len,
			  const struct lab_case *cases, size_t n, const char *exec,
			  enum probe_kind kind)
{
	/*
	 * Not NOPs after the instruction: one-byte xchg %eax,%ecx/%edx/%esi/
	 * %edi, so that a run resumed a byte or more off the next instruction
	 * leaves other registers than one resumed exactly there.
	 */
	static const uint8_t pad[VMPOKE_LAB_SITE_LEN] = {
		0x91, 0x92, 0x96, 0x97, 0x92, 0x91, 0x97, 0x96,
	};
	uint8_t bytes[VMPOKE_LAB_SITE_LEN];
	struct lab_out real[16], emu[16];
	struct probe_opts o = { .kind = kind };
	struct probe_counts c;
	const char *reason = NULL;
	struct probe *pr;
	char msg[256];

	EXPECT_TRUE_FATAL(n <= 16 && len <= VMPOKE_LAB_SITE_LEN);
	memcpy(bytes, insn, len);
	memcpy(bytes + len, pad, sizeof(bytes) - len);
	EXPECT_EQ_FATAL(vmm_gva_write(l->vm, l->site, bytes, sizeof(bytes)), 0);
	for (size_t i = 0; i < n; i++) {
		if (!lab_request_full(l, &cases[i].in, &real[i]))
			return;
		EXPECT_TRUE_MSG(real[i].path == cases[i].path,
				"%s case %zu: real path %llu, expected %llu", name, i,
				(unsigned long long)real[i].path,
				(unsigned long long)cases[i].path);
	}
	pr = probe_add(l->p, l->site, &o, &reason, msg, sizeof(msg));
	EXPECT_TRUE_MSG(pr != NULL, "%s: probe refused: %s", name, msg);
	if (!pr)
		return;
	if (kind != PROBE_KIND_INT3)
		EXPECT_TRUE_MSG(probe_kind_of(pr) == PROBE_KIND_OPTIMIZED,
				"%s stayed INT3: %s", name, probe_opt_refusal(pr));
	else
		EXPECT_TRUE_MSG(!strcmp(probe_exec_of(pr), exec) ||
				(!strcmp(exec, "slot") && strcmp(probe_exec_of(pr), "emulated")),
				"%s runs %s, expected %s", name, probe_exec_of(pr), exec);
	for (size_t i = 0; i < n; i++)
		if (!lab_request_full(l, &cases[i].in, &emu[i]))
			break;
	probe_counts(pr, &c);
	EXPECT_EQ_U64(n, c.hits);
	EXPECT_EQ_U64(0, probe_remove(pr, msg, sizeof(msg)));
	for (size_t i = 0; i < n; i++) {
		bool same = !memcmp(&real[i], &emu[i], sizeof(real[i]));

		EXPECT_TRUE_MSG(same, "%s case %zu: the probed run differs", name, i);
		if (!same) {
			lab_out_print("real", &real[i]);
			lab_out_print("probed", &emu[i]);
		}
	}
}

static void lab_probe_form(struct lab *l, const char *name, const uint8_t *insn, size_t len,
			   const struct lab_case *cases, size_t n, const char *exec)
{
	lab_probe_run(l, name, insn, len, cases, n, exec, PROBE_KIND_INT3);
}

/* A case with the registers and stack filled with distinct patterns. */
static struct lab_case lab_case_make(uint64_t flags, uint64_t path)
{
	struct lab_case c;

	memset(&c, 0, sizeof(c));
	c.in.flags = flags;
	for (int i = 0; i < VMPOKE_LAB_REGS; i++)
		c.in.regs[i] = 0x1111111111111111ull * (uint64_t)(i + 1) ^ 0x8000000000000001ull;
	for (int i = 0; i < VMPOKE_LAB_STACK_IN; i++)
		c.in.stack[i] = 0x5a5a000000000000ull | (uint64_t)(0xa0 + i);
	c.path = path;
	return c;
}

/*
 * LOOP, LOOPE, LOOPNE (e0-e2) and JrCXZ (e3), 64- and 32-bit address
 * size (67: ECX, the upper half kept), each taken and not taken: RCX
 * values 1 (the decrement reaches 0), 2, 0 (wraps) and one whose low half
 * is 1 but high half is not, under ZF clear and set.
 */
static void test_lab_loop(void)
{
	static const uint64_t cxs[] = { 1, 2, 0, 0x100000001ull };
	static const uint64_t zfs[] = { 0, F_ZF };
	struct lab l;

	if (!testlib_require_kvm())
		return;
	if (lab_boot(&l)) {
		for (unsigned int op = 0xe0; op <= 0xe3; op++) {
			for (int a32 = 0; a32 < 2; a32++) {
				struct lab_case cases[8];
				uint8_t insn[3];
				size_t len = 0, n = 0;
				bool seen[3] = { false, false, false };
				char name[32];

				if (a32)
					insn[len++] = 0x67;
				insn[len++] = (uint8_t)op;
				insn[len] = (uint8_t)(int8_t)(int64_t)(l.taken - (l.site + len + 1));
				len++;
				for (size_t i = 0; i < sizeof(cxs) / sizeof(cxs[0]); i++) {
					for (size_t z = 0; z < 2; z++) {
						uint64_t mask = a32 ? 0xffffffffull : ~0ull;
						uint64_t cx = cxs[i] & mask, dec = (cx - 1) & mask;
						bool zf = zfs[z], taken;

						if (op == 0xe3)
							taken = cx == 0;
						else if (op == 0xe2)
							taken = dec != 0;
						else if (op == 0xe1)
							taken = dec != 0 && zf;
						else
							taken = dec != 0 && !zf;
						cases[n] = lab_case_make(zfs[z], taken ? 2 : 1);
						cases[n].in.regs[R_CX] = cxs[i];
						seen[taken ? 2 : 1] = true;
						n++;
					}
				}
				EXPECT_TRUE(seen[1] && seen[2]);
				snprintf(name, sizeof(name), "%s%02x", a32 ? "67 " : "", op);
				lab_probe_form(&l, name, insn, len, cases, n, "emulated");
			}
		}
	}
	lab_shutdown(&l);
}

/* A register's stored value, by hardware number, among the planted ones. */
static int lab_reg_index(unsigned int hw)
{
	static const int map[16] = { R_AX, R_CX, R_DX, -1, -1, -1, R_SI, R_DI,
				     R_8, R_9, R_10, R_11, -1, R_13, R_14, R_15 };

	return map[hw & 15];
}

/*
 * PUSH of every 64-bit register (REX.B for r8-r15; push %rsp pushes the
 * value before the decrement; not %r12, the request's own sequence
 * number, which differs between the real and the probed request) and POP
 * of every planted one (the lab's own %rbx, %rbp, %r12 and %rsp cannot
 * be popped into), emulated; PUSH
 * imm8/imm32 and PUSH/POP of a stack word, out of line.
 */
static void test_lab_push_pop(void)
{
	struct lab_case one;
	struct lab l;

	if (!testlib_require_kvm())
		return;
	if (!lab_boot(&l))
		goto out;
	one = lab_case_make(F_CF | F_ZF, 1);
	for (unsigned int hw = 0; hw < 16; hw++) {
		uint8_t insn[2];
		size_t len = 0;
		char name[32];

		if (hw == 12)
			continue;
		if (hw >= 8)
			insn[len++] = 0x41;
		insn[len++] = (uint8_t)(0x50 + (hw & 7));
		snprintf(name, sizeof(name), "push r%u", hw);
		lab_probe_form(&l, name, insn, len, &one, 1, "emulated");
		if (lab_reg_index(hw) < 0)
			continue;
		insn[len - 1] = (uint8_t)(0x58 + (hw & 7));
		snprintf(name, sizeof(name), "pop r%u", hw);
		lab_probe_form(&l, name, insn, len, &one, 1, "emulated");
	}
	{
		static const uint8_t push_imm8[] = { 0x6a, 0x80 };
		static const uint8_t push_imm32[] = { 0x68, 0x78, 0x56, 0x34, 0x12 };
		static const uint8_t push_mem[] = { 0xff, 0x74, 0x24, 0xf0 };	/* pushq -16(%rsp) */
		static const uint8_t pop_mem[] = { 0x8f, 0x44, 0x24, 0xe8 };	/* popq -24(%rsp) */

		lab_probe_form(&l, "push imm8", push_imm8, sizeof(push_imm8), &one, 1, "slot");
		lab_probe_form(&l, "push imm32", push_imm32, sizeof(push_imm32), &one, 1,
			       "slot");
		lab_probe_form(&l, "push -16(%rsp)", push_mem, sizeof(push_mem), &one, 1, "slot");
		lab_probe_form(&l, "pop -24(%rsp)", pop_mem, sizeof(pop_mem), &one, 1, "slot");
	}
out:
	lab_shutdown(&l);
}

/* call *%reg and jmp *%reg through every planted register, RET and RET imm16. */
static void test_lab_indirect_ret(void)
{
	static const uint8_t ret[] = { 0xc3 };
	static const uint8_t ret_imm[] = { 0xc2, 0x10, 0x00 };
	static const uint8_t ret_imm0[] = { 0xc2, 0x00, 0x00 };
	struct lab_case one;
	struct lab l;

	if (!testlib_require_kvm())
		return;
	if (!lab_boot(&l))
		goto out;
	for (unsigned int hw = 0; hw < 16; hw++) {
		int ri = lab_reg_index(hw);
		uint8_t insn[3];
		size_t len = 0;
		char name[32];

		if (ri < 0)
			continue;
		if (hw >= 8)
			insn[len++] = 0x41;
		insn[len++] = 0xff;
		insn[len++] = (uint8_t)(0xd0 | (hw & 7));	/* /2, mod 3 */
		one = lab_case_make(F_SF, 31);
		one.in.regs[ri] = l.callee;
		snprintf(name, sizeof(name), "call *r%u", hw);
		lab_probe_form(&l, name, insn, len, &one, 1, "emulated");
		insn[len - 1] = (uint8_t)(0xe0 | (hw & 7));	/* /4 */
		one = lab_case_make(F_OF, 2);
		one.in.regs[ri] = l.taken;
		snprintf(name, sizeof(name), "jmp *r%u", hw);
		lab_probe_form(&l, name, insn, len, &one, 1, "emulated");
	}
	one = lab_case_make(F_PF, 4);
	lab_probe_form(&l, "ret", ret, sizeof(ret), &one, 1, "emulated");
	lab_probe_form(&l, "ret $16", ret_imm, sizeof(ret_imm), &one, 1, "emulated");
	lab_probe_form(&l, "ret $0", ret_imm0, sizeof(ret_imm0), &one, 1, "emulated");
out:
	lab_shutdown(&l);
}

/*
 * The forms the site path also emulates, now through a probe
 * (poke_emulate_regs): CALL/JMP rel32 and rel8, and every Jcc rel8 and
 * rel32 under flag states that drive it both ways.
 */
static void test_lab_probe_branches(void)
{
	struct lab_case cases[NR_FLAG_STATES], one;
	uint8_t insn[6];
	struct lab l;

	if (!testlib_require_kvm())
		return;
	if (!lab_boot(&l))
		goto out;
	insn[0] = 0xe8;
	put32(insn + 1, l.site + 5, l.callee);
	one = lab_case_make(0, 31);
	lab_probe_form(&l, "call rel32", insn, 5, &one, 1, "emulated");
	insn[0] = 0xe9;
	put32(insn + 1, l.site + 5, l.taken);
	one = lab_case_make(0, 2);
	lab_probe_form(&l, "jmp rel32", insn, 5, &one, 1, "emulated");
	insn[0] = 0xeb;
	insn[1] = (uint8_t)(int8_t)(int64_t)(l.taken - (l.site + 2));
	lab_probe_form(&l, "jmp rel8", insn, 2, &one, 1, "emulated");
	for (unsigned int rel32 = 0; rel32 < 2; rel32++) {
		for (unsigned int cc = 0; cc < 16; cc++) {
			char name[32];

			lab_jcc_insn(&l, cc, rel32, insn);
			for (size_t i = 0; i < NR_FLAG_STATES; i++)
				cases[i] = lab_case_make(flag_states[i],
							 ref_cond(cc, flag_states[i]) ? 2 : 1);
			snprintf(name, sizeof(name), "probe j%x %s", cc, rel32 ? "rel32" : "rel8");
			lab_probe_form(&l, name, insn, rel32 ? 6 : 2, cases, NR_FLAG_STATES,
				       "emulated");
		}
	}
out:
	lab_shutdown(&l);
}

/*
 * Optimized probes (issue 9): lab_site is an 8-byte function, so a probe
 * on it displaces the form and the pad after it (one-byte xchgs: a run
 * that comes back off by a byte leaves other registers) into a detour,
 * relocated by relocate_region.c, and the real and detoured runs must
 * leave the same registers, flags, stack window, %rsp and path: Jcc rel8
 * widened and rel32 re-aimed under every condition both ways, JMP rel8
 * and rel32, JrCXZ and LOOP through their island, a last CALL as push
 * literal + jmp (the callee sees the same return address), PUSH/POP, and
 * RIP-relative LEA and load re-encoded.  The hits are the detour's own
 * counts, no exit.
 */
static void test_lab_optimized(void)
{
	static const uint64_t cxs[] = { 0, 1, 2 };
	struct lab_case cases[NR_FLAG_STATES], one;
	uint8_t insn[8];
	struct lab l;
	char name[40];

	if (!testlib_require_kvm())
		return;
	if (!lab_boot(&l))
		goto out;
	for (unsigned int rel32 = 0; rel32 < 2; rel32++) {
		for (unsigned int cc = 0; cc < 16; cc++) {
			size_t len = lab_jcc_insn(&l, cc, rel32, insn);

			for (size_t i = 0; i < NR_FLAG_STATES; i++)
				cases[i] = lab_case_make(flag_states[i],
							 ref_cond(cc, flag_states[i]) ? 2 : 1);
			snprintf(name, sizeof(name), "optimized j%x %s", cc,
				 rel32 ? "rel32" : "rel8");
			lab_probe_run(&l, name, insn, len, cases, NR_FLAG_STATES, NULL,
				      PROBE_KIND_AUTO);
		}
	}
	one = lab_case_make(F_ZF, 2);
	insn[0] = 0xeb;
	insn[1] = (uint8_t)(int8_t)(int64_t)(l.taken - (l.site + 2));
	lab_probe_run(&l, "optimized jmp rel8", insn, 2, &one, 1, NULL, PROBE_KIND_AUTO);
	insn[0] = 0xe9;
	put32(insn + 1, l.site + 5, l.taken);
	lab_probe_run(&l, "optimized jmp rel32", insn, 5, &one, 1, NULL, PROBE_KIND_AUTO);
	insn[0] = 0xe8;
	put32(insn + 1, l.site + 5, l.callee);
	one = lab_case_make(F_CF, 31);
	lab_probe_run(&l, "optimized call rel32", insn, 5, &one, 1, NULL, PROBE_KIND_AUTO);
	for (unsigned int op = 0xe2; op <= 0xe3; op++) {
		for (size_t i = 0; i < sizeof(cxs) / sizeof(cxs[0]); i++) {
			bool taken = op == 0xe3 ? cxs[i] == 0 : cxs[i] - 1 != 0;

			cases[i] = lab_case_make(0, taken ? 2 : 1);
			cases[i].in.regs[R_CX] = cxs[i];
		}
		insn[0] = (uint8_t)op;
		insn[1] = (uint8_t)(int8_t)(int64_t)(l.taken - (l.site + 2));
		snprintf(name, sizeof(name), "optimized %s", op == 0xe3 ? "jrcxz" : "loop");
		lab_probe_run(&l, name, insn, 2, cases, 3, NULL, PROBE_KIND_AUTO);
	}
	one = lab_case_make(F_SF | F_OF, 1);
	insn[0] = 0x50;				/* push %rax; pop %rcx */
	insn[1] = 0x59;
	lab_probe_run(&l, "optimized push/pop", insn, 2, &one, 1, NULL, PROBE_KIND_AUTO);
	insn[0] = 0x48;				/* lea lab_taken(%rip),%rax */
	insn[1] = 0x8d;
	insn[2] = 0x05;
	put32(insn + 3, l.site + 7, l.taken);
	lab_probe_run(&l, "optimized lea rip", insn, 7, &one, 1, NULL, PROBE_KIND_AUTO);
	insn[1] = 0x8b;				/* mov lab_taken(%rip),%rax */
	lab_probe_run(&l, "optimized mov rip", insn, 7, &one, 1, NULL, PROBE_KIND_AUTO);
out:
	lab_shutdown(&l);
}

TEST_SUITE(lab_ref, "lab_ref", false, TEST(test_lab_ref_cond))
TEST_SUITE(lab, "lab", true,
	   TEST(test_lab_jcc32), TEST(test_lab_jcc8), TEST(test_lab_call_ret),
	   TEST(test_lab_jmp_nop), TEST(test_lab_loop), TEST(test_lab_push_pop),
	   TEST(test_lab_indirect_ret), TEST(test_lab_probe_branches),
	   TEST(test_lab_optimized))
