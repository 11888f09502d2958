// SPDX-License-Identifier: MIT
/*
 * test_relocate_region.c - the displaced-region relocator on byte buffers,
 * a table of instruction forms with the bytes expected or the refusal
 * named, in the style of Frida's relocator tests.  Each case is a
 * function of FN_SIZE bytes at FN: its first bytes given, NOPs after,
 * RET last, plus optional bytes placed at an offset (a jump from elsewhere
 * in the function).  The expected bytes were worked out by hand (rel32 =
 * target - end of the new instruction) and checked with a script.
 */
#include <string.h>

#include "testlib.h"
#include "../patcher/patcher_internal.h"
#include "../patcher/relocate.h"

#define FN	0x100000ull
#define TO	0x200000ull
#define FN_SIZE	0x40

struct rr_case {
	const char *name;
	uint8_t head[16];
	size_t nhead;
	uint8_t extra[4];		/* placed at extra_at, if nextra */
	size_t nextra, extra_at;
	size_t head_at;			/* head[] goes at FN + head_at */
	size_t addr_off;		/* the region starts at FN + addr_off */
	uint64_t to;
	struct relocate_range live;	/* used if hi */
	const char *reason;		/* NULL: relocated to expect[] */
	uint8_t expect[32];
	size_t nexpect;
	size_t len;			/* displaced bytes */
	uint64_t bad_off;		/* jump_into_range */
};

#define B(...)	{ __VA_ARGS__ }, sizeof((uint8_t[]){ __VA_ARGS__ })

static const struct rr_case cases[] = {
	{ .name = "copy: mov %rdx,%rax; mov %rax,%rcx", .head = B(0x48, 0x89, 0xd0, 0x48, 0x89, 0xc1),
	  .expect = B(0x48, 0x89, 0xd0, 0x48, 0x89, 0xc1, 0xe9, 0xfb, 0xff, 0xef, 0xff), .len = 6 },
	{ .name = "rip-relative mov 0x10(%rip),%rax", .head = B(0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00),
	  .expect = B(0x48, 0x8b, 0x05, 0x10, 0x00, 0xf0, 0xff, 0xe9, 0xfb, 0xff, 0xef, 0xff), .len = 7 },
	{ .name = "je rel8 -> 0f 84 rel32", .head = B(0x74, 0x10, 0x48, 0x89, 0xc1),
	  .expect = B(0x0f, 0x84, 0x0c, 0x00, 0xf0, 0xff, 0x48, 0x89, 0xc1, 0xe9, 0xf7, 0xff,
		      0xef, 0xff), .len = 5 },
	{ .name = "jne rel32 re-aimed", .head = B(0x0f, 0x85, 0x20, 0x00, 0x00, 0x00),
	  .expect = B(0x0f, 0x85, 0x20, 0x00, 0xf0, 0xff, 0xe9, 0xfb, 0xff, 0xef, 0xff), .len = 6 },
	{ .name = "jmp rel8 -> e9 rel32", .head = B(0xeb, 0x10, 0x90, 0x90, 0x90),
	  .expect = B(0xe9, 0x0d, 0x00, 0xf0, 0xff, 0x90, 0x90, 0x90, 0xe9, 0xf8, 0xff, 0xef,
		      0xff), .len = 5 },
	{ .name = "je to +3, inside the region: to the relocated copy",
	  .head = B(0x74, 0x01, 0x90, 0x48, 0x89, 0xc1),
	  .expect = B(0x0f, 0x84, 0x01, 0x00, 0x00, 0x00, 0x90, 0x48, 0x89, 0xc1, 0xe9, 0xf7,
		      0xff, 0xef, 0xff), .len = 6 },
	{ .name = "jrcxz: island", .head = B(0xe3, 0x10, 0x48, 0x89, 0xc1),
	  .expect = B(0xe3, 0x02, 0xeb, 0x05, 0xe9, 0x09, 0x00, 0xf0, 0xff, 0x48, 0x89, 0xc1,
		      0xe9, 0xf4, 0xff, 0xef, 0xff), .len = 5 },
	{ .name = "call rel32 last: push literal; jmp",
	  .head = B(0x90, 0xe8, 0x1a, 0x00, 0x00, 0x00),
	  .expect = B(0x90, 0xff, 0x35, 0x09, 0x00, 0x00, 0x00, 0xe9, 0x14, 0x00, 0xf0, 0xff,
		      0xcc, 0xcc, 0xcc, 0xcc, 0x06, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00),
	  .len = 6 },
	/* fuzz_decode: a REX before F2 is ignored; this is a JMP rel8 to +0x14, re-aimed */
	{ .name = "rex f2 jmp rel8 -> e9 rel32", .head = B(0x42, 0xf2, 0xeb, 0x10, 0x90),
	  .expect = B(0xe9, 0x0f, 0x00, 0xf0, 0xff, 0x90, 0xe9, 0xfa, 0xff, 0xef, 0xff), .len = 5 },
	/* refusals */
	{ .name = "jump from +8 into +3", .head = B(0x48, 0x89, 0xd0, 0x48, 0x89, 0xc1),
	  .extra = { 0xeb, 0xf9 }, .nextra = 2, .extra_at = 8,
	  .reason = "jump_into_range", .bad_off = 3 },
	{ .name = "jump table in the function", .head = B(0x48, 0x89, 0xd0, 0x48, 0x89, 0xc1),
	  .extra = { 0xff, 0xe0 }, .nextra = 2, .extra_at = 8, .reason = "indirect_jump" },
	{ .name = "indirect call in the region", .head = B(0xff, 0xd0, 0x48, 0x89, 0xc1),
	  .reason = "call_in_region" },
	{ .name = "region past the function's end", .head = B(0x48, 0x89, 0xc1),
	  .head_at = FN_SIZE - 4, .addr_off = FN_SIZE - 4, .reason = "leaves_function" },
	{ .name = "overlaps a live site", .head = B(0x48, 0x89, 0xd0, 0x48, 0x89, 0xc1),
	  .live = { FN + 3, FN + 4 }, .reason = "live_site" },
	/* fuzz_decode: a 66-prefixed call *%rbx slipped past call_in_region into the detour */
	{ .name = "66 call *%bx last in the region", .head = B(0x66, 0x66, 0x66, 0xc3, 0x66, 0x66,
							       0xff, 0xd3),
	  .reason = "unsupported" },
	/* fuzz_decode: Capstone reads this JMP rel32 as rel16; the CPU does not */
	{ .name = "67 48 jmp rel32 in the region", .head = B(0x90, 0x67, 0x48, 0xe9, 0x00, 0x00,
							     0x00, 0x00),
	  .reason = "unsupported" },
	{ .name = "syscall", .head = B(0x0f, 0x05, 0x48, 0x89, 0xc1), .reason = "syscall" },
	{ .name = "not a boundary", .head = B(0x48, 0x89, 0xd0, 0x48, 0x89, 0xc1),
	  .addr_off = 1, .reason = "not_boundary" },
	{ .name = "rip-relative out of reach", .head = B(0x48, 0x8b, 0x05, 0x10, 0x00, 0x00, 0x00),
	  .to = FN + 0x100000000ull, .reason = "rip_rel_unreachable" },
};

static void test_relocate_region_table(void)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		const struct rr_case *k = &cases[c];
		uint8_t fn[FN_SIZE], out[RELOCATE_REGION_MAX_OUT];
		struct relocate_region r;
		const char *why = NULL;
		char detail[256] = "";
		uint64_t to = k->to ? k->to : TO;
		int ret;

		memset(fn, 0x90, sizeof(fn));
		fn[FN_SIZE - 1] = 0xc3;
		memcpy(fn + k->head_at, k->head, k->nhead);
		if (k->nextra)
			memcpy(fn + k->extra_at, k->extra, k->nextra);
		ret = relocate_region(fn, sizeof(fn), FN, FN + k->addr_off, 5, to,
				      &k->live, k->live.hi ? 1 : 0, out, sizeof(out), &r,
				      &why, detail, sizeof(detail));
		if (k->reason) {
			EXPECT_TRUE_MSG(ret == -1 && why && !strcmp(why, k->reason),
					"%s: expected refusal %s, got %d %s (%s)", k->name,
					k->reason, ret, why ? why : "(none)", detail);
			EXPECT_TRUE_MSG(detail[0] != '\0', "%s: refusal without detail", k->name);
			if (k->bad_off)
				EXPECT_EQ_U64(k->bad_off, r.bad_off);
			continue;
		}
		EXPECT_TRUE_MSG(ret == 0, "%s: refused %s (%s)", k->name, why ? why : "?",
				detail);
		if (ret)
			continue;
		EXPECT_EQ_U64(k->len, r.len);
		EXPECT_EQ_U64(k->nexpect, r.outlen);
		EXPECT_TRUE_MSG(r.outlen == k->nexpect && !memcmp(out, k->expect, k->nexpect),
				"%s: relocated bytes differ", k->name);
	}
}

/* The relocator is pure: the same input gives the same bytes, twice. */
static void test_relocate_region_pure(void)
{
	uint8_t fn[FN_SIZE], a[RELOCATE_REGION_MAX_OUT], b[RELOCATE_REGION_MAX_OUT];
	struct relocate_region ra, rb;
	const char *why;

	memset(fn, 0x90, sizeof(fn));
	memcpy(fn, cases[5].head, cases[5].nhead);
	EXPECT_EQ(relocate_region(fn, sizeof(fn), FN, FN, 5, TO, NULL, 0, a, sizeof(a), &ra,
				  &why, NULL, 0), 0);
	EXPECT_EQ(relocate_region(fn, sizeof(fn), FN, FN, 5, TO, NULL, 0, b, sizeof(b), &rb,
				  &why, NULL, 0), 0);
	EXPECT_EQ_U64(ra.outlen, rb.outlen);
	EXPECT_TRUE(!memcmp(a, b, ra.outlen));
	/* too small an output buffer is a refusal, not an overflow */
	EXPECT_EQ(relocate_region(fn, sizeof(fn), FN, FN, 5, TO, NULL, 0, a, 8, &ra,
				  &why, NULL, 0), -1);
	EXPECT_TRUE(why && !strcmp(why, "too_long"));
}

/*
 * A function's .cold part (gcc's unlikely blocks) jumping back into the
 * JMP's 5 bytes: optprobe.c asks decode_jump_into() over that text too.
 * Inside the region's own bytes a jump is skipped (it is relocated).
 */
static void test_relocate_region_cold_part(void)
{
	/* at COLD: xor %eax,%eax; jmp FN+3 (rel32); ret */
	static const uint8_t cold[] = { 0x31, 0xc0, 0xe9, 0x00, 0x00, 0x00, 0x00, 0xc3 };
	const uint64_t at = FN + 0x1000;
	uint8_t b[sizeof(cold)];
	uint64_t to = 0;
	int32_t rel = (int32_t)(int64_t)(FN + 3 - (at + 7));

	memcpy(b, cold, sizeof(b));
	memcpy(b + 3, &rel, 4);
	EXPECT_EQ_U64(at + 2, decode_jump_into(b, sizeof(b), at, FN, FN + 5, 0, 0, &to));
	EXPECT_EQ_U64(FN + 3, to);
	/* the same jump, skipped as if it were inside the region */
	EXPECT_EQ_U64(0, decode_jump_into(b, sizeof(b), at, FN, FN + 5, at, at + 8, &to));
	/* landing on addr itself, or at addr + 5, is fine */
	rel = (int32_t)(int64_t)(FN + 5 - (at + 7));
	memcpy(b + 3, &rel, 4);
	EXPECT_EQ_U64(0, decode_jump_into(b, sizeof(b), at, FN, FN + 5, 0, 0, &to));
}

TEST_SUITE(relocate_region, "relocate_region", false,
	   TEST(test_relocate_region_table), TEST(test_relocate_region_pure),
	   TEST(test_relocate_region_cold_part))
