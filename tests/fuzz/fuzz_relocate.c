// SPDX-License-Identifier: MIT
/*
 * fuzz_relocate.c - the probe half of fuzz_decode: the instruction a probe
 * replaces, through probe_insn_decode(), poke_emulate_regs() over a fuzzed
 * register file and stack, relocate_insn() and probe_insn_slot().
 *
 * The relocator's promise is checked with Capstone itself: the copy at
 * `to` must decode as one instruction of the length it reports, the same
 * instruction, branching to the same absolute target, or addressing the
 * same absolute RIP-relative location, with every other byte unchanged.
 */
#include <errno.h>
#include <string.h>
#include <capstone/capstone.h>

#include "fuzz.h"
#include "../../patcher/probe_internal.h"
#include "../../patcher/relocate.h"

#define T	"fuzz_decode"

static csh reloc_cs;

cs_insn *fuzz_cs_decode(const uint8_t *b, size_t len, uint64_t at)
{
	cs_insn *insn = NULL;

	if (!reloc_cs) {
		if (cs_open(CS_ARCH_X86, CS_MODE_64, &reloc_cs) != CS_ERR_OK)
			fuzz_fail(T, "Capstone did not start");
		cs_option(reloc_cs, CS_OPT_DETAIL, CS_OPT_ON);
	}
	if (cs_disasm(reloc_cs, b, len, at, 1, &insn) != 1)
		return NULL;
	return insn;
}

/* The RIP-relative operand's absolute address, if insn has one. */
size_t fuzz_cs_handle(void)
{
	return reloc_cs;
}

static bool reloc_riprel(const cs_insn *insn, uint64_t *abs)
{
	const cs_x86 *x = &insn->detail->x86;

	for (unsigned int i = 0; i < x->op_count; i++)
		if (x->operands[i].type == X86_OP_MEM &&
		    x->operands[i].mem.base == X86_REG_RIP) {
			*abs = insn->address + insn->size + (uint64_t)x->operands[i].mem.disp;
			return true;
		}
	return false;
}

static void reloc_check(const cs_insn *a, const uint8_t *out, size_t n, uint64_t to)
{
	cs_insn *b = fuzz_cs_decode(out, n, to);
	const cs_x86 *xa = &a->detail->x86;
	uint64_t ra, rb;
	bool rel = cs_insn_group(reloc_cs, a, X86_GRP_BRANCH_RELATIVE);

	FUZZ_CHECK(T, b && b->size == n, "relocated \"%s %s\" does not decode as one "
		   "instruction of %zu bytes", a->mnemonic, a->op_str, n);
	FUZZ_CHECK(T, b->id == a->id, "\"%s %s\" relocated to \"%s %s\"", a->mnemonic,
		   a->op_str, b->mnemonic, b->op_str);
	if (rel) {
		FUZZ_CHECK(T, xa->op_count == 1 && b->detail->x86.op_count == 1 &&
			   b->detail->x86.operands[0].imm == xa->operands[0].imm,
			   "\"%s %s\" at 0x%llx relocated to \"%s %s\" at 0x%llx: another target",
			   a->mnemonic, a->op_str, (unsigned long long)a->address,
			   b->mnemonic, b->op_str, (unsigned long long)to);
	} else if (reloc_riprel(a, &ra)) {
		FUZZ_CHECK(T, reloc_riprel(b, &rb) && ra == rb,
			   "\"%s %s\" relocated to \"%s %s\": another RIP-relative address",
			   a->mnemonic, a->op_str, b->mnemonic, b->op_str);
	} else {
		FUZZ_CHECK(T, n == a->size && !memcmp(out, a->bytes, n),
			   "position-independent \"%s %s\" changed", a->mnemonic, a->op_str);
	}
	cs_free(b, 1);
}

/* The first instruction of code, relocated from `from` to `to`. */
static void reloc_insn(const uint8_t *code, size_t size, uint64_t from, uint64_t to)
{
	cs_insn *a = fuzz_cs_decode(code, size < RELOCATE_MAX_INSN ? size : RELOCATE_MAX_INSN,
				  from);
	uint8_t out[RELOCATE_MAX_OUT];
	const char *reason = NULL;
	size_t n = 0;

	if (!a)
		return;
	if (relocate_insn(code, a->size, from, to, out, sizeof(out), &n, &reason))
		FUZZ_CHECK(T, reason && reason[0], "relocation refused without a reason");
	else
		reloc_check(a, out, n, to);
	cs_free(a, 1);
}

static void probe_emulate(const struct probe_insn *pi, uint64_t addr,
			  const struct kvm_regs *regs, const struct poke_mem *mem)
{
	struct kvm_regs r = *regs;
	int ret;

	r.rip = addr + 1;
	ret = poke_emulate_regs(&pi->emu, addr, &r, mem);
	if (ret) {
		struct kvm_regs want = *regs;

		want.rip = addr + 1;
		FUZZ_CHECK(T, ret == -EFAULT && !memcmp(&r, &want, sizeof(r)),
			   "a faulting emulation changed the registers");
		return;
	}
	switch (pi->emu.kind) {
	case POKE_EMU_PUSH:
	case POKE_EMU_CALL:
	case POKE_EMU_CALL_REG:
		FUZZ_CHECK(T, r.rsp == regs->rsp - 8, "a push moved rsp by %lld",
			   (long long)(r.rsp - regs->rsp));
		break;
	case POKE_EMU_RET:
		FUZZ_CHECK(T, r.rsp == regs->rsp + 8, "RET moved rsp by %lld",
			   (long long)(r.rsp - regs->rsp));
		break;
	case POKE_EMU_LOOP:
	case POKE_EMU_JCC:
		FUZZ_CHECK(T, r.rip == pi->emu.target || r.rip == addr + pi->emu.len,
			   "a conditional branch went to neither side");
		break;
	default:
		break;
	}
}

void fuzz_decode_probe(const uint8_t *code, size_t size, uint64_t addr, uint64_t to,
		       const struct kvm_regs *regs, const struct poke_mem *mem)
{
	uint8_t slot[PROBE_SLOT_SIZE];
	struct probe_insn pi;
	const char *reason = NULL;
	char detail[256];
	size_t n = 0, ret_at = 0;

	reloc_insn(code, size, addr, to);
	if (probe_insn_decode(code, size, addr, &pi, &reason, detail, sizeof(detail))) {
		FUZZ_CHECK(T, reason && reason[0], "probe refused without a reason");
		return;
	}
	FUZZ_CHECK(T, pi.len >= 1 && pi.len <= RELOCATE_MAX_INSN && pi.len <= size &&
		   !memcmp(pi.bytes, code, pi.len), "probe kept %u bytes", pi.len);
	if (pi.exec == PROBE_EXEC_EMULATE) {
		FUZZ_CHECK(T, pi.emu.kind != POKE_EMU_NONE && pi.emu.len == pi.len,
			   "emulating kind %d of length %u for \"%s\"", pi.emu.kind,
			   pi.emu.len, pi.text);
		probe_emulate(&pi, addr, regs, mem);
		return;
	}
	if (probe_insn_slot(&pi, addr, to, slot, sizeof(slot), &n, &ret_at, &reason)) {
		FUZZ_CHECK(T, reason && reason[0], "slot refused without a reason");
		return;
	}
	FUZZ_CHECK(T, ret_at < n && n <= sizeof(slot) &&
		   (pi.boost ? n == ret_at + 5 && slot[ret_at] == 0xe9 :
			       n == ret_at + 1 && slot[ret_at] == 0xcc),
		   "slot of %zu bytes, return at %zu", n, ret_at);
	if (pi.boost) {
		cs_insn *j = fuzz_cs_decode(slot + ret_at, 5, to + ret_at);

		FUZZ_CHECK(T, j && j->detail->x86.operands[0].imm == (int64_t)(addr + pi.len),
			   "the boosted slot does not jump back to the next instruction");
		cs_free(j, 1);
	}
}
