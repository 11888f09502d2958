// SPDX-License-Identifier: MIT
/*
 * probe_insn.c - how an INT3 probe runs the instruction it replaced, decided
 * once from the decoded original (kprobes' arch_prepare_kprobe()):
 *
 *  - refused, by name: far transfers, IRET, INT n/INT3/INT1/INTO, HLT,
 *    SYSCALL/SYSRET/SYSENTER/SYSEXIT, MOV SS (POP SS does not exist in
 *    64-bit mode), VMX instructions, and `call *mem` (kprobes refuses the
 *    memory forms too: out of line it would push a return address into
 *    the slot, which no busy-range check could then ever see leave);
 *  - emulated in the VMM: kprobes' prepare_emulation() set - JMP, Jcc,
 *    CALL rel32, RET, RET imm16, LOOP/LOOPE/LOOPNE/JrCXZ, `call/jmp
 *    *%reg` - plus PUSH/POP of a 64-bit register (as uprobes) and NOPs
 *    (a jump to the next instruction);
 *  - everything else runs out of line: copied by the relocator (RIP-
 *    relative operands re-encoded) into a slot that ends in a JMP back
 *    where kprobes' can_boost() allows, else in an INT3 that sets IP to
 *    the next original instruction (uprobes' default fixup).
 *
 * Pure: bytes and an address in, a verdict out.
 */
#include <stdio.h>
#include <string.h>
#include <capstone/capstone.h>

#include "probe_internal.h"
#include "relocate.h"

static int insn_refuse(const char **reason, const char *name, char *detail,
		       size_t dlen, const cs_insn *in)
{
	*reason = name;
	if (detail && dlen)
		snprintf(detail, dlen, "%s %s", in->mnemonic, in->op_str);
	return -1;
}

/* Hardware register number of a Capstone 64-bit GPR, or -1. */
static int gpr_number(x86_reg r)
{
	static const x86_reg regs[16] = {
		X86_REG_RAX, X86_REG_RCX, X86_REG_RDX, X86_REG_RBX,
		X86_REG_RSP, X86_REG_RBP, X86_REG_RSI, X86_REG_RDI,
		X86_REG_R8, X86_REG_R9, X86_REG_R10, X86_REG_R11,
		X86_REG_R12, X86_REG_R13, X86_REG_R14, X86_REG_R15,
	};

	for (int i = 0; i < 16; i++)
		if (regs[i] == r)
			return i;
	return -1;
}

/* Refusals first: these never run, in the VMM or out of line. */
static const char *insn_refusal(const cs_insn *in, const cs_x86 *x)
{
	uint8_t op = x->opcode[0], reg = (x->modrm >> 3) & 7;

	switch (in->id) {
	case X86_INS_INT3: case X86_INS_INT: case X86_INS_INT1: case X86_INS_INTO:
		return "int";
	case X86_INS_IRET: case X86_INS_IRETD: case X86_INS_IRETQ:
		return "iret";
	case X86_INS_HLT:
		return "hlt";
	case X86_INS_SYSCALL: case X86_INS_SYSRET: case X86_INS_SYSENTER:
	case X86_INS_SYSEXIT:
		return "syscall";
	case X86_INS_LJMP: case X86_INS_LCALL: case X86_INS_RETF: case X86_INS_RETFQ:
		return "far_transfer";
	case X86_INS_VMCALL: case X86_INS_VMLAUNCH: case X86_INS_VMRESUME:
	case X86_INS_VMXOFF: case X86_INS_VMMCALL: case X86_INS_VMRUN:
		return "vmx";
	default:
		break;
	}
	if (op == 0x8e && reg == 2)
		return "mov_ss";
	if (op == 0xff && (reg == 3 || reg == 5))
		return "far_transfer";
	if (op == 0xff && reg == 2 && (x->modrm >> 6) != 3)
		return "indirect_call_mem";
	return NULL;
}

/* The emulated set; false if the instruction is not in it. */
static bool insn_emulation(csh cs, const cs_insn *in, const cs_x86 *x,
			   uint64_t addr, struct poke_emu *e)
{
	uint8_t op = x->opcode[0], mod = x->modrm >> 6, reg = (x->modrm >> 3) & 7;
	bool opsize = x->prefix[2] == 0x66;
	int n;

	memset(e, 0, sizeof(*e));
	e->len = (uint8_t)in->size;
	if (in->id == X86_INS_NOP) {
		e->kind = POKE_EMU_JMP;		/* "jump" to the next instruction */
		e->target = addr + in->size;
		return true;
	}
	if (cs_insn_group(cs, in, X86_GRP_BRANCH_RELATIVE)) {
		/*
		 * The target as the CPU reads the bytes, and only where Capstone
		 * reads the same: not a 66-prefixed branch (IP truncated on
		 * some CPUs), nor `67 48 e9 rel32`, which Capstone 4 reads as
		 * rel16 (relocate_branch_target()).
		 */
		if (relocate_branch_target(in->bytes, in->size, addr, &e->target) ||
		    x->op_count != 1 || x->operands[0].type != X86_OP_IMM ||
		    (uint64_t)x->operands[0].imm != e->target)
			return false;
		if (op == 0xe8) {
			e->kind = POKE_EMU_CALL;
		} else if (op == 0xe9 || op == 0xeb) {
			e->kind = POKE_EMU_JMP;
		} else if (op >= 0x70 && op <= 0x7f) {
			e->kind = POKE_EMU_JCC;
			e->cond = op & 0xf;
		} else if (op == 0x0f && (x->opcode[1] & 0xf0) == 0x80) {
			e->kind = POKE_EMU_JCC;
			e->cond = x->opcode[1] & 0xf;
		} else if (op >= 0xe0 && op <= 0xe3) {
			e->kind = POKE_EMU_LOOP;
			e->cond = op - 0xe0;
			e->asize = x->prefix[3] == 0x67 ? 4 : 8;
		}
		return e->kind != POKE_EMU_NONE;
	}
	if (op == 0xc3 && !opsize) {
		e->kind = POKE_EMU_RET;
		return true;
	}
	if (op == 0xc2 && !opsize && x->op_count == 1) {
		e->kind = POKE_EMU_RET_IMM;
		e->imm = (uint16_t)x->operands[0].imm;
		return true;
	}
	if (op == 0xff && mod == 3 && (reg == 2 || reg == 4) && !opsize &&
	    x->op_count == 1 && x->operands[0].type == X86_OP_REG &&
	    (n = gpr_number(x->operands[0].reg)) >= 0) {
		e->kind = reg == 2 ? POKE_EMU_CALL_REG : POKE_EMU_JMP_REG;
		e->reg = (uint8_t)n;
		return true;
	}
	if (op >= 0x50 && op <= 0x5f && !opsize && x->op_count == 1 &&
	    x->operands[0].type == X86_OP_REG &&
	    (n = gpr_number(x->operands[0].reg)) >= 0) {
		e->kind = op < 0x58 ? POKE_EMU_PUSH : POKE_EMU_POP;
		e->reg = (uint8_t)n;
		return true;
	}
	e->kind = POKE_EMU_NONE;
	return false;
}

int probe_insn_decode(const uint8_t *bytes, size_t avail, uint64_t addr,
		      struct probe_insn *pi, const char **reason,
		      char *detail, size_t dlen)
{
	cs_insn *in = NULL;
	const char *why;
	csh cs;
	int ret = -1;

	memset(pi, 0, sizeof(*pi));
	*reason = NULL;
	if (detail && dlen)
		detail[0] = '\0';
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) {
		*reason = "no_decoder";
		return -1;
	}
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON);
	if (cs_disasm(cs, bytes, avail < RELOCATE_MAX_INSN ? avail : RELOCATE_MAX_INSN,
		      addr, 1, &in) != 1) {
		*reason = "not_code";
		if (detail && dlen)
			snprintf(detail, dlen, "no instruction decodes here");
		goto out;
	}
	pi->len = (uint8_t)in->size;
	memcpy(pi->bytes, bytes, in->size);
	snprintf(pi->text, sizeof(pi->text), "%s%s%s", in->mnemonic,
		 in->op_str[0] ? " " : "", in->op_str);
	why = insn_refusal(in, &in->detail->x86);
	if (why) {
		insn_refuse(reason, why, detail, dlen, in);
		goto out;
	}
	if (insn_emulation(cs, in, &in->detail->x86, addr, &pi->emu)) {
		pi->exec = PROBE_EXEC_EMULATE;
	} else if (cs_insn_group(cs, in, X86_GRP_BRANCH_RELATIVE) ||
		   cs_insn_group(cs, in, X86_GRP_CALL)) {
		/*
		 * A relative branch we do not emulate (66-prefixed): no slot
		 * either.  Nor a CALL (66 ff /2): out of line it would push the
		 * slot's address, and the callee would return into a slot that
		 * may be reused by then, or into a detour (fuzz_decode).
		 */
		insn_refuse(reason, "unsupported", detail, dlen, in);
		goto out;
	} else {
		pi->exec = PROBE_EXEC_SLOT;
		pi->boost = relocate_can_boost(bytes, in->size);
		for (unsigned int i = 0; i < in->detail->x86.op_count; i++)
			if (in->detail->x86.operands[i].type == X86_OP_MEM &&
			    in->detail->x86.operands[i].mem.base == X86_REG_RIP)
				pi->rip_relative = true;
	}
	ret = 0;
out:
	if (in)
		cs_free(in, 1);
	cs_close(&cs);
	return ret;
}

/*
 * The slot's bytes for running pi at `slot` instead of at addr: the
 * relocated copy, then JMP rel32 to addr + len (boost) or INT3.
 */
int probe_insn_slot(const struct probe_insn *pi, uint64_t addr, uint64_t slot,
		    uint8_t *out, size_t outcap, size_t *outlen, size_t *ret_at,
		    const char **reason)
{
	size_t n;
	int64_t rel;

	if (relocate_insn(pi->bytes, pi->len, addr, slot, out, outcap, &n, reason))
		return -1;
	*ret_at = n;
	if (pi->boost) {
		if (n + 5 > outcap)
			goto too_long;
		rel = (int64_t)(addr + pi->len - (slot + n + 5));
		if (rel < INT32_MIN || rel > INT32_MAX) {
			*reason = "rip_rel_unreachable";
			return -1;
		}
		out[n] = 0xe9;
		for (int i = 0; i < 4; i++)
			out[n + 1 + i] = (uint8_t)((uint32_t)(int32_t)rel >> (8 * i));
		*outlen = n + 5;
	} else {
		if (n + 1 > outcap)
			goto too_long;
		out[n] = 0xcc;
		*outlen = n + 1;
	}
	return 0;
too_long:
	*reason = "too_long";
	return -1;
}
