// SPDX-License-Identifier: MIT
/*
 * test_livepatch.c - the pure parts of livepatch (patcher/livepatch_stack.c)
 * on planted data: the reliable stack walk on fake stacks (a good chain, bad
 * pointers, loops, out-of-bounds frames, unsymbolizable return addresses,
 * a chain that ends in the wrong place), the prologue analysis on real
 * code bytes, and the redirect stub decoded with Capstone.
 */
#include <capstone/capstone.h>
#include <stdlib.h>
#include <string.h>

#include "livepatch.h"
#include "symtab.h"
#include "testlib.h"
#include "vmpoke_abi.h"

#define STK_LO		0x10000ull
#define STK_HI		0x12000ull
#define FN_TASK		0x400000ull
#define FN_MID		0x400100ull
#define FN_LEAF		0x400200ull

static uint8_t stk[STK_HI - STK_LO];
static bool frame_ok_answer = true;

static int fake_read(void *opaque, uint64_t gva, void *buf, size_t len)
{
	(void)opaque;
	if (gva < STK_LO || gva + len > STK_HI)
		return -1;
	memcpy(buf, stk + (gva - STK_LO), len);
	return 0;
}

static bool fake_frame_ok(void *opaque, uint64_t rip)
{
	(void)opaque;
	(void)rip;
	return frame_ok_answer;
}

static struct symtab *fake_syms(void)
{
	static const struct sym syms[] = {
		{ FN_TASK, 0x100, 'T', "task_main" },
		{ FN_MID, 0x100, 'T', "mid" },
		{ FN_LEAF, 0x100, 'T', "leaf" },
		{ FN_LEAF + 0x1000, 0x40, 'D', "some_data" },
	};

	return symtab_from_array(syms, sizeof(syms) / sizeof(syms[0]));
}

static void put(uint64_t at, uint64_t v)
{
	memcpy(stk + (at - STK_LO), &v, 8);
}

/*
 * task_main's frame at the top (saved rbp 0, return slot 0), mid's frame
 * below it returning into task_main, leaf's below that returning into mid;
 * the task was preempted in leaf with rbp = leaf's frame.
 */
static uint64_t plant_chain(void)
{
	uint64_t top = STK_HI - 16, midf = top - 0x40, leaff = midf - 0x40;

	memset(stk, 0, sizeof(stk));
	put(top, 0);
	put(top + 8, 0);
	put(midf, top);
	put(midf + 8, FN_TASK + 0x20);
	put(leaff, midf);
	put(leaff + 8, FN_MID + 0x30);
	frame_ok_answer = true;
	return leaff;
}

static int walk(struct symtab *st, uint64_t rip, uint64_t rbp, struct klp_walk *w)
{
	struct klp_walk_ops ops = { fake_read, fake_frame_ok, NULL, st };

	return klp_stack_walk(&ops, rip, rbp - 0x10, rbp, STK_LO, STK_HI, w);
}

static void test_walk_reliable(void)
{
	struct symtab *st = fake_syms();
	uint64_t rbp = plant_chain();
	struct klp_walk w;

	EXPECT_EQ(walk(st, FN_LEAF + 0x10, rbp, &w), 0);
	EXPECT_EQ(w.n, 3u);
	EXPECT_EQ_U64(FN_LEAF + 0x10, w.f[0].addr);
	EXPECT_EQ_U64(FN_LEAF, w.f[0].func);
	EXPECT_EQ_U64(FN_MID + 0x30, w.f[1].addr);
	EXPECT_EQ_U64(FN_MID, w.f[1].func);
	EXPECT_EQ_U64(FN_TASK, w.f[2].func);
	/* a return address at a function's very end belongs to it (ret - 1) */
	put(rbp + 8, FN_MID + 0x100);
	EXPECT_EQ(walk(st, FN_LEAF + 0x10, rbp, &w), 0);
	EXPECT_EQ_U64(FN_MID, w.f[1].func);
	symtab_free(st);
}

static void expect_unreliable(struct symtab *st, uint64_t rip, uint64_t rbp, const char *why)
{
	struct klp_walk w;

	EXPECT_EQ(walk(st, rip, rbp, &w), -1);
	EXPECT_STR_HAS(w.why, why);
}

static void test_walk_unreliable(void)
{
	struct symtab *st = fake_syms();
	uint64_t rbp = plant_chain(), midf = rbp + 0x40;

	/* the RIP itself */
	expect_unreliable(st, 0x300000, rbp, "in no function");
	expect_unreliable(st, FN_LEAF + 0x1008, rbp, "in no function");	/* data */
	frame_ok_answer = false;
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "outside its frame");
	frame_ok_answer = true;
	/* bad pointers */
	expect_unreliable(st, FN_LEAF + 0x10, rbp + 4, "misaligned");
	expect_unreliable(st, FN_LEAF + 0x10, STK_LO - 0x100, "off the stack");
	expect_unreliable(st, FN_LEAF + 0x10, STK_HI - 8, "off the stack");
	put(rbp, 0xdead0000);					/* saved rbp out of bounds */
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "off the stack");
	/* loops: a frame pointing at itself, or back down */
	put(rbp, rbp);
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "does not go up");
	plant_chain();
	put(midf, rbp);
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "does not go up");
	/* unsymbolizable return addresses */
	plant_chain();
	put(rbp + 8, 0x300000);
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "in no function");
	put(rbp + 8, 0);
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "in no function");
	put(rbp + 8, FN_LEAF + 0x1010);				/* into data */
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "in no function");
	/* the chain ends, but not at the task's first frame */
	plant_chain();
	put(midf, 0);
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "not at the stack's first frame");
	plant_chain();
	put(STK_HI - 8, FN_TASK);				/* first frame returns somewhere */
	expect_unreliable(st, FN_LEAF + 0x10, rbp, "not at the stack's first frame");
	/* deeper than the bound: a long, well-formed chain of mid frames */
	memset(stk, 0, sizeof(stk));
	for (unsigned int i = 0; i < KLP_MAX_FRAMES + 4; i++) {
		uint64_t f = STK_LO + 0x100 + 16 * i;

		put(f, f + 16);
		put(f + 8, FN_MID + 8);
	}
	expect_unreliable(st, FN_LEAF + 0x10, STK_LO + 0x100, "deeper than");
	symtab_free(st);
}

/* push %rbp; (other work); mov %rsp,%rbp; body; pop %rbp; ret */
static void test_frame_ok(void)
{
	static const uint8_t fn[] = {
		0x0f, 0x1f, 0x44, 0x00, 0x00,	/* 0: nopl (fentry) */
		0x55,				/* 5: push %rbp */
		0x48, 0x89, 0xf8,		/* 6: mov %rdi,%rax */
		0x48, 0x89, 0xe5,		/* 9: mov %rsp,%rbp */
		0x48, 0x83, 0xc0, 0x07,		/* c: add $7,%rax */
		0x75, 0x03,			/* 10: jne 15 */
		0x5d,				/* 12: pop %rbp */
		0x90,				/* 13: nop (still epilogue) */
		0xc3,				/* 14: ret */
		0x48, 0xff, 0xc0,		/* 15: inc %rax (framed again) */
		0xc9,				/* 18: leave */
		0xc3,				/* 19: ret */
	};
	static const uint8_t noframe[] = { 0x48, 0x89, 0xf8, 0xc3 };
	static const uint8_t tail[] = {
		0x55, 0x48, 0x89, 0xe5,		/* 0: push %rbp; mov %rsp,%rbp */
		0x48, 0x85, 0xff,		/* 4: test %rdi,%rdi */
		0x74, 0x03,			/* 7: je c */
		0x5d,				/* 9: pop %rbp */
		0xeb, 0x05,			/* a: jmp 11 */
		0x48, 0xff, 0xc7,		/* c: inc %rdi */
		0xc9,				/* f: leave */
		0xc3,				/* 10: ret */
		0x48, 0x89, 0xf8,		/* 11: mov %rdi,%rax (after the pop) */
		0xc3,				/* 14: ret */
		0x90, 0xc3,			/* 15: nop; ret (unreached) */
	};
	static const uint8_t mixed[] = {
		0x55, 0x48, 0x89, 0xe5,		/* 0: push %rbp; mov %rsp,%rbp */
		0x74, 0x01,			/* 4: je 7 */
		0x5d,				/* 6: pop %rbp */
		0x48, 0x89, 0xf8,		/* 7: mov %rdi,%rax: framed and not */
		0x90,				/* a: nop */
		0xc3,				/* b: ret */
	};
	/* gcc schedules work before the push: fine, unless it moves %rsp */
	static const uint8_t early[] = { 0x48, 0x89, 0xf8, 0x55, 0x48, 0x89, 0xe5, 0x90, 0xc3 };
	static const uint8_t subfirst[] = { 0x48, 0x83, 0xec, 0x08, 0x55, 0x48, 0x89, 0xe5,
					    0x90, 0xc3 };
	static const uint8_t jumps_first[] = { 0x55, 0x74, 0x00, 0x48, 0x89, 0xe5, 0xc3 };
	const uint64_t b = 0x1000;
	static const struct { unsigned int off; bool ok; } want[] = {
		{ 0x0, false }, { 0x5, false }, { 0x6, false }, { 0x9, false }, { 0xc, true },
		{ 0x10, true }, { 0x12, true }, { 0x13, false }, { 0x14, false },
		{ 0x15, true }, { 0x18, true }, { 0x19, false },
		{ 0x7, false },			/* not an instruction boundary */
	};

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		EXPECT_TRUE_MSG(klp_frame_ok(fn, sizeof(fn), b, b + want[i].off) == want[i].ok,
				"offset 0x%x: want %d", want[i].off, want[i].ok);
	/* the entry rewritten to a JMP (livepatch) reads the same */
	{
		uint8_t j[sizeof(fn)];

		memcpy(j, fn, sizeof(fn));
		j[0] = 0xe9;
		EXPECT_TRUE(klp_frame_ok(j, sizeof(j), b, b + 0xc));
	}
	EXPECT_FALSE(klp_frame_ok(noframe, sizeof(noframe), b, b + 3));
	/*
	 * A block after a RET that is reached only from an epilogue (pop %rbp;
	 * jmp): linear order would call it framed; the branches say otherwise.
	 */
	EXPECT_TRUE(klp_frame_ok(tail, sizeof(tail), b, b + 0xc));
	EXPECT_TRUE(klp_frame_ok(tail, sizeof(tail), b, b + 0xf));
	EXPECT_FALSE(klp_frame_ok(tail, sizeof(tail), b, b + 0x10));
	EXPECT_FALSE(klp_frame_ok(tail, sizeof(tail), b, b + 0x11));
	EXPECT_FALSE(klp_frame_ok(tail, sizeof(tail), b, b + 0x15));	/* reached by nothing */
	/* one block reached framed and unframed: never trusted */
	EXPECT_FALSE(klp_frame_ok(mixed, sizeof(mixed), b, b + 0xa));
	EXPECT_TRUE(klp_frame_ok(early, sizeof(early), b, b + 7));
	EXPECT_FALSE(klp_frame_ok(early, sizeof(early), b, b + 3));
	EXPECT_FALSE(klp_frame_ok(subfirst, sizeof(subfirst), b, b + 8));
	EXPECT_FALSE(klp_frame_ok(jumps_first, sizeof(jumps_first), b, b + 6));
	EXPECT_FALSE(klp_frame_ok(fn, sizeof(fn), b, b + sizeof(fn)));	/* outside */
}

static void test_stub_encode(void)
{
	const uint64_t at = 0x11c040, ps0 = 0x5cc2f4, old = 0x10ab95, new = 0x10abd0;
	static const char *const want[] = { "movsxd", "imul", "test", "jne", "jmp", "int3" };
	uint8_t code[KLP_STUB_SIZE];
	cs_insn *insn;
	size_t n;
	csh h;

	EXPECT_EQ_FATAL(klp_stub_encode(code, at, ps0, old, new), 0);
	EXPECT_EQ_FATAL(cs_open(CS_ARCH_X86, CS_MODE_64, &h), CS_ERR_OK);
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	n = cs_disasm(h, code, sizeof(code), at, 6, &insn);
	EXPECT_EQ_FATAL(n, 6u);
	for (size_t i = 0; i < 6; i++)
		EXPECT_STREQ(insn[i].mnemonic, want[i]);
	EXPECT_STR_HAS(insn[0].op_str, "gs:[0xc]");
	EXPECT_STR_HAS(insn[0].op_str, "r11");
	EXPECT_EQ_U64(sizeof(struct vmpoke_task), insn[1].detail->x86.operands[2].imm);
	EXPECT_EQ_U64(ps0, insn[2].detail->x86.operands[0].mem.disp);
	EXPECT_EQ_U64(VMPOKE_PATCH_PATCHED, insn[2].detail->x86.operands[1].imm);
	EXPECT_EQ_U64(new, insn[3].detail->x86.operands[0].imm);
	EXPECT_EQ_U64(old, insn[4].detail->x86.operands[0].imm);
	cs_free(insn, n);
	cs_close(&h);
	/* out of reach: refused, not truncated */
	EXPECT_EQ(klp_stub_encode(code, at, 1ull << 32, old, new), -1);
	EXPECT_EQ(klp_stub_encode(code, at, ps0, old, at + (1ull << 33)), -1);
}

TEST_SUITE(livepatch, "livepatch", false,
	   TEST(test_walk_reliable), TEST(test_walk_unreliable), TEST(test_frame_ok),
	   TEST(test_stub_encode))
