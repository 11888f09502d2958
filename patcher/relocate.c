// SPDX-License-Identifier: MIT
/*
 * relocate.c - move one instruction to another address so that it does
 * the same thing there (kprobes' __copy_instruction(), Frida's relocator).
 * Pure: bytes, their address and the destination address in; new bytes
 * or a named refusal out.  No guest, no VM: unit tested on byte buffers.
 *
 *  - RIP-relative memory operands: the displacement is relative to the
 *    end of the instruction, and the length does not change, so
 *      new disp = old disp + (old next IP - new next IP)
 *    refused as "rip_rel_unreachable" if that does not fit in s32.
 *  - Relative branches (JMP, Jcc, CALL) are re-aimed at the same absolute
 *    target: rel8 forms grow to rel32 (EB -> E9, 7x -> 0F 8x).  LOOP and
 *    JrCXZ have only rel8 forms and are refused ("unsupported"): INT3
 *    probes emulate all of these (probe_insn.c) and relocate_region.c
 *    expands a LOOP itself, so no probe hands one to this function.
 *  - Everything else is position independent and copied as it is.
 *
 * relocate_can_boost() is kprobes' can_boost(): may an out-of-line copy
 * end in a JMP back (one exit per hit) instead of an INT3 that fixes IP?
 */
#include <string.h>
#include <capstone/capstone.h>

#include "relocate.h"

static bool fits_s32(int64_t v)
{
	return v >= INT32_MIN && v <= INT32_MAX;
}

static void put_s32(uint8_t *p, int32_t v)
{
	uint32_t u = (uint32_t)v;

	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
}

static int32_t get_s32(const uint8_t *p)
{
	return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
			 (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
}

static bool is_legacy_prefix(uint8_t b)
{
	switch (b) {
	case 0xf0: case 0xf2: case 0xf3: case 0x2e: case 0x36: case 0x3e:
	case 0x26: case 0x64: case 0x65: case 0x66: case 0x67:
		return true;
	default:
		return false;
	}
}

/*
 * Offset of the opcode: past every legacy prefix and REX byte, in any
 * order.  A REX that is not last is ignored by the CPU but still skipped:
 * `42 f2 eb 10` is a JMP rel8 (fuzz_decode; stopping at the first
 * non-legacy byte took F2 for the opcode and copied the JMP unchanged).
 * In 64-bit mode 0x40-0x4f are always REX, never INC/DEC.
 */
size_t relocate_opcode_offset(const uint8_t *b, size_t len)
{
	size_t i = 0;

	while (i < len && (is_legacy_prefix(b[i]) || (b[i] & 0xf0) == 0x40))
		i++;
	return i;
}

static bool has_prefix(const uint8_t *b, size_t len, uint8_t want)
{
	size_t op = relocate_opcode_offset(b, len);

	for (size_t i = 0; i < op; i++)
		if (b[i] == want)
			return true;
	return false;
}

static int refuse(const char **reason, const char *why)
{
	*reason = why;
	return -1;
}

int relocate_branch_target(const uint8_t *in, size_t len, uint64_t from, uint64_t *target)
{
	size_t op = relocate_opcode_offset(in, len);
	uint8_t o;

	/*
	 * 66 makes a near branch rel16 with IP truncated on AMD, while
	 * Intel ignores it and reads a rel32: the CPUs disagree even on the
	 * length, so there is no one answer.
	 */
	if (op >= len || has_prefix(in, len, 0x66))
		return -1;
	o = in[op];
	if (o == 0xeb || (o >= 0x70 && o <= 0x7f) || (o >= 0xe0 && o <= 0xe3)) {
		if (len != op + 2)
			return -1;
		*target = from + len + (uint64_t)(int64_t)(int8_t)in[len - 1];
		return 0;
	}
	if (o == 0xe9 || o == 0xe8 ||
	    (o == 0x0f && op + 1 < len && (in[op + 1] & 0xf0) == 0x80) ||
	    (o == 0xc7 && op + 1 < len && in[op + 1] == 0xf8)) {	/* XBEGIN */
		if (len != op + (o == 0xe9 || o == 0xe8 ? 5u : 6u))
			return -1;
		*target = from + len + (uint64_t)(int64_t)get_s32(in + len - 4);
		return 0;
	}
	return -1;
}

/*
 * A branch to its absolute target, written for `to`: rel32 forms only.
 * `decoded` is Capstone's target: where it is not the CPU's (Capstone 4
 * reads `67 48 e9 rel32` as rel16; the CPU ignores both prefixes), the
 * branch is refused, since every other reader of the function (the
 * jump-into-range scan, the checks) goes by Capstone's.
 */
static int relocate_branch(const uint8_t *in, size_t len, uint64_t from, uint64_t to,
			   uint64_t decoded, uint8_t *out, size_t outcap, size_t *outlen,
			   const char **reason)
{
	size_t op = relocate_opcode_offset(in, len);
	uint64_t target;
	size_t n;
	int64_t rel;
	uint8_t o;

	if (relocate_branch_target(in, len, from, &target) || target != decoded)
		return refuse(reason, "unsupported");
	o = in[op];
	if (o >= 0xe0 && o <= 0xe3)
		return refuse(reason, "unsupported");	/* LOOP*, JrCXZ: rel8 only */
	if (o == 0xc7)
		return refuse(reason, "unsupported");	/* XBEGIN: never runs out of line */
	n = o == 0xeb ? 5 : (o >= 0x70 && o <= 0x7f) ? 6 : len;
	if (outcap < n)
		return refuse(reason, "too_long");
	if (o == 0xeb) {
		out[0] = 0xe9;
	} else if (o >= 0x70 && o <= 0x7f) {
		out[0] = 0x0f;
		out[1] = (uint8_t)(0x80 | (o & 0xf));
	} else {
		memcpy(out, in, len);		/* rel32: the bytes as they are */
	}
	rel = (int64_t)(target - (to + n));
	if (!fits_s32(rel))
		return refuse(reason, "rip_rel_unreachable");
	put_s32(out + n - 4, (int32_t)rel);
	*outlen = n;
	return 0;
}

int relocate_insn(const uint8_t *in, size_t len, uint64_t from, uint64_t to,
		  uint8_t *out, size_t outcap, size_t *outlen, const char **reason)
{
	cs_insn *insn = NULL;
	const cs_x86 *x;
	csh cs;
	size_t n;
	int ret = -1;

	*reason = NULL;
	if (!len || len > RELOCATE_MAX_INSN)
		return refuse(reason, "not_code");
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK)
		return refuse(reason, "no_decoder");
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON);
	n = cs_disasm(cs, in, len, from, 1, &insn);
	if (n != 1 || insn->size != len) {
		refuse(reason, "not_code");
		goto out;
	}
	x = &insn->detail->x86;
	if (cs_insn_group(cs, insn, X86_GRP_BRANCH_RELATIVE)) {
		if (x->op_count != 1 || x->operands[0].type != X86_OP_IMM) {
			refuse(reason, "unsupported");
			goto out;
		}
		ret = relocate_branch(in, len, from, to, (uint64_t)x->operands[0].imm,
				      out, outcap, outlen, reason);
		goto out;
	}
	if (outcap < len) {
		refuse(reason, "too_long");
		goto out;
	}
	memcpy(out, in, len);
	for (unsigned int i = 0; i < x->op_count; i++) {
		const cs_x86_op *o = &x->operands[i];
		int64_t disp;

		if (o->type != X86_OP_MEM || o->mem.base != X86_REG_RIP)
			continue;
		/*
		 * A RIP-relative operand always has a disp32.  Capstone 4
		 * reports disp_size 2 when a 66 prefix is present (movw
		 * $imm,disp(%rip), SSE's 66 0f forms), so the displacement is
		 * located by its offset and checked against its value instead.
		 */
		if (!x->encoding.disp_offset || x->encoding.disp_offset + 4u > len ||
		    get_s32(in + x->encoding.disp_offset) != (int32_t)o->mem.disp) {
			refuse(reason, "not_code");
			goto out;
		}
		/*
		 * new disp = old disp + (old next IP - new next IP), in the
		 * CPU's own modulo-2^64 address arithmetic, as for a branch:
		 * in int64_t, a slot 2^63 away overflows (fuzz_decode:
		 * regress input relocate-riprel-far-2-63).
		 */
		disp = (int64_t)(from + len + (uint64_t)o->mem.disp - (to + len));
		if (!fits_s32(disp)) {
			refuse(reason, "rip_rel_unreachable");
			goto out;
		}
		put_s32(out + x->encoding.disp_offset, (int32_t)disp);
		break;
	}
	*outlen = len;
	ret = 0;
out:
	if (insn)
		cs_free(insn, 1);
	cs_close(&cs);
	return ret;
}

/*
 * kprobes' twobyte_is_boostable[]: which 0F xx opcodes may run in a
 * boosted slot.  Bit (xx & 31) of word xx / 32.
 */
static const uint32_t twobyte_boostable[8] = {
	/* 00-1f: 02 03 06 08 09, 1f (nopl) */
	(1u << 0x02) | (1u << 0x03) | (1u << 0x06) | (1u << 0x08) | (1u << 0x09) |
	(1u << 0x1f),
	/* 20-3f: 20-24 26 */
	(1u << 0x00) | (1u << 0x01) | (1u << 0x02) | (1u << 0x03) | (1u << 0x04) |
	(1u << 0x06),
	/* 40-5f: 40-4f (cmovcc) */
	0x0000ffffu,
	/* 60-7f: none */
	0,
	/* 80-9f: 90-9f (setcc) */
	0xffff0000u,
	/* a0-bf: a0 a1 a3 a4 a5 a8 a9 ab ac ad af, b0-b7 ba-bf */
	(1u << 0x00) | (1u << 0x01) | (1u << 0x03) | (1u << 0x04) | (1u << 0x05) |
	(1u << 0x08) | (1u << 0x09) | (1u << 0x0b) | (1u << 0x0c) | (1u << 0x0d) |
	(1u << 0x0f) | (0xffu << 0x10) | (0x3fu << 0x1a),
	/* c0-df: c0 c1 c7-cf */
	(1u << 0x00) | (1u << 0x01) | (0x1ffu << 0x07),
	/* e0-ff: none */
	0,
};

bool relocate_can_boost(const uint8_t *in, size_t len)
{
	size_t op = relocate_opcode_offset(in, len);
	uint8_t o, modrm_reg;

	if (op >= len || has_prefix(in, len, 0x2e) || has_prefix(in, len, 0x67))
		return false;
	o = in[op];
	if (o == 0x0f) {
		if (op + 1 >= len)
			return false;
		o = in[op + 1];
		if (o == 0x38 || o == 0x3a)
			return false;
		return twobyte_boostable[o / 32] & (1u << (o % 32));
	}
	switch (o) {
	case 0x62: case 0x9a: case 0xc0: case 0xc1: case 0xcc: case 0xcd:
	case 0xce: case 0xd0: case 0xd1: case 0xd2: case 0xd3: case 0xd6:
	case 0xe8: case 0xe9: case 0xeb: case 0xf6: case 0xf7: case 0xfe:
		return false;
	case 0xff:
		modrm_reg = op + 1 < len ? (in[op + 1] >> 3) & 7 : 0xff;
		return modrm_reg == 4;		/* only the indirect JMP */
	default:
		break;
	}
	if ((o >= 0x70 && o <= 0x7f) || (o >= 0xd8 && o <= 0xdf) ||
	    (o >= 0xe0 && o <= 0xe3) || (o >= 0xf0 && o <= 0xf4))
		return false;
	return true;
}
