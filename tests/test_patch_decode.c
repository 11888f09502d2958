// SPDX-License-Identifier: MIT
/*
 * test_patch_decode.c - site validation on byte patterns (Capstone), no VM:
 * what the hook may emulate, and what a scan of a function finds.
 */
#include <string.h>

#include "testlib.h"
#include "../patcher/patcher_internal.h"

#define AT	0x401000ull

static enum poke_err one(const uint8_t *b, size_t len, bool emulatable,
			 struct poke_emu *emu)
{
	char why[160];
	enum poke_err e = decode_one(b, len, AT, emulatable, emu, why, sizeof(why));

	if (e)
		EXPECT_NE(why[0], '\0');	/* every refusal says why */
	return e;
}

static void test_decode_nops(void)
{
	static const uint8_t nop2[] = { 0x66, 0x90 };
	static const uint8_t nop5[] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
	struct poke_emu emu;

	EXPECT_EQ(one(nop2, 2, true, &emu), POKE_OK);
	EXPECT_EQ(emu.kind, POKE_EMU_JMP);
	EXPECT_EQ_U64(AT + 2, emu.target);
	EXPECT_EQ(one(nop5, 5, true, &emu), POKE_OK);
	EXPECT_EQ(emu.kind, POKE_EMU_JMP);
	EXPECT_EQ_U64(AT + 5, emu.target);
	EXPECT_EQ_U64(5, emu.len);
}

static void test_decode_jmp_call(void)
{
	static const uint8_t jmp8[] = { 0xeb, 0xfe };			/* to itself */
	static const uint8_t jmp32[] = { 0xe9, 0x00, 0x01, 0x00, 0x00 };
	static const uint8_t call32[] = { 0xe8, 0xfb, 0xff, 0xff, 0xff };	/* -5 */
	struct poke_emu emu;

	EXPECT_EQ(one(jmp8, 2, true, &emu), POKE_OK);
	EXPECT_EQ(emu.kind, POKE_EMU_JMP);
	EXPECT_EQ_U64(AT, emu.target);
	EXPECT_EQ(one(jmp32, 5, true, &emu), POKE_OK);
	EXPECT_EQ_U64(AT + 5 + 0x100, emu.target);
	EXPECT_EQ(one(call32, 5, true, &emu), POKE_OK);
	EXPECT_EQ(emu.kind, POKE_EMU_CALL);
	EXPECT_EQ_U64(AT, emu.target);
	EXPECT_EQ_U64(5, emu.len);
}

static void test_decode_jcc_all(void)
{
	unsigned int cc;

	for (cc = 0; cc < 16; cc++) {
		uint8_t j8[2] = { (uint8_t)(0x70 | cc), 0x10 };
		uint8_t j32[6] = { 0x0f, (uint8_t)(0x80 | cc), 0xf0, 0xff, 0xff, 0xff };
		struct poke_emu emu;

		EXPECT_EQ(one(j8, 2, true, &emu), POKE_OK);
		EXPECT_EQ(emu.kind, POKE_EMU_JCC);
		EXPECT_EQ_U64(cc, emu.cond);
		EXPECT_EQ_U64(AT + 2 + 0x10, emu.target);
		EXPECT_EQ(one(j32, 6, true, &emu), POKE_OK);
		EXPECT_EQ(emu.kind, POKE_EMU_JCC);
		EXPECT_EQ_U64(cc, emu.cond);
		EXPECT_EQ_U64(AT + 6 - 0x10, emu.target);
		EXPECT_EQ_U64(6, emu.len);
	}
}

static void test_decode_padding(void)
{
	static const uint8_t ret_pad[] = { 0xc3, 0xcc, 0xcc, 0xcc, 0xcc };
	static const uint8_t jmp_pad[] = { 0xeb, 0x03, 0xcc, 0xcc, 0xcc };
	static const uint8_t ret_bad[] = { 0xc3, 0xcc, 0x90, 0xcc, 0xcc };
	static const uint8_t call_pad[] = { 0xe8, 0, 0, 0, 0, 0xcc };
	static const uint8_t nop2_pad[] = { 0x66, 0x90, 0xcc };
	struct poke_emu emu;

	EXPECT_EQ(one(ret_pad, 5, true, &emu), POKE_OK);
	EXPECT_EQ(emu.kind, POKE_EMU_RET);
	EXPECT_EQ_U64(1, emu.len);
	EXPECT_EQ(one(jmp_pad, 5, true, &emu), POKE_OK);
	EXPECT_EQ_U64(AT + 5, emu.target);
	EXPECT_EQ(one(ret_bad, 5, true, &emu), POKE_E_DECODE);
	EXPECT_EQ(one(call_pad, 6, true, &emu), POKE_E_DECODE);
	EXPECT_EQ(one(nop2_pad, 3, true, &emu), POKE_E_DECODE);
}

static void test_decode_refusals(void)
{
	static const uint8_t two_nops[] = { 0x90, 0x90 };
	static const uint8_t jmp32[] = { 0xe9, 0, 0, 0, 0 };
	static const uint8_t mov[] = { 0x48, 0x89, 0xe5 };
	static const uint8_t jmp_reg[] = { 0xff, 0xe0 };
	static const uint8_t jmp16[] = { 0x66, 0xe9, 0x00, 0x00 };
	static const uint8_t garbage[] = { 0x06 };	/* push es: invalid in 64-bit */
	struct poke_emu emu;

	EXPECT_EQ(one(two_nops, 2, true, &emu), POKE_E_DECODE);
	EXPECT_EQ(one(two_nops, 2, false, NULL), POKE_E_DECODE);
	/* Truncated: a 5-byte JMP offered as 4 bytes does not decode. */
	EXPECT_EQ(one(jmp32, 4, true, &emu), POKE_E_DECODE);
	EXPECT_EQ(one(mov, 3, true, &emu), POKE_E_EMULATE);
	EXPECT_EQ(one(jmp_reg, 2, true, &emu), POKE_E_EMULATE);
	EXPECT_EQ(one(jmp16, 4, true, &emu), POKE_E_EMULATE);
	EXPECT_EQ(one(garbage, 1, true, &emu), POKE_E_DECODE);
	EXPECT_EQ(one(jmp32, 0, true, &emu), POKE_E_INVAL);
	/* Written-only bytes (static_call's `emulate`): any one instruction. */
	EXPECT_EQ(one(mov, 3, false, NULL), POKE_OK);
}

/*
 *  0: 55              push %rbp
 *  1: 48 89 e5        mov %rsp,%rbp
 *  4: 0f 1f 44 00 00  nop5
 *  9: 74 02           je 0xd
 *  b: 90 90           nop; nop
 *  d: e8 00 00 00 00  call 0x12
 * 12: 5d              pop %rbp
 * 13: c3              ret
 */
static const uint8_t fn[] = {
	0x55, 0x48, 0x89, 0xe5, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x74, 0x02,
	0x90, 0x90, 0xe8, 0x00, 0x00, 0x00, 0x00, 0x5d, 0xc3,
};

static struct decode_scan scan(uint64_t off, size_t len)
{
	struct decode_scan sc;

	EXPECT_EQ(decode_scan_function(fn, sizeof(fn), AT, AT + off, len, &sc), 0);
	return sc;
}

static void test_scan_boundaries(void)
{
	struct decode_scan sc;

	sc = scan(1, 3);
	EXPECT_TRUE(sc.at_boundary);
	EXPECT_TRUE(sc.end_boundary);
	EXPECT_TRUE(sc.complete);
	EXPECT_EQ_U64(1, sc.insns);
	sc = scan(2, 2);
	EXPECT_FALSE(sc.at_boundary);
	sc = scan(4, 4);
	EXPECT_TRUE(sc.at_boundary);
	EXPECT_FALSE(sc.end_boundary);
	sc = scan(4, 5);
	EXPECT_TRUE(sc.at_boundary);
	EXPECT_TRUE(sc.end_boundary);
	sc = scan(0x12, 2);		/* ends at the end of the function */
	EXPECT_TRUE(sc.end_boundary);
	EXPECT_EQ_U64(2, sc.insns);
	EXPECT_EQ(sc.jump_from, 0);
}

static void test_scan_jump_into(void)
{
	struct decode_scan sc;

	/* nop; nop: the je lands at 0xd = addr + len, outside the shadow. */
	sc = scan(0xb, 2);
	EXPECT_EQ_U64(2, sc.insns);
	EXPECT_EQ_U64(0, sc.jump_from);
	/* nop; nop; call: the je lands at 0xd, inside (0xb, 0x12). */
	sc = scan(0xb, 7);
	EXPECT_EQ_U64(3, sc.insns);
	EXPECT_EQ_U64(AT + 9, sc.jump_from);
	EXPECT_EQ_U64(AT + 0xd, sc.jump_to);
	/* The call returns to 0x12 = the end: not inside. */
	EXPECT_EQ_U64(0, sc.call_at);
}

static void test_scan_call_inside(void)
{
	struct decode_scan sc = scan(0xd, 6);	/* call; pop */

	EXPECT_EQ_U64(2, sc.insns);
	EXPECT_EQ_U64(AT + 0xd, sc.call_at);
}

/* A jump table: jmp *(%rcx,%rdi,8) after the range; direct code has none. */
static void test_scan_indirect_jump(void)
{
	static const uint8_t fn[] = {
		0x89, 0xf8,			/* mov %edi,%eax */
		0x83, 0xc0, 0x01,		/* add $1,%eax */
		0xff, 0x24, 0xf9,		/* jmp *(%rcx,%rdi,8) */
		0xc3,				/* ret */
	};
	struct decode_scan sc;

	EXPECT_EQ(decode_scan_function(fn, sizeof(fn), AT, AT, 5, &sc), 0);
	EXPECT_EQ_U64(2, sc.insns);
	EXPECT_EQ_U64(AT + 5, sc.indirect_at);
	EXPECT_EQ(decode_scan_function(fn, 5, AT, AT, 5, &sc), 0);
	EXPECT_EQ_U64(0, sc.indirect_at);
	sc = scan(0xd, 6);
	EXPECT_EQ_U64(0, sc.indirect_at);
}

/*
 * Found by fuzz_decode: Capstone 4 reads `67 48 e9 rel32` as a rel16 JMP
 * (target truncated to 16 bits) and `67 48 e8 rel32` as a 5-byte CALL
 * rel16, where the CPU ignores both prefixes; a 66-prefixed JMP is rel16
 * on AMD and rel32 on Intel.  Past such a branch nothing decodes as the
 * CPU runs it: the scan stops after it (untrusted_at), so a range before
 * it is incomplete, one after it is no boundary, and decode_jump_into()
 * reports it whatever its decoded target.  `67 e9` alone is read right
 * and followed.
 */
static void test_scan_untrusted_branch(void)
{
	static const uint8_t misread[] = {
		0x89, 0xf8,				/* mov %edi,%eax */
		0x83, 0xc0, 0x01,			/* add $1,%eax */
		0x67, 0x48, 0xe9, 0x00, 0x00, 0x00, 0x00,	/* jmp .+7 */
		0xc3,					/* ret */
	};
	static const uint8_t call_len[] = {
		0x89, 0xf8, 0x83, 0xc0, 0x01,
		0x67, 0x48, 0xe8, 0x10, 0x00, 0x00, 0x00,	/* call: 7 bytes, not 5 */
		0xc3,
	};
	static const uint8_t jmp16[] = {
		0x89, 0xf8, 0x83, 0xc0, 0x01,
		0x66, 0xe9, 0x00, 0x00,			/* jmpw (rel16) */
		0xc3,
	};
	static const uint8_t addr32[] = {
		0x89, 0xf8, 0x83, 0xc0, 0x01,
		0x67, 0xe9, 0xf6, 0xff, 0xff, 0xff,	/* jmp AT + 1 */
		0xc3,
	};
	static const uint8_t xbegin[] = {
		0x89, 0xf8, 0x83, 0xc0, 0x01,
		0xc7, 0xf8, 0xf7, 0xff, 0xff, 0xff,	/* xbegin AT + 2: followed */
		0xc3,
	};
	struct decode_scan sc;
	uint64_t target = 0;

	EXPECT_EQ(decode_scan_function(misread, sizeof(misread), AT, AT, 5, &sc), 0);
	EXPECT_FALSE(sc.complete);
	EXPECT_EQ_U64(AT + 5, sc.untrusted_at);
	EXPECT_EQ_U64(AT + 12, sc.stop_at);
	EXPECT_EQ_U64(0, sc.jump_from);
	EXPECT_EQ_U64(AT + 5, decode_jump_into(misread, sizeof(misread), AT, AT, AT + 2,
					       0, 0, &target));
	/* Capstone's boundary at +10 is inside the CPU's CALL */
	EXPECT_EQ(decode_scan_function(call_len, sizeof(call_len), AT, AT + 10, 1, &sc), 0);
	EXPECT_FALSE(sc.at_boundary);
	EXPECT_EQ_U64(AT + 5, sc.untrusted_at);
	/* the branch itself is a boundary: probe_insn_decode() refuses it */
	EXPECT_EQ(decode_scan_function(call_len, sizeof(call_len), AT, AT + 5, 5, &sc), 0);
	EXPECT_TRUE(sc.at_boundary);
	EXPECT_TRUE(sc.end_boundary);
	EXPECT_EQ(decode_scan_function(jmp16, sizeof(jmp16), AT, AT, 5, &sc), 0);
	EXPECT_FALSE(sc.complete);
	EXPECT_EQ_U64(AT + 5, sc.untrusted_at);
	EXPECT_EQ(decode_scan_function(xbegin, sizeof(xbegin), AT, AT, 5, &sc), 0);
	EXPECT_TRUE(sc.complete);
	EXPECT_EQ_U64(AT + 5, sc.jump_from);	/* its abort target: AT + 2 */
	EXPECT_EQ_U64(AT + 2, sc.jump_to);
	EXPECT_EQ(decode_scan_function(addr32, sizeof(addr32), AT, AT, 5, &sc), 0);
	EXPECT_TRUE(sc.complete);
	EXPECT_EQ_U64(0, sc.untrusted_at);
	EXPECT_EQ_U64(AT + 5, sc.jump_from);
	EXPECT_EQ_U64(AT + 1, sc.jump_to);
}

static void test_scan_int3_and_garbage(void)
{
	static const uint8_t withbp[] = { 0x90, 0xcc, 0x90, 0xc3 };
	static const uint8_t bad[] = { 0x90, 0x90, 0x06, 0xc3 };
	struct decode_scan sc;

	EXPECT_EQ(decode_scan_function(withbp, 4, AT, AT + 1, 2, &sc), 0);
	EXPECT_EQ_U64(AT + 1, sc.int3_at);
	EXPECT_EQ(decode_scan_function(withbp, 4, AT, AT, 1, &sc), 0);
	EXPECT_EQ_U64(0, sc.int3_at);
	EXPECT_EQ(decode_scan_function(bad, 4, AT, AT, 2, &sc), 0);
	EXPECT_TRUE(sc.at_boundary);
	EXPECT_TRUE(sc.end_boundary);
	EXPECT_FALSE(sc.complete);
	EXPECT_EQ_U64(AT + 2, sc.stop_at);
	EXPECT_EQ(decode_scan_function(bad, 4, AT, AT + 3, 1, &sc), 0);
	EXPECT_FALSE(sc.at_boundary);
}

/* A padded JMP in the range: its INT3 padding is neither foreign nor counted. */
static void test_scan_padding_not_foreign(void)
{
	static const uint8_t padded[] = { 0x90, 0xe9, 0, 0, 0, 0, 0xcc, 0xcc, 0xc3 };
	static const uint8_t stray[] = { 0x90, 0x90, 0xcc, 0x90, 0xc3 };
	struct decode_scan sc;

	EXPECT_EQ(decode_scan_function(padded, sizeof(padded), AT, AT + 1, 7, &sc), 0);
	EXPECT_TRUE(sc.at_boundary);
	EXPECT_TRUE(sc.end_boundary);
	EXPECT_EQ_U64(0, sc.int3_at);
	EXPECT_EQ_U64(1, sc.insns);
	/* After a plain instruction an INT3 is someone's breakpoint. */
	EXPECT_EQ(decode_scan_function(stray, sizeof(stray), AT, AT + 1, 3, &sc), 0);
	EXPECT_EQ_U64(AT + 2, sc.int3_at);
}

static void test_decode_whole(void)
{
	static const uint8_t multi[] = { 0x89, 0xf8, 0x83, 0xf0, 0x5a };
	char why[160];

	EXPECT_EQ(decode_whole(multi, 5, AT, why, sizeof(why)), POKE_OK);
	EXPECT_EQ(decode_whole(multi, 4, AT, why, sizeof(why)), POKE_E_DECODE);
	EXPECT_EQ(decode_whole(multi, 0, AT, why, sizeof(why)), POKE_E_INVAL);
}

/*
 * The guest's #BP stub (push %rax; inb; test; jnz; pop; iretq; 1: pop;
 * jmp out): where the frame is at each instruction, and the doorbell.
 * The old shadow check assumed %rsp + 8 everywhere in entry text, which is
 * the CS slot at the first instruction and the iretq.
 */
static void test_frame_offsets_bp_stub(void)
{
	static const uint8_t stub[] = {
		0x50,			/* 0  push %rax */
		0xe4, 0xe0,		/* 1  in $0xe0,%al */
		0x84, 0xc0,		/* 3  test %al,%al */
		0x75, 0x03,		/* 5  jne 10 */
		0x58,			/* 7  pop %rax */
		0x48, 0xcf,		/* 8  iretq */
		0x58,			/* 10 pop %rax */
		0xeb, 0x10,		/* 11 jmp out */
	};
	static const int32_t want[sizeof(stub)] = {
		0, 8, DECODE_OFF_NONE, 8, DECODE_OFF_NONE, 8, DECODE_OFF_NONE, 8, 0,
		DECODE_OFF_NONE, 8, 0, DECODE_OFF_NONE,
	};
	int32_t off[sizeof(stub)];
	uint64_t doorbell = 0;

	EXPECT_EQ_FATAL(decode_frame_offsets(stub, sizeof(stub), 0x1000, off,
						   &doorbell), 0);
	for (size_t i = 0; i < sizeof(stub); i++)
		EXPECT_TRUE_MSG(off[i] == want[i], "byte %zu: offset %d, want %d", i,
				off[i], want[i]);
	EXPECT_EQ_U64(0x1001, doorbell);
}

/* Paths that meet with different depths, and an untracked %rsp write. */
static void test_frame_offsets_unknown(void)
{
	static const uint8_t code[] = {
		0x75, 0x01,		/* 0 jne 3 */
		0x50,			/* 2 push %rax */
		0x90,			/* 3 nop: reached at 0 and at 8 */
		0x48, 0x89, 0xc4,	/* 4 mov %rax,%rsp */
		0x90,			/* 7 nop: unknown */
		0x48, 0xcf,		/* 8 iretq */
	};
	int32_t off[sizeof(code)];
	uint64_t doorbell = 1;

	EXPECT_EQ_FATAL(decode_frame_offsets(code, sizeof(code), 0, off, &doorbell), 0);
	EXPECT_EQ(off[2], 0);
	EXPECT_EQ(off[3], DECODE_OFF_CONFLICT);
	EXPECT_EQ(off[7], DECODE_OFF_NONE);
	EXPECT_EQ_U64(0, doorbell);
}

TEST_SUITE(patch_decode, "patch_decode", false,
	   TEST(test_frame_offsets_bp_stub), TEST(test_frame_offsets_unknown),
	   TEST(test_decode_nops),
	   TEST(test_decode_jmp_call),
	   TEST(test_decode_jcc_all),
	   TEST(test_decode_padding),
	   TEST(test_decode_refusals),
	   TEST(test_scan_boundaries),
	   TEST(test_scan_jump_into),
	   TEST(test_scan_call_inside), TEST(test_scan_indirect_jump),
	   TEST(test_scan_untrusted_branch),
	   TEST(test_scan_int3_and_garbage),
	   TEST(test_scan_padding_not_foreign),
	   TEST(test_decode_whole))
