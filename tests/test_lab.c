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
_Static_assert(sizeof(struct vmpoke_lab) == 64, "lab layout");
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

			if (rel32) {
				insn[0] = 0x0f;
				insn[1] = (uint8_t)(0x80 | cc);
				put32(insn + 2, l.site + 6, l.taken);
			} else {
				insn[0] = (uint8_t)(0x70 | cc);
				insn[1] = (uint8_t)(int8_t)(int64_t)(l.taken - (l.site + 2));
			}
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

TEST_SUITE(lab_ref, "lab_ref", false, TEST(test_lab_ref_cond))
TEST_SUITE(lab, "lab", true,
	   TEST(test_lab_jcc32), TEST(test_lab_jcc8), TEST(test_lab_call_ret),
	   TEST(test_lab_jmp_nop))
