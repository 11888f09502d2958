// SPDX-License-Identifier: MIT
/*
 * emulate.c - what a trap on a live site does, as int3_emulate_*() in the
 * kernel's asm/text-patching.h.  Pure: registers in, registers out, guest
 * stack through a callback, so every case is unit tested on fake memory.
 */
#include <errno.h>

#include "patcher_internal.h"

/*
 * Jcc conditions, Intel SDM vol. 2 "Jcc": even codes are the base test,
 * odd codes its negation.  LE is "ZF = 1 OR SF != OF" - the OR is where
 * kprobes once went wrong (8924779df820, JNG/JNLE).
 */
bool poke_cond_true(uint8_t cc, uint64_t rflags)
{
	bool cf = rflags & POKE_FLAG_CF, pf = rflags & POKE_FLAG_PF;
	bool zf = rflags & POKE_FLAG_ZF, sf = rflags & POKE_FLAG_SF;
	bool of = rflags & POKE_FLAG_OF;
	bool base;

	switch ((cc & 0xf) >> 1) {
	case 0: base = of; break;			/* O  / NO */
	case 1: base = cf; break;			/* B  / AE */
	case 2: base = zf; break;			/* E  / NE */
	case 3: base = cf || zf; break;			/* BE / A */
	case 4: base = sf; break;			/* S  / NS */
	case 5: base = pf; break;			/* P  / NP */
	case 6: base = sf != of; break;			/* L  / GE */
	default: base = zf || sf != of; break;		/* LE / G */
	}
	return (cc & 1) ? !base : base;
}

/*
 * A CALL whose push faults, or a RET whose pop faults, is not finished
 * here: we leave rip at the INT3 (addr) and the stack untouched.  While
 * the site is live the vCPU traps again, which is harmless and bounded by
 * the batch; once the real instruction is in place the guest executes it
 * and takes the fault itself, with an architecturally correct frame.
 * Inventing a #PF or calling it foreign would hand the guest a #BP it
 * never planted.
 */
int poke_emulate(const struct poke_emu *emu, uint64_t addr,
		 struct poke_cpu *cpu, const struct poke_mem *mem)
{
	uint64_t next = addr + emu->len, v;

	switch (emu->kind) {
	case POKE_EMU_JMP:
		cpu->rip = emu->target;
		return 0;
	case POKE_EMU_JCC:
		cpu->rip = poke_cond_true(emu->cond, cpu->rflags) ?
			   emu->target : next;
		return 0;
	case POKE_EMU_CALL:
		if (mem->write(mem->ctx, cpu->rsp - 8, &next, sizeof(next)))
			break;
		cpu->rsp -= 8;
		cpu->rip = emu->target;
		return 0;
	case POKE_EMU_RET:
		if (mem->read(mem->ctx, cpu->rsp, &v, sizeof(v)))
			break;
		cpu->rsp += 8;
		cpu->rip = v;
		return 0;
	default:
		break;
	}
	cpu->rip = addr;
	return -EFAULT;
}
