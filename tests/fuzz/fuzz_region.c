// SPDX-License-Identifier: MIT
/*
 * fuzz_region.c - the optimized-probe half of fuzz_decode: the fuzzed code
 * as a whole function, a displaced region at one of its instruction
 * boundaries through relocate_region(), moved to `to`.
 *
 * A refusal must name a reason.  An accepted block is checked with
 * Capstone, instruction by instruction against the original, for what the
 * detour promises: every original instruction has one relocated copy in
 * order; a copy does what the original did at its new address (same bytes
 * where position-independent, the same absolute RIP-relative address, the
 * same branch condition to the same target, a target inside the region
 * going to its copy); LOOP/JrCXZ reach their target through the island; a
 * last CALL pushes the original next address and jumps to the callee; and
 * anything else ends in a JMP back to addr + len.
 */
#include <string.h>
#include <capstone/capstone.h>

#include "fuzz.h"
#include "../../patcher/relocate.h"

#define T	"fuzz_decode"
#define REGION_MIN	5	/* a JMP rel32 */

static bool region_is(const cs_insn *i, unsigned int g)
{
	return cs_insn_group(fuzz_cs_handle(), i, g);
}

static uint64_t region_imm(const cs_insn *i)
{
	return (uint64_t)i->detail->x86.operands[0].imm;
}

static bool region_riprel(const cs_insn *i, uint64_t *abs)
{
	const cs_x86 *x = &i->detail->x86;

	for (unsigned int k = 0; k < x->op_count; k++)
		if (x->operands[k].type == X86_OP_MEM && x->operands[k].mem.base == X86_REG_RIP) {
			*abs = i->address + i->size + (uint64_t)x->operands[k].mem.disp;
			return true;
		}
	return false;
}

static bool region_is_loop(unsigned int id)
{
	return id == X86_INS_LOOP || id == X86_INS_LOOPE || id == X86_INS_LOOPNE ||
	       id == X86_INS_JRCXZ || id == X86_INS_JECXZ || id == X86_INS_JCXZ;
}

/* The copy of the original instruction at `at`, or 0 outside the region. */
static uint64_t region_copy_of(const uint64_t *orig, const uint64_t *copy,
			       unsigned int n, uint64_t at)
{
	for (unsigned int k = 0; k < n; k++)
		if (orig[k] == at)
			return copy[k];
	return 0;
}

/* Where a branch of the original must go in the block. */
static uint64_t region_want(uint64_t target, uint64_t addr, size_t len,
			    const uint64_t *orig, const uint64_t *copy, unsigned int n)
{
	if (target > addr && target < addr + len)
		return region_copy_of(orig, copy, n, target);
	return target;
}

static void region_check(const uint8_t *fn, size_t fnlen, uint64_t fnaddr, uint64_t addr,
			 uint64_t to, const uint8_t *out, const struct relocate_region *r)
{
	uint64_t orig[RELOCATE_REGION_MAX_INSNS], copy[RELOCATE_REGION_MAX_INSNS];
	cs_insn *a[RELOCATE_REGION_MAX_INSNS] = { 0 };
	uint64_t at = addr, pc = to, abs_a, abs_b;
	unsigned int n = r->ninsn, k;

	FUZZ_CHECK(T, n >= 1 && n <= RELOCATE_REGION_MAX_INSNS && r->len >= REGION_MIN &&
		   addr - fnaddr + r->len <= fnlen && r->outlen <= RELOCATE_REGION_MAX_OUT,
		   "region of %u instructions, %zu bytes, %zu out", n, r->len, r->outlen);
	/* Pass 1: the originals, and where each copy starts. */
	for (k = 0; k < n; k++) {
		a[k] = fuzz_cs_decode(fn + (at - fnaddr), fnaddr + fnlen - at, at);
		FUZZ_CHECK(T, a[k], "an accepted region has undecodable bytes at 0x%llx",
			   (unsigned long long)at);
		orig[k] = at;
		copy[k] = pc;
		at += a[k]->size;
		if (region_is_loop(a[k]->id))
			pc += a[k]->size + 2 + 5;	/* op +2; jmp +5; jmp rel32 */
		else if (a[k]->id == X86_INS_CALL)
			pc += 6 + 5;			/* push [rip+lit]; jmp rel32 */
		else if (a[k]->id == X86_INS_JMP && region_is(a[k], X86_GRP_BRANCH_RELATIVE))
			pc += 5;
		else if (region_is(a[k], X86_GRP_BRANCH_RELATIVE))
			pc += 6;			/* 0F 8x rel32 */
		else {
			cs_insn *b = fuzz_cs_decode(out + (pc - to), r->outlen - (pc - to), pc);

			FUZZ_CHECK(T, b, "no copy of \"%s %s\" at +0x%llx", a[k]->mnemonic,
				   a[k]->op_str, (unsigned long long)(pc - to));
			pc += b->size;
			cs_free(b, 1);
		}
	}
	FUZZ_CHECK(T, at == addr + r->len, "%u instructions cover %llu bytes, not %zu", n,
		   (unsigned long long)(at - addr), r->len);
	/* Pass 2: each copy against its original. */
	for (k = 0; k < n; k++) {
		size_t off = copy[k] - to;
		cs_insn *b = fuzz_cs_decode(out + off, r->outlen - off, copy[k]);
		bool rel = region_is(a[k], X86_GRP_BRANCH_RELATIVE);

		FUZZ_CHECK(T, b, "the copy of \"%s %s\" does not decode", a[k]->mnemonic,
			   a[k]->op_str);
		if (a[k]->id == X86_INS_CALL) {
			cs_insn *j = fuzz_cs_decode(out + off + 6, r->outlen - off - 6, copy[k] + 6);
			uint64_t lit = 0;

			FUZZ_CHECK(T, k == n - 1 && r->ends_in_call && b->id == X86_INS_PUSH &&
				   region_riprel(b, &abs_b) &&
				   abs_b - to <= r->outlen - 8 && j && j->id == X86_INS_JMP &&
				   region_imm(j) == region_want(region_imm(a[k]), addr, r->len,
								orig, copy, n),
				   "CALL at 0x%llx relocated wrongly", (unsigned long long)orig[k]);
			/* modulo 2^64, as the CPU adds: a fuzzed block may wrap */
			memcpy(&lit, out + (abs_b - to), 8);
			FUZZ_CHECK(T, lit == addr + r->len, "the CALL returns to 0x%llx, not 0x%llx",
				   (unsigned long long)lit, (unsigned long long)(addr + r->len));
			cs_free(j, 1);
		} else if (region_is_loop(a[k]->id)) {
			cs_insn *j = fuzz_cs_decode(out + off + b->size + 2, 5,
						   copy[k] + b->size + 2);

			FUZZ_CHECK(T, b->id == a[k]->id && region_imm(b) == copy[k] + b->size + 2 &&
				   out[off + b->size] == 0xeb && out[off + b->size + 1] == 5 &&
				   j && region_imm(j) == region_want(region_imm(a[k]), addr, r->len,
								      orig, copy, n),
				   "\"%s %s\" at 0x%llx: a wrong island", a[k]->mnemonic,
				   a[k]->op_str, (unsigned long long)orig[k]);
			cs_free(j, 1);
		} else if (rel) {
			FUZZ_CHECK(T, b->id == a[k]->id &&
				   region_imm(b) == region_want(region_imm(a[k]), addr, r->len,
								orig, copy, n),
				   "\"%s %s\" at 0x%llx became \"%s %s\" at 0x%llx", a[k]->mnemonic,
				   a[k]->op_str, (unsigned long long)orig[k], b->mnemonic,
				   b->op_str, (unsigned long long)copy[k]);
		} else if (a[k]->id == X86_INS_NOP) {
			/*
			 * A NOP never touches its memory operand, so the
			 * relocator copies it whole, [rip + disp] included
			 * (relocate_region.c, RR_COPY): a fuzzed "nopl
			 * [rip+disp]" keeps its bytes, not its address.
			 */
			FUZZ_CHECK(T, b->size == a[k]->size && !memcmp(b->bytes, a[k]->bytes, b->size),
				   "NOP \"%s\" changed", a[k]->op_str);
		} else if (region_riprel(a[k], &abs_a)) {
			FUZZ_CHECK(T, b->id == a[k]->id && region_riprel(b, &abs_b) && abs_a == abs_b,
				   "\"%s %s\" relocated to \"%s %s\": another address",
				   a[k]->mnemonic, a[k]->op_str, b->mnemonic, b->op_str);
		} else {
			FUZZ_CHECK(T, b->size == a[k]->size && !memcmp(b->bytes, a[k]->bytes, b->size),
				   "position-independent \"%s %s\" changed", a[k]->mnemonic,
				   a[k]->op_str);
		}
		cs_free(b, 1);
	}
	if (!r->ends_in_call) {
		cs_insn *j = fuzz_cs_decode(out + (pc - to), r->outlen - (pc - to), pc);

		FUZZ_CHECK(T, j && j->id == X86_INS_JMP && region_imm(j) == addr + r->len,
			   "the block does not end in a JMP back to 0x%llx",
			   (unsigned long long)(addr + r->len));
		cs_free(j, 1);
	}
	for (k = 0; k < n; k++)
		cs_free(a[k], 1);
}

void fuzz_decode_region(const uint8_t *code, size_t size, uint64_t addr, uint64_t to,
			unsigned int sel)
{
	uint8_t out[RELOCATE_REGION_MAX_OUT];
	struct relocate_region r;
	struct relocate_range live;
	const char *reason = NULL;
	char detail[256];
	uint64_t at = addr;
	unsigned int skip = sel & 7, k;

	/* Start at the sel-th instruction boundary, so most regions can be placed. */
	for (k = 0; k < skip && at < addr + size; k++) {
		cs_insn *i = fuzz_cs_decode(code + (at - addr), addr + size - at, at);

		if (!i)
			break;
		at += i->size;
		cs_free(i, 1);
	}
	/* Sometimes a live site somewhere near the region. */
	live.lo = at + ((sel >> 3) & 15) - 4;
	live.hi = live.lo + 1 + ((sel >> 7) & 7);
	memset(&r, 0, sizeof(r));
	if (relocate_region(code, size, addr, at, REGION_MIN, to, &live, sel & 0x400 ? 1 : 0,
			    out, sizeof(out), &r, &reason, detail, sizeof(detail))) {
		FUZZ_CHECK(T, reason && reason[0], "region refused without a reason");
		return;
	}
	region_check(code, size, addr, at, to, out, &r);
}
