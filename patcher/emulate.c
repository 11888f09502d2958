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
 * A CALL whose push faults, or a RET whose pop faults or would return to
 * a non-canonical address, is not finished
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
		/*
		 * A non-canonical return address: the CPU raises #GP at the
		 * RET itself.  Handing it to the frame or KVM_SET_REGS would
		 * fault later and elsewhere (the stub's iretq, a VM-entry
		 * failure), so leave the RET to the guest, as a faulting pop.
		 */
		if (mem->read(mem->ctx, cpu->rsp, &v, sizeof(v)) ||
		    (uint64_t)((int64_t)(v << 16) >> 16) != v)
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

__u64 *poke_gpr(struct kvm_regs *r, unsigned int n)
{
	__u64 *const map[16] = {
		&r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp, &r->rsi,
		&r->rdi, &r->r8, &r->r9, &r->r10, &r->r11, &r->r12, &r->r13,
		&r->r14, &r->r15,
	};

	return map[n & 15];
}

/*
 * LOOP/LOOPE/LOOPNE decrement the count register of the address size
 * (RCX, or ECX with a 67 prefix) and branch if it is not zero (and ZF
 * allows); JRCXZ/JECXZ branch if it is zero, without changing it.  A
 * 32-bit count is written as ECX is, zero-extended into RCX: the lab
 * (test_lab_loop) shows the real 67 e2 clearing RCX's upper half, where
 * kprobes' int3_emulate_loop() (and vmpoke before it) kept it.
 */
static bool emulate_loop(const struct poke_emu *emu, struct kvm_regs *r)
{
	uint64_t mask = emu->asize == 4 ? 0xffffffffull : ~0ull;
	uint64_t cx = r->rcx & mask;
	bool zf = r->rflags & POKE_FLAG_ZF;

	if (emu->cond == 3)
		return cx == 0;
	cx = (cx - 1) & mask;
	r->rcx = cx;
	switch (emu->cond) {
	case 0: return cx && !zf;	/* LOOPNE */
	case 1: return cx && zf;	/* LOOPE */
	default: return cx != 0;	/* LOOP */
	}
}

int poke_emulate_regs(const struct poke_emu *emu, uint64_t addr,
		      struct kvm_regs *r, const struct poke_mem *mem)
{
	uint64_t next = addr + emu->len, v, sp = r->rsp;
	struct poke_cpu cpu;

	switch (emu->kind) {
	case POKE_EMU_JMP:
	case POKE_EMU_JCC:
	case POKE_EMU_CALL:
	case POKE_EMU_RET:
		cpu = (struct poke_cpu){ .rip = r->rip, .rsp = r->rsp,
					 .rflags = r->rflags };
		if (poke_emulate(emu, addr, &cpu, mem))
			return -EFAULT;
		r->rip = cpu.rip;
		r->rsp = cpu.rsp;
		return 0;
	case POKE_EMU_RET_IMM:
		if (mem->read(mem->ctx, sp, &v, sizeof(v)))
			return -EFAULT;
		r->rsp = sp + 8 + emu->imm;
		r->rip = v;
		return 0;
	case POKE_EMU_LOOP:
		r->rip = emulate_loop(emu, r) ? emu->target : next;
		return 0;
	case POKE_EMU_JMP_REG:
		r->rip = *poke_gpr(r, emu->reg);
		return 0;
	case POKE_EMU_CALL_REG:
		/* The target is read before the push: call *%rsp uses the old rsp. */
		v = *poke_gpr(r, emu->reg);
		if (mem->write(mem->ctx, sp - 8, &next, sizeof(next)))
			return -EFAULT;
		r->rsp = sp - 8;
		r->rip = v;
		return 0;
	case POKE_EMU_PUSH:
		/* push %rsp pushes the value before the decrement */
		v = *poke_gpr(r, emu->reg);
		if (mem->write(mem->ctx, sp - 8, &v, sizeof(v)))
			return -EFAULT;
		r->rsp = sp - 8;
		r->rip = next;
		return 0;
	case POKE_EMU_POP:
		/* pop %rsp loads rsp from the stack: the increment is lost */
		if (mem->read(mem->ctx, sp, &v, sizeof(v)))
			return -EFAULT;
		r->rsp = sp + 8;
		*poke_gpr(r, emu->reg) = v;
		r->rip = next;
		return 0;
	default:
		return -EFAULT;
	}
}
