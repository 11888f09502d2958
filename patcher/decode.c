// SPDX-License-Identifier: MIT
/*
 * decode.c - Capstone decoding for patch-site validation.
 *
 * Two questions, both answered on plain byte buffers so they are unit
 * tested without a VM:
 *
 *  1. Is [addr, addr + len) a whole number of instructions of its function,
 *     and may it be patched?  Like kprobes' can_probe()/can_optimize() we
 *     decode from the function start, because decoding backwards from an
 *     address on x86 proves nothing.
 *  2. What does the trap hook emulate while the site is live?  Decided once,
 *     here, from the queued bytes (alternative.c's text_poke_loc_init()),
 *     never from guest memory at trap time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <capstone/capstone.h>

#include "patcher_internal.h"
#include "relocate.h"

static int decode_open(csh *h, bool detail)
{
	if (cs_open(CS_ARCH_X86, CS_MODE_64, h) != CS_ERR_OK)
		return -ENOMEM;
	if (detail)
		cs_option(*h, CS_OPT_DETAIL, CS_OPT_ON);
	return 0;
}

enum decode_branch {
	DECODE_NOT_DIRECT,	/* no direct branch: falls through, or indirect */
	DECODE_DIRECT,		/* a direct branch, *target known */
	DECODE_UNTRUSTED,	/* a direct branch whose target we cannot trust */
};

/* The direct target of a relative JMP/Jcc/LOOP/JCXZ/CALL, if insn is one. */
static enum decode_branch decode_direct_target(csh h, const cs_insn *insn,
					       uint64_t *target)
{
	const cs_x86 *x86 = &insn->detail->x86;
	uint64_t cpu;

	if (!cs_insn_group(h, insn, CS_GRP_JUMP) &&
	    !cs_insn_group(h, insn, CS_GRP_CALL))
		return DECODE_NOT_DIRECT;
	if (x86->op_count != 1 || x86->operands[0].type != X86_OP_IMM)
		return DECODE_NOT_DIRECT;
	*target = (uint64_t)x86->operands[0].imm;
	/*
	 * Trust Capstone's target only where the bytes give the CPU the same
	 * (relocate_branch_target()).  Not for a 66-prefixed branch (rel16
	 * on AMD, rel32 on Intel), nor for `67 48 e9 rel32`, which Capstone
	 * 4 reads as rel16 where the CPU ignores both prefixes (fuzz_decode).
	 */
	if (relocate_branch_target(insn->bytes, insn->size, insn->address, &cpu) ||
	    cpu != *target)
		return DECODE_UNTRUSTED;
	return DECODE_DIRECT;
}

/* Control never falls through: what follows is padding until a label. */
static bool decode_ends_flow(const cs_insn *insn)
{
	return insn->id == X86_INS_JMP || insn->id == X86_INS_RET;
}

int decode_scan_function(const uint8_t *code, size_t size, uint64_t base,
			 uint64_t addr, size_t len, struct decode_scan *out)
{
	const uint8_t *p = code;
	uint64_t pc = base, end = addr + len, target;
	enum decode_branch kind;
	size_t left = size;
	bool padding = false;
	cs_insn *insn;
	csh h;

	memset(out, 0, sizeof(*out));
	if (decode_open(&h, true))
		return -ENOMEM;
	insn = cs_malloc(h);
	if (!insn) {
		cs_close(&h);
		return -ENOMEM;
	}
	while (left) {
		uint64_t at = pc;

		if (!cs_disasm_iter(h, &p, &left, &pc, insn)) {
			out->stop_at = at;
			out->end_boundary |= at == end;
			goto done;
		}
		if (at == addr)
			out->at_boundary = true;
		if (at == end)
			out->end_boundary = true;
		if (at >= addr && at < end) {
			bool int3 = insn->bytes[0] == POKE_INT3;

			/*
			 * INT3 after a JMP/RET is padding nobody executes (our
			 * own padded JMPs, SLS/rethunk padding): not foreign and
			 * not an instruction anyone can be stopped in.
			 */
			if (!(int3 && padding)) {
				out->insns++;
				if (int3 && !out->int3_at)
					out->int3_at = at;
			}
			padding = int3 ? padding : decode_ends_flow(insn);
			/* Its return address would sit inside the shadow. */
			if (insn->id == X86_INS_CALL && pc < end && !out->call_at)
				out->call_at = at;
		}
		/*
		 * optprobes' can_optimize(): an indirect JMP (a jump table,
		 * a computed goto) may target any byte of the function, and
		 * its table cannot be read off the code.
		 */
		kind = decode_direct_target(h, insn, &target);
		if (kind == DECODE_NOT_DIRECT &&
		    (insn->id == X86_INS_JMP || insn->id == X86_INS_LJMP) && !out->indirect_at)
			out->indirect_at = at;
		/*
		 * Capstone and the CPU read this branch differently: its
		 * target, or even its length (`67 48 e8 rel32` is 5 bytes to
		 * Capstone 4, 7 to the CPU; a 66-prefixed one is rel16 on AMD,
		 * rel32 on Intel).  Nothing after it decodes as the CPU runs
		 * it, so the scan stops here, as at bytes that do not decode.
		 */
		if (kind == DECODE_UNTRUSTED) {
			out->untrusted_at = at;
			out->stop_at = pc;
			out->end_boundary |= pc == end;
			goto done;
		}
		/* kprobes insn_jump_into_range(): entries into the shadow. */
		if (kind == DECODE_DIRECT && target > addr && target < end &&
		    !out->jump_from) {
			out->jump_from = at;
			out->jump_to = target;
		}
	}
	out->complete = true;
	if (end == base + size)
		out->end_boundary = true;
done:
	cs_free(insn, 1);
	cs_close(&h);
	return 0;
}

/*
 * The first direct branch of the function, outside [skip_lo, skip_hi),
 * whose target lies in (lo, hi), or whose target Capstone and the CPU
 * read differently (*target is then Capstone's); 0 if none (or the
 * decoder cannot start).
 * For optimized probes: a branch inside the displaced region itself is
 * relocated with it (to the copy), only the others are a problem.
 */
uint64_t decode_jump_into(const uint8_t *code, size_t size, uint64_t base,
			  uint64_t lo, uint64_t hi, uint64_t skip_lo,
			  uint64_t skip_hi, uint64_t *target)
{
	const uint8_t *p = code;
	uint64_t pc = base, t, found = 0;
	enum decode_branch kind;
	size_t left = size;
	cs_insn *insn;
	csh h;

	if (decode_open(&h, true))
		return 0;
	insn = cs_malloc(h);
	while (insn && !found && left) {
		uint64_t at = pc;

		if (!cs_disasm_iter(h, &p, &left, &pc, insn))
			break;
		if (at >= skip_lo && at < skip_hi)
			continue;
		kind = decode_direct_target(h, insn, &t);
		/* An untrusted target counts as one into the range. */
		if (kind == DECODE_UNTRUSTED || (kind == DECODE_DIRECT && t > lo && t < hi)) {
			found = at;
			*target = t;
		}
	}
	if (insn)
		cs_free(insn, 1);
	cs_close(&h);
	return found;
}

static int32_t decode_rd32(const uint8_t *b)
{
	return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 |
			 (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);
}

/*
 * Classify by the exact encodings alternative.c accepts.  Capstone has
 * already proven the length; matching bytes (not mnemonics) rejects
 * prefixed or indirect variants such as "66 e9 rel16" or "ff e0".
 */
static enum poke_emu_kind decode_classify(const uint8_t *b, unsigned int size,
					  uint64_t addr, struct poke_emu *emu)
{
	static const uint8_t nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
	uint64_t next = addr + size;

	memset(emu, 0, sizeof(*emu));
	emu->len = (uint8_t)size;
	if (size == 1 && b[0] == 0xc3) {
		emu->kind = POKE_EMU_RET;
	} else if (size == 2 && b[0] == 0xeb) {
		emu->kind = POKE_EMU_JMP;
		emu->target = next + (int64_t)(int8_t)b[1];
	} else if (size == 2 && (b[0] & 0xf0) == 0x70) {
		emu->kind = POKE_EMU_JCC;
		emu->cond = b[0] & 0x0f;
		emu->target = next + (int64_t)(int8_t)b[1];
	} else if (size == 2 && b[0] == 0x66 && b[1] == 0x90) {
		emu->kind = POKE_EMU_JMP;	/* NOP2: jump to next */
		emu->target = next;
	} else if (size == 5 && (b[0] == 0xe9 || b[0] == 0xe8)) {
		emu->kind = b[0] == 0xe9 ? POKE_EMU_JMP : POKE_EMU_CALL;
		emu->target = next + (int64_t)decode_rd32(b + 1);
	} else if (size == 5 && !memcmp(b, nop5, 5)) {
		emu->kind = POKE_EMU_JMP;	/* NOP5: jump to next */
		emu->target = next;
	} else if (size == 6 && b[0] == 0x0f && (b[1] & 0xf0) == 0x80) {
		emu->kind = POKE_EMU_JCC;
		emu->cond = b[1] & 0x0f;
		emu->target = next + (int64_t)decode_rd32(b + 2);
	}
	return emu->kind;
}

enum poke_err decode_one(const uint8_t *bytes, size_t len, uint64_t addr,
			 bool emulatable, struct poke_emu *emu,
			 char *why, size_t whylen)
{
	enum poke_err err = POKE_OK;
	struct poke_emu tmp;
	cs_insn *insn = NULL;
	size_t count, i;
	bool padable;
	csh h;

	if (!len || len > POKE_MAX_LEN) {
		snprintf(why, whylen, "length %zu is not 1..%d", len, POKE_MAX_LEN);
		return POKE_E_INVAL;
	}
	if (decode_open(&h, false)) {
		snprintf(why, whylen, "cannot start Capstone");
		return POKE_E_HOST;
	}
	count = cs_disasm(h, bytes, len, addr, 1, &insn);
	if (!count) {
		snprintf(why, whylen, "bytes do not decode as an instruction");
		err = POKE_E_DECODE;
		goto out;
	}
	decode_classify(bytes, insn->size, addr, &tmp);
	/* alternative.c: only RET and JMP may be padded, and only with INT3. */
	padable = tmp.kind == POKE_EMU_RET ||
		  (tmp.kind == POKE_EMU_JMP && bytes[0] != 0x66 && bytes[0] != 0x0f);
	if (insn->size != len && !padable) {
		snprintf(why, whylen, "\"%s %s\" is %u bytes, not %zu "
			 "(only RET/JMP may be padded)", insn->mnemonic,
			 insn->op_str, insn->size, len);
		err = POKE_E_DECODE;
		goto out;
	}
	for (i = insn->size; i < len; i++) {
		if (bytes[i] != POKE_INT3) {
			snprintf(why, whylen, "\"%s %s\" is followed by byte "
				 "0x%02x at +%zu; padding must be 0xcc",
				 insn->mnemonic, insn->op_str, bytes[i], i);
			err = POKE_E_DECODE;
			goto out;
		}
	}
	if (emulatable && tmp.kind == POKE_EMU_NONE) {
		snprintf(why, whylen, "\"%s %s\" cannot be emulated (JMP rel8/32, "
			 "CALL rel32, RET, Jcc, NOP2, NOP5 only)",
			 insn->mnemonic, insn->op_str);
		err = POKE_E_EMULATE;
		goto out;
	}
	if (emu)
		*emu = tmp;
out:
	if (insn)
		cs_free(insn, count);
	cs_close(&h);
	return err;
}

enum poke_err decode_whole(const uint8_t *bytes, size_t len, uint64_t addr,
			   char *why, size_t whylen)
{
	const uint8_t *p = bytes;
	uint64_t pc = addr;
	size_t left = len;
	enum poke_err err = POKE_OK;
	cs_insn *insn;
	csh h;

	if (!len || len > POKE_MAX_LEN) {
		snprintf(why, whylen, "length %zu is not 1..%d", len, POKE_MAX_LEN);
		return POKE_E_INVAL;
	}
	if (decode_open(&h, false))
		goto nomem;
	insn = cs_malloc(h);
	if (!insn) {
		cs_close(&h);
		goto nomem;
	}
	while (left) {
		if (!cs_disasm_iter(h, &p, &left, &pc, insn)) {
			snprintf(why, whylen, "new bytes do not decode as whole "
				 "instructions (stopped at +%zu of %zu)",
				 (size_t)(p - bytes), len);
			err = POKE_E_DECODE;
			break;
		}
	}
	cs_free(insn, 1);
	cs_close(&h);
	return err;
nomem:
	snprintf(why, whylen, "cannot start Capstone");
	return POKE_E_HOST;
}

/* How insn moves %rsp: true with *delta (bytes, + = up), false if unknown. */
static bool decode_rsp_delta(const cs_insn *insn, int64_t *delta)
{
	const cs_x86 *x = &insn->detail->x86;

	switch (insn->id) {
	case X86_INS_PUSH:
		*delta = -8;
		return true;
	case X86_INS_POP:
		*delta = 8;
		return !(x->op_count == 1 && x->operands[0].type == X86_OP_REG &&
			 x->operands[0].reg == X86_REG_RSP);
	case X86_INS_SUB:
	case X86_INS_ADD:
		if (x->op_count == 2 && x->operands[0].type == X86_OP_REG &&
		    x->operands[0].reg == X86_REG_RSP) {
			if (x->operands[1].type != X86_OP_IMM)
				return false;
			*delta = insn->id == X86_INS_ADD ? x->operands[1].imm :
				 -x->operands[1].imm;
			return true;
		}
		break;
	default:
		break;
	}
	*delta = 0;
	/* Anything else that writes %rsp (mov, lea, xchg, ...) loses track. */
	for (unsigned int i = 0; i < x->op_count; i++)
		if (x->operands[i].type == X86_OP_REG &&
		    x->operands[i].reg == X86_REG_RSP &&
		    (x->operands[i].access & CS_AC_WRITE))
			return false;
	return true;
}

/*
 * A small objtool: follow every path from the entry (where the frame is at
 * %rsp) through the stub, pushes, pops and immediate adjustments of %rsp,
 * branches inside the stub, and record the frame's offset from %rsp at each
 * instruction start.  A path that leaves the stub or ends (iretq, ret, jmp
 * out) stops; an instruction reached with two different offsets, or after
 * an untracked %rsp write, stays unknown rather than guessed.
 */
int decode_frame_offsets(const uint8_t *code, size_t size, uint64_t base,
			 int32_t *off, uint64_t *doorbell)
{
	size_t *work, nw = 0, i;
	cs_insn *insn;
	csh h;
	int ret = 0;

	for (i = 0; i < size; i++)
		off[i] = DECODE_OFF_NONE;
	*doorbell = 0;
	if (!size)
		return 0;
	if (decode_open(&h, true))
		return -ENOMEM;
	insn = cs_malloc(h);
	work = calloc(size, sizeof(*work));
	if (!insn || !work) {
		ret = -ENOMEM;
		goto out;
	}
	off[0] = 0;
	work[nw++] = 0;
	while (nw) {
		size_t at = work[--nw], next;
		const uint8_t *p = code + at;
		size_t left = size - at;
		uint64_t pc = base + at, target;
		int64_t delta, now = off[at], succ[2];
		unsigned int ns = 0;

		if (now < 0 || !cs_disasm_iter(h, &p, &left, &pc, insn) ||
		    !decode_rsp_delta(insn, &delta) || now - delta > INT32_MAX / 2)
			continue;
		if (insn->id == X86_INS_IN && !*doorbell)
			*doorbell = insn->address;
		next = at + insn->size;
		if (insn->id == X86_INS_IRETQ || insn->id == X86_INS_IRET ||
		    insn->id == X86_INS_RET || insn->id == X86_INS_HLT)
			continue;
		if (decode_direct_target(h, insn, &target) == DECODE_DIRECT) {
			if (target >= base && target < base + size)
				succ[ns++] = (int64_t)(target - base);
			if (insn->id == X86_INS_JMP)
				goto push;
		} else if (insn->id == X86_INS_JMP) {
			continue;	/* indirect: leaves what we can follow */
		}
		if (next < size)
			succ[ns++] = (int64_t)next;
push:
		for (unsigned int k = 0; k < ns; k++) {
			int32_t *o = &off[succ[k]];
			int32_t val = (int32_t)(now - delta);

			if (*o == DECODE_OFF_NONE) {
				*o = val;
				work[nw++] = (size_t)succ[k];
			} else if (*o != val) {
				*o = DECODE_OFF_CONFLICT;
			}
		}
	}
out:
	free(work);
	if (insn)
		cs_free(insn, 1);
	cs_close(&h);
	return ret;
}
