// SPDX-License-Identifier: MIT
/*
 * test_relocate.c - the relocator on byte buffers: what it refuses, and
 * that a moved branch keeps its absolute target.
 */
#include <string.h>

#include "testlib.h"
#include "../patcher/relocate.h"

#define FROM	0x1011b0ull
#define TO	0x200000ull

static int reloc(const uint8_t *in, size_t len, uint8_t *out, size_t *n, const char **why)
{
	return relocate_insn(in, len, FROM, TO, out, RELOCATE_MAX_OUT, n, why);
}

/*
 * Found by fuzz_decode: with 66 the branch is rel16 (IP truncated to 16
 * bits) and its immediate is not the last 4 bytes; the rel32 was written
 * over the prefix and the opcode.
 */
static void test_relocate_refuses_rel16_branches(void)
{
	static const uint8_t jmp16[] = { 0x66, 0xe9, 0x6f, 0x6f };
	static const uint8_t call16[] = { 0x66, 0xe8, 0x10, 0x00 };
	static const uint8_t je16[] = { 0x66, 0x0f, 0x84, 0x10, 0x00 };
	const uint8_t *in[] = { jmp16, call16, je16 };
	size_t len[] = { sizeof(jmp16), sizeof(call16), sizeof(je16) };
	uint8_t out[RELOCATE_MAX_OUT];

	for (size_t i = 0; i < 3; i++) {
		const char *why = NULL;
		size_t n = 0;

		EXPECT_EQ(reloc(in[i], len[i], out, &n, &why), -1);
		EXPECT_TRUE_MSG(why && !strcmp(why, "unsupported"), "case %zu: reason %s",
				i, why ? why : "(none)");
	}
}

/*
 * LOOP and JrCXZ have no rel32 form: refused as unsupported (no probe
 * hands one to relocate_insn(); the list has no branch_rel8 any more).
 */
static void test_relocate_refuses_loop(void)
{
	static const uint8_t loops[][3] = {
		{ 0xe2, 0x10 }, { 0xe1, 0xfe }, { 0xe0, 0x00 }, { 0xe3, 0x05 }, { 0x67, 0xe2, 0x10 },
	};
	static const size_t len[] = { 2, 2, 2, 2, 3 };
	uint8_t out[RELOCATE_MAX_OUT];

	for (size_t i = 0; i < sizeof(len) / sizeof(len[0]); i++) {
		const char *why = NULL;
		size_t n = 0;

		EXPECT_EQ(reloc(loops[i], len[i], out, &n, &why), -1);
		EXPECT_TRUE_MSG(why && !strcmp(why, "unsupported"), "case %zu: reason %s", i,
				why ? why : "(none)");
	}
}

static void test_relocate_branch_keeps_target(void)
{
	static const uint8_t jmp8[] = { 0xeb, 0x10 };		/* -> FROM + 2 + 0x10 */
	static const uint8_t call32[] = { 0xe8, 0x00, 0x01, 0x00, 0x00 };
	uint8_t out[RELOCATE_MAX_OUT];
	const char *why = NULL;
	int32_t rel;
	size_t n = 0;

	EXPECT_EQ(reloc(jmp8, sizeof(jmp8), out, &n, &why), 0);
	EXPECT_EQ_U64(5, n);
	EXPECT_EQ(out[0], 0xe9);
	memcpy(&rel, out + 1, 4);
	EXPECT_EQ_U64(FROM + 2 + 0x10, TO + 5 + (int64_t)rel);
	EXPECT_EQ(reloc(call32, sizeof(call32), out, &n, &why), 0);
	EXPECT_EQ_U64(5, n);
	EXPECT_EQ(out[0], 0xe8);
	memcpy(&rel, out + 1, 4);
	EXPECT_EQ_U64(FROM + 5 + 0x100, TO + 5 + (int64_t)rel);
}

/*
 * Found by fuzz_decode (relocate_region): a REX before a legacy prefix is
 * ignored by the CPU, so `42 f2 eb 10` is a JMP rel8 and `42 66 eb 10` a
 * JMP rel16.  The prefix walk stopped at the REX and took F2 / 66 for the
 * opcode.
 */
static void test_relocate_rex_among_prefixes(void)
{
	static const uint8_t jmp8[] = { 0x42, 0xf2, 0xeb, 0x10 };
	static const uint8_t jmp16[] = { 0x42, 0x66, 0xeb, 0x10 };
	uint8_t out[RELOCATE_MAX_OUT];
	const char *why = NULL;
	int32_t rel;
	size_t n = 0;

	EXPECT_EQ_U64(2, relocate_opcode_offset(jmp8, sizeof(jmp8)));
	EXPECT_EQ(reloc(jmp8, sizeof(jmp8), out, &n, &why), 0);
	EXPECT_EQ_U64(5, n);
	EXPECT_EQ(out[0], 0xe9);
	memcpy(&rel, out + 1, 4);
	EXPECT_EQ_U64(FROM + 4 + 0x10, TO + 5 + (int64_t)rel);
	why = NULL;
	EXPECT_EQ(reloc(jmp16, sizeof(jmp16), out, &n, &why), -1);
	EXPECT_TRUE_MSG(why && !strcmp(why, "unsupported"), "reason %s", why ? why : "(none)");
}

/*
 * Found by fuzz_decode: the new displacement of a RIP-relative operand
 * was summed in int64_t, which overflows (undefined behaviour, caught by
 * UBSan) for a slot 2^63 away.  It is address arithmetic, modulo 2^64 as
 * the CPU does it: 2^63 away is out of reach, and a slot across the wrap
 * at 2^64 is as near as its distance modulo 2^64.
 */
static void test_relocate_riprel_far_and_wrapping(void)
{
	/* mov rax, [rip - 0x80000000] and mov rax, [rip - 0x20] */
	static const uint8_t far[] = { 0x48, 0x8b, 0x05, 0x00, 0x00, 0x00, 0x80 };
	static const uint8_t near[] = { 0x48, 0x8b, 0x05, 0xe0, 0xff, 0xff, 0xff };
	const uint64_t wrap_to = 0xfffffffffffff000ull;
	uint8_t out[RELOCATE_MAX_OUT];
	const char *why = NULL;
	int32_t disp;
	size_t n = 0;

	EXPECT_EQ(relocate_insn(far, sizeof(far), 0, 1ull << 63, out, sizeof(out), &n,
				&why), -1);
	EXPECT_TRUE_MSG(why && !strcmp(why, "rip_rel_unreachable"), "reason %s",
			why ? why : "(none)");
	/* From 0x10 the operand is at 2^64 - 9: from wrap_to, 0xff0 bytes on. */
	EXPECT_EQ(relocate_insn(near, sizeof(near), 0x10, wrap_to, out, sizeof(out), &n,
				&why), 0);
	EXPECT_EQ_U64(sizeof(near), n);
	memcpy(&disp, out + 3, 4);
	EXPECT_EQ_U64(0x10 + 7 - 0x20, wrap_to + 7 + (uint64_t)(int64_t)disp);
	EXPECT_EQ(disp, 0xff0);
}

/*
 * Found by fuzz_decode: Capstone 4 reads `67 48 e9 rel32` as rel16 (its
 * target truncated to 16 bits); the CPU ignores both prefixes.  The
 * relocator went by the bytes, every other reader by Capstone: refused.
 * relocate_branch_target() is the CPU's reading.
 */
static void test_relocate_branch_target_and_misread(void)
{
	static const uint8_t misread[] = { 0x67, 0x48, 0xe9, 0x00, 0x10, 0x00, 0x00 };
	static const uint8_t addr32[] = { 0x67, 0xe9, 0x00, 0x10, 0x00, 0x00 };
	static const uint8_t hinted_jcc[] = { 0x3e, 0x74, 0xfe };	/* ds je . - 1 */
	static const uint8_t loop[] = { 0xe2, 0x10 };
	static const uint8_t jcc32[] = { 0x0f, 0x85, 0x00, 0x00, 0x00, 0x80 };
	static const uint8_t jmp16[] = { 0x66, 0xe9, 0x10, 0x00 };
	static const uint8_t notbranch[] = { 0x48, 0x89, 0xc1 };
	static const uint8_t xbegin[] = { 0xc7, 0xf8, 0x10, 0x00, 0x00, 0x00 };
	uint8_t out[RELOCATE_MAX_OUT];
	const char *why = NULL;
	uint64_t t = 0;
	int32_t rel;
	size_t n = 0;

	EXPECT_EQ(relocate_branch_target(misread, sizeof(misread), FROM, &t), 0);
	EXPECT_EQ_U64(FROM + 7 + 0x1000, t);
	EXPECT_EQ(reloc(misread, sizeof(misread), out, &n, &why), -1);
	EXPECT_TRUE_MSG(why && !strcmp(why, "unsupported"), "reason %s", why ? why : "(none)");
	EXPECT_EQ(relocate_branch_target(addr32, sizeof(addr32), FROM, &t), 0);
	EXPECT_EQ_U64(FROM + 6 + 0x1000, t);
	EXPECT_EQ(reloc(addr32, sizeof(addr32), out, &n, &why), 0);
	EXPECT_EQ_U64(6, n);
	memcpy(&rel, out + 2, 4);
	EXPECT_EQ_U64(FROM + 6 + 0x1000, TO + 6 + (int64_t)rel);
	EXPECT_EQ(relocate_branch_target(hinted_jcc, sizeof(hinted_jcc), FROM, &t), 0);
	EXPECT_EQ_U64(FROM + 1, t);
	EXPECT_EQ(relocate_branch_target(loop, sizeof(loop), FROM, &t), 0);
	EXPECT_EQ_U64(FROM + 2 + 0x10, t);
	EXPECT_EQ(relocate_branch_target(jcc32, sizeof(jcc32), FROM, &t), 0);
	EXPECT_EQ_U64(FROM + 6 - 0x80000000ull, t);
	EXPECT_EQ(relocate_branch_target(jmp16, sizeof(jmp16), FROM, &t), -1);
	EXPECT_EQ(relocate_branch_target(notbranch, sizeof(notbranch), FROM, &t), -1);
	EXPECT_EQ(relocate_branch_target(jcc32, 5, FROM, &t), -1);	/* cut short */
	/* XBEGIN's abort target: a branch to follow, never moved out of line */
	EXPECT_EQ(relocate_branch_target(xbegin, sizeof(xbegin), FROM, &t), 0);
	EXPECT_EQ_U64(FROM + 6 + 0x10, t);
	EXPECT_EQ(reloc(xbegin, sizeof(xbegin), out, &n, &why), -1);
	EXPECT_TRUE_MSG(why && !strcmp(why, "unsupported"), "reason %s", why ? why : "(none)");
}

TEST_SUITE(relocate, "relocate", false,
	   TEST(test_relocate_refuses_rel16_branches), TEST(test_relocate_refuses_loop),
	   TEST(test_relocate_branch_keeps_target), TEST(test_relocate_rex_among_prefixes),
	   TEST(test_relocate_riprel_far_and_wrapping),
	   TEST(test_relocate_branch_target_and_misread))
