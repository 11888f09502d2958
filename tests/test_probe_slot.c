// SPDX-License-Identifier: MIT
/*
 * test_probe_slot.c - the bytes of an out-of-line probe slot (no KVM):
 * probe_insn_decode() + probe_insn_slot(), the relocator under them.  A
 * table of RIP-relative forms (mov, lea, cmp, add, imul, SSE; prefixes;
 * an immediate after the displacement) with the relocated bytes written
 * out by hand, the displacement arithmetic at the s32 edges, and the
 * refusal rip_rel_unreachable when the new displacement or the JMP back
 * does not fit.
 */
#include <string.h>

#include "testlib.h"
#include "../patcher/probe_internal.h"

#define FROM	0x101000ull
#define SLOT	0x140000ull	/* FROM - SLOT = -0x3f000 */

struct slot_case {
	const char *name;
	uint8_t in[15], out[15];
	size_t len;
	bool rip_relative, boost;
};

/*
 * new disp = old disp + (FROM + len) - (SLOT + len) = old - 0x3f000, so
 * old 0x1000 -> 0xfffc2000 (00 20 fc ff), 0 -> 0xfffc1000 (00 10 fc ff).
 */
static const struct slot_case slot_cases[] = {
	{ "mov 0x1000(%rip),%rax",
	  { 0x48, 0x8b, 0x05, 0x00, 0x10, 0x00, 0x00 },
	  { 0x48, 0x8b, 0x05, 0x00, 0x20, 0xfc, 0xff }, 7, true, true },
	{ "lea 0x10(%rip),%rdi",
	  { 0x48, 0x8d, 0x3d, 0x10, 0x00, 0x00, 0x00 },
	  { 0x48, 0x8d, 0x3d, 0x10, 0x10, 0xfc, 0xff }, 7, true, true },
	{ "cmpl $0x7f,0x2000(%rip) (imm8 after the disp)",
	  { 0x83, 0x3d, 0x00, 0x20, 0x00, 0x00, 0x7f },
	  { 0x83, 0x3d, 0x00, 0x30, 0xfc, 0xff, 0x7f }, 7, true, true },
	{ "cmpq $0x12345678,-0x100(%rip) (imm32 after the disp)",
	  { 0x48, 0x81, 0x3d, 0x00, 0xff, 0xff, 0xff, 0x78, 0x56, 0x34, 0x12 },
	  { 0x48, 0x81, 0x3d, 0x00, 0x0f, 0xfc, 0xff, 0x78, 0x56, 0x34, 0x12 }, 11, true, true },
	{ "cmpb $5,0x0(%rip)",
	  { 0x80, 0x3d, 0x00, 0x00, 0x00, 0x00, 0x05 },
	  { 0x80, 0x3d, 0x00, 0x10, 0xfc, 0xff, 0x05 }, 7, true, true },
	{ "add %eax,0x0(%rip)",
	  { 0x01, 0x05, 0x00, 0x00, 0x00, 0x00 },
	  { 0x01, 0x05, 0x00, 0x10, 0xfc, 0xff }, 6, true, true },
	{ "lock addq $1,0x40(%rip)",
	  { 0xf0, 0x48, 0x83, 0x05, 0x40, 0x00, 0x00, 0x00, 0x01 },
	  { 0xf0, 0x48, 0x83, 0x05, 0x40, 0x10, 0xfc, 0xff, 0x01 }, 9, true, true },
	{ "movw $0x1234,0x8(%rip) (66, imm16 after the disp)",
	  { 0x66, 0xc7, 0x05, 0x08, 0x00, 0x00, 0x00, 0x34, 0x12 },
	  { 0x66, 0xc7, 0x05, 0x08, 0x10, 0xfc, 0xff, 0x34, 0x12 }, 9, true, true },
	{ "mov %fs:0x0(%rip),%rax (segment prefix)",
	  { 0x64, 0x48, 0x8b, 0x05, 0x00, 0x00, 0x00, 0x00 },
	  { 0x64, 0x48, 0x8b, 0x05, 0x00, 0x10, 0xfc, 0xff }, 8, true, true },
	{ "mov 0x100(%rip),%r8 (REX.R)",
	  { 0x4c, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00 },
	  { 0x4c, 0x8b, 0x05, 0x00, 0x11, 0xfc, 0xff }, 7, true, true },
	{ "imul 0x30(%rip),%rax (0f af, as lib_mul_add)",
	  { 0x48, 0x0f, 0xaf, 0x05, 0x30, 0x00, 0x00, 0x00 },
	  { 0x48, 0x0f, 0xaf, 0x05, 0x30, 0x10, 0xfc, 0xff }, 8, true, true },
	{ "movss 0x20(%rip),%xmm0 (f3 0f 10: not boostable, ends in INT3)",
	  { 0xf3, 0x0f, 0x10, 0x05, 0x20, 0x00, 0x00, 0x00 },
	  { 0xf3, 0x0f, 0x10, 0x05, 0x20, 0x10, 0xfc, 0xff }, 8, true, false },
	{ "movdqa 0x0(%rip),%xmm1 (66 0f 6f)",
	  { 0x66, 0x0f, 0x6f, 0x0d, 0x00, 0x00, 0x00, 0x00 },
	  { 0x66, 0x0f, 0x6f, 0x0d, 0x00, 0x10, 0xfc, 0xff }, 8, true, false },
	{ "pshufb 0x0(%rip),%xmm0 (66 0f 38: not boostable, ends in INT3)",
	  { 0x66, 0x0f, 0x38, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00 },
	  { 0x66, 0x0f, 0x38, 0x00, 0x05, 0x00, 0x10, 0xfc, 0xff }, 9, true, false },
	{ "mov (%rdi),%rax (not RIP-relative: copied)",
	  { 0x48, 0x8b, 0x07 }, { 0x48, 0x8b, 0x07 }, 3, false, true },
	{ "mov 0x1000(,%rax,8),%rax (absolute disp32 in a SIB: copied)",
	  { 0x48, 0x8b, 0x04, 0xc5, 0x00, 0x10, 0x00, 0x00 },
	  { 0x48, 0x8b, 0x04, 0xc5, 0x00, 0x10, 0x00, 0x00 }, 8, false, true },
};

static void put_rel32(uint8_t *b, int64_t rel)
{
	uint32_t u = (uint32_t)(int32_t)rel;

	for (int i = 0; i < 4; i++)
		b[i] = (uint8_t)(u >> (8 * i));
}

/* Decode and build the slot of in[0..len) at from for slot `to`. */
static int slot_build(const uint8_t *in, size_t len, uint64_t from, uint64_t to,
		      struct probe_insn *pi, uint8_t *out, size_t *n, size_t *ret_at,
		      const char **reason)
{
	char detail[128];

	if (probe_insn_decode(in, len, from, pi, reason, detail, sizeof(detail)))
		return -1;
	memset(out, 0xcc, PROBE_SLOT_SIZE);
	return probe_insn_slot(pi, from, to, out, PROBE_SLOT_SIZE, n, ret_at, reason);
}

static void test_slot_table(void)
{
	for (size_t i = 0; i < sizeof(slot_cases) / sizeof(slot_cases[0]); i++) {
		const struct slot_case *c = &slot_cases[i];
		uint8_t out[PROBE_SLOT_SIZE], want[PROBE_SLOT_SIZE];
		const char *reason = NULL;
		struct probe_insn pi;
		size_t n = 0, ret_at = 0;

		if (slot_build(c->in, c->len, FROM, SLOT, &pi, out, &n, &ret_at, &reason)) {
			EXPECT_TRUE_MSG(false, "%s: refused: %s", c->name, reason);
			continue;
		}
		EXPECT_TRUE_MSG(pi.exec == PROBE_EXEC_SLOT, "%s: not run out of line", c->name);
		EXPECT_EQ_U64(c->len, pi.len);
		EXPECT_TRUE_MSG(pi.rip_relative == c->rip_relative, "%s: rip_relative %d",
				c->name, pi.rip_relative);
		EXPECT_TRUE_MSG(pi.boost == c->boost, "%s: boost %d", c->name, pi.boost);
		/* the copy, then JMP to FROM + len or an INT3 */
		memcpy(want, c->out, c->len);
		if (c->boost) {
			want[c->len] = 0xe9;
			put_rel32(want + c->len + 1,
				  (int64_t)((FROM + c->len) - (SLOT + c->len + 5)));
		} else {
			want[c->len] = 0xcc;
		}
		EXPECT_EQ_U64(c->len, ret_at);
		EXPECT_EQ_U64(c->len + (c->boost ? 5 : 1), n);
		EXPECT_TRUE_MSG(!memcmp(out, want, n), "%s: slot bytes differ", c->name);
		if (memcmp(out, want, n)) {
			fprintf(stderr, "    got ");
			for (size_t k = 0; k < n; k++)
				fprintf(stderr, " %02x", out[k]);
			fprintf(stderr, "\n    want");
			for (size_t k = 0; k < n; k++)
				fprintf(stderr, " %02x", want[k]);
			fprintf(stderr, "\n");
		}
	}
}

/*
 * The displacement at the s32 edges: new = old + (from - to).  mov
 * disp(%rip),%rax at from, slot at BASE; each case's new displacement
 * one inside or one outside [INT32_MIN, INT32_MAX].
 */
#define BASE	0x400000000ull

static void test_slot_disp_edges(void)
{
	static const struct {
		int32_t old;
		int64_t delta;		/* from - to */
		bool ok;
		int32_t want;
	} e[] = {
		{ 0x7ffffffe, 1, true, 0x7fffffff },
		{ 0x7fffffff, 1, false, 0 },
		{ 0x7fffffff, 0, true, 0x7fffffff },
		{ -0x7fffffff, -1, true, INT32_MIN },
		{ INT32_MIN, -1, false, 0 },
		{ INT32_MIN, 0x7fffffff, true, -1 },
		{ 0x10, -0x90000000ll, false, 0 },	/* a slot 2.25 GB above */
		{ -0x10, 0x7fffff00ll, true, 0x7ffffef0 },
	};

	for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
		uint8_t in[7] = { 0x48, 0x8b, 0x05 }, out[PROBE_SLOT_SIZE];
		uint64_t from = BASE + (e[i].delta > 0 ? (uint64_t)e[i].delta : 0);
		uint64_t to = BASE + (e[i].delta < 0 ? (uint64_t)-e[i].delta : 0);
		const char *reason = NULL;
		struct probe_insn pi;
		size_t n, ret_at;
		int32_t got;
		int r;

		put_rel32(in + 3, e[i].old);
		r = slot_build(in, sizeof(in), from, to, &pi, out, &n, &ret_at, &reason);
		if (e[i].ok) {
			EXPECT_TRUE_MSG(r == 0, "case %zu: refused: %s", i, reason);
			memcpy(&got, out + 3, 4);
			EXPECT_TRUE_MSG(r || got == e[i].want, "case %zu: disp 0x%x, want 0x%x",
					i, (unsigned int)got, (unsigned int)e[i].want);
		} else {
			EXPECT_TRUE_MSG(r && reason && !strcmp(reason, "rip_rel_unreachable"),
					"case %zu: %s", i, r ? reason : "placed");
		}
	}
}

/*
 * The JMP back out of a boosted slot must reach too: rel = (from - to) -
 * 5 for an instruction with no RIP-relative operand, so a slot up to
 * 0x7ffffffb above or 0x80000004 below reaches, one byte more does not.
 */
static void test_slot_jmp_back_unreachable(void)
{
	static const uint8_t mov[] = { 0x48, 0x89, 0xd0 };	/* mov %rdx,%rax */
	static const struct {
		uint64_t from, to;
		bool ok;
	} e[] = {
		{ BASE, BASE + 0x7ffffffbull, true },
		{ BASE, BASE + 0x7ffffffcull, false },
		{ BASE + 0x80000004ull, BASE, true },
		{ BASE + 0x80000005ull, BASE, false },
	};

	for (size_t i = 0; i < sizeof(e) / sizeof(e[0]); i++) {
		uint8_t out[PROBE_SLOT_SIZE];
		const char *reason = NULL;
		struct probe_insn pi;
		size_t n, ret_at;
		int r = slot_build(mov, sizeof(mov), e[i].from, e[i].to, &pi, out, &n, &ret_at,
				   &reason);
		int32_t rel;

		EXPECT_TRUE(pi.boost);
		if (!e[i].ok) {
			EXPECT_TRUE_MSG(r && reason && !strcmp(reason, "rip_rel_unreachable"),
					"case %zu: %s", i, r ? reason : "placed");
			continue;
		}
		EXPECT_TRUE_MSG(r == 0, "case %zu: refused: %s", i, reason);
		memcpy(&rel, out + 4, 4);
		EXPECT_TRUE_MSG(r || (out[3] == 0xe9 &&
				      e[i].to + 8 + (uint64_t)(int64_t)rel == e[i].from + 3),
				"case %zu: the JMP back misses", i);
	}
}

TEST_SUITE(probe_slot, "probe_slot", false,
	   TEST(test_slot_table), TEST(test_slot_disp_edges),
	   TEST(test_slot_jmp_back_unreachable))
