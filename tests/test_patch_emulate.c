// SPDX-License-Identifier: MIT
/*
 * test_patch_emulate.c - the trap hook's emulation, without a VM: the Jcc
 * condition evaluator against a truth table written from the SDM's Jcc
 * page, and JMP/CALL/RET/Jcc/NOP on fake memory.
 */
#include <errno.h>
#include <string.h>

#include "testlib.h"
#include "../patcher/patcher_internal.h"

/*
 * Reference, one line per mnemonic as the SDM's Jcc table words them.
 * Deliberately not the base/negate structure of poke_cond_true().
 */
static bool ref_cond(unsigned int cc, bool cf, bool pf, bool zf, bool sf, bool of)
{
	switch (cc) {
	case 0x0: return of;			/* JO */
	case 0x1: return !of;			/* JNO */
	case 0x2: return cf;			/* JB/JC/JNAE */
	case 0x3: return !cf;			/* JAE/JNB/JNC */
	case 0x4: return zf;			/* JE/JZ */
	case 0x5: return !zf;			/* JNE/JNZ */
	case 0x6: return cf || zf;		/* JBE/JNA */
	case 0x7: return !cf && !zf;		/* JA/JNBE */
	case 0x8: return sf;			/* JS */
	case 0x9: return !sf;			/* JNS */
	case 0xa: return pf;			/* JP/JPE */
	case 0xb: return !pf;			/* JNP/JPO */
	case 0xc: return sf != of;		/* JL/JNGE */
	case 0xd: return sf == of;		/* JGE/JNL */
	case 0xe: return zf || sf != of;	/* JLE/JNG */
	default:  return !zf && sf == of;	/* JG/JNLE */
	}
}

static void test_cond_all_flags(void)
{
	/* Bits that must not matter: reserved bit 1, AF, IF, DF, TF. */
	static const uint64_t noise[] = { 0x2, 0x2 | 0x10 | 0x200 | 0x400 | 0x100 };
	unsigned int cc, f, k, checked = 0;

	for (cc = 0; cc < 16; cc++) {
		for (f = 0; f < 32; f++) {
			bool cf = f & 1, pf = f & 2, zf = f & 4, sf = f & 8, of = f & 16;
			uint64_t fl = (cf ? POKE_FLAG_CF : 0) | (pf ? POKE_FLAG_PF : 0) |
				      (zf ? POKE_FLAG_ZF : 0) | (sf ? POKE_FLAG_SF : 0) |
				      (of ? POKE_FLAG_OF : 0);

			for (k = 0; k < 2; k++) {
				bool exp = ref_cond(cc, cf, pf, zf, sf, of);
				bool act = poke_cond_true((uint8_t)cc, fl | noise[k]);

				EXPECT_TRUE_MSG(exp == act, "cc 0x%x rflags 0x%llx: "
						"expected %d, got %d", cc,
						(unsigned long long)(fl | noise[k]), exp, act);
				checked++;
			}
		}
	}
	EXPECT_EQ_U64(16 * 32 * 2, checked);
}

/* The JNG/JNLE bug (8924779df820): ZF=1, SF=OF must satisfy LE, not G. */
static void test_cond_jng_jnle(void)
{
	EXPECT_TRUE(poke_cond_true(0xe, POKE_FLAG_ZF));
	EXPECT_FALSE(poke_cond_true(0xf, POKE_FLAG_ZF));
	EXPECT_TRUE(poke_cond_true(0xe, POKE_FLAG_ZF | POKE_FLAG_SF | POKE_FLAG_OF));
	EXPECT_FALSE(poke_cond_true(0xf, POKE_FLAG_ZF | POKE_FLAG_SF | POKE_FLAG_OF));
	EXPECT_TRUE(poke_cond_true(0xe, POKE_FLAG_SF));
	EXPECT_TRUE(poke_cond_true(0xf, 0));
}

/* Fake guest memory: one page at FAKE_BASE; anything else faults. */
#define FAKE_BASE	0x7000ull
static uint8_t fake[4096];

static int fake_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
	(void)ctx;
	if (gva < FAKE_BASE || gva + len > FAKE_BASE + sizeof(fake))
		return -EFAULT;
	memcpy(buf, fake + (gva - FAKE_BASE), len);
	return 0;
}

static int fake_write(void *ctx, uint64_t gva, const void *buf, size_t len)
{
	(void)ctx;
	if (gva < FAKE_BASE || gva + len > FAKE_BASE + sizeof(fake))
		return -EFAULT;
	memcpy(fake + (gva - FAKE_BASE), buf, len);
	return 0;
}

static const struct poke_mem fake_mem = { fake_read, fake_write, NULL };

#define SITE	0x401000ull

static void test_emulate_jmp_and_nop(void)
{
	struct poke_emu jmp = { .kind = POKE_EMU_JMP, .len = 5, .target = 0x402345 };
	struct poke_emu nop2 = { .kind = POKE_EMU_JMP, .len = 2, .target = SITE + 2 };
	struct poke_cpu cpu = { .rip = SITE + 1, .rsp = FAKE_BASE + 0x800 };

	EXPECT_EQ(poke_emulate(&jmp, SITE, &cpu, &fake_mem), 0);
	EXPECT_EQ_U64(0x402345, cpu.rip);
	EXPECT_EQ_U64(FAKE_BASE + 0x800, cpu.rsp);
	cpu.rip = SITE + 1;
	EXPECT_EQ(poke_emulate(&nop2, SITE, &cpu, &fake_mem), 0);
	EXPECT_EQ_U64(SITE + 2, cpu.rip);
}

static void test_emulate_call_ret(void)
{
	struct poke_emu call = { .kind = POKE_EMU_CALL, .len = 5, .target = 0x403000 };
	struct poke_emu ret = { .kind = POKE_EMU_RET, .len = 1 };
	struct poke_cpu cpu = { .rip = SITE + 1, .rsp = FAKE_BASE + 0x800 };
	uint64_t pushed;

	memset(fake, 0xa5, sizeof(fake));
	EXPECT_EQ(poke_emulate(&call, SITE, &cpu, &fake_mem), 0);
	EXPECT_EQ_U64(0x403000, cpu.rip);
	EXPECT_EQ_U64(FAKE_BASE + 0x7f8, cpu.rsp);
	memcpy(&pushed, fake + 0x7f8, 8);
	EXPECT_EQ_U64(SITE + 5, pushed);	/* return address = site + len */
	/* The RET pops what the CALL pushed. */
	cpu.rip = 0x403001;
	EXPECT_EQ(poke_emulate(&ret, 0x403000, &cpu, &fake_mem), 0);
	EXPECT_EQ_U64(SITE + 5, cpu.rip);
	EXPECT_EQ_U64(FAKE_BASE + 0x800, cpu.rsp);
}

static void test_emulate_stack_fault(void)
{
	struct poke_emu call = { .kind = POKE_EMU_CALL, .len = 5, .target = 0x403000 };
	struct poke_emu ret = { .kind = POKE_EMU_RET, .len = 1 };
	struct poke_cpu cpu = { .rip = SITE + 1, .rsp = FAKE_BASE };

	/* rsp - 8 is outside the fake page: resume at the INT3, stack untouched. */
	EXPECT_EQ(poke_emulate(&call, SITE, &cpu, &fake_mem), -EFAULT);
	EXPECT_EQ_U64(SITE, cpu.rip);
	EXPECT_EQ_U64(FAKE_BASE, cpu.rsp);
	cpu.rip = SITE + 1;
	cpu.rsp = 0x10;
	EXPECT_EQ(poke_emulate(&ret, SITE, &cpu, &fake_mem), -EFAULT);
	EXPECT_EQ_U64(SITE, cpu.rip);
	EXPECT_EQ_U64(0x10, cpu.rsp);
}

/*
 * RET to a non-canonical address: not emulated (the CPU faults at the RET
 * itself), so the guest takes its own #GP at the RET once the site is
 * retired, a clean fault report instead of a fault at the stub's iretq or
 * a VM-entry failure.  Canonical high-half addresses still return.
 */
static void test_emulate_ret_noncanonical(void)
{
	static const uint64_t bad[] = { 0x0000800000000000ull, 0x8000000000000000ull,
					0x00007fffffffffffull + 1, 0xdead000000000000ull };
	struct poke_emu ret = { .kind = POKE_EMU_RET, .len = 1 };
	struct poke_cpu cpu;
	uint64_t good = 0xffff800000001000ull;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memcpy(fake + 0x800, &bad[i], 8);
		cpu = (struct poke_cpu){ .rip = SITE + 1, .rsp = FAKE_BASE + 0x800 };
		EXPECT_EQ(poke_emulate(&ret, SITE, &cpu, &fake_mem), -EFAULT);
		EXPECT_EQ_U64(SITE, cpu.rip);
		EXPECT_EQ_U64(FAKE_BASE + 0x800, cpu.rsp);
	}
	memcpy(fake + 0x800, &good, 8);
	cpu = (struct poke_cpu){ .rip = SITE + 1, .rsp = FAKE_BASE + 0x800 };
	EXPECT_EQ(poke_emulate(&ret, SITE, &cpu, &fake_mem), 0);
	EXPECT_EQ_U64(good, cpu.rip);
}

static void test_emulate_jcc(void)
{
	unsigned int cc;

	for (cc = 0; cc < 16; cc++) {
		struct poke_emu jcc = { .kind = POKE_EMU_JCC, .cond = (uint8_t)cc,
					.len = 6, .target = 0x400100 };
		uint64_t flags[2] = { 0, POKE_FLAG_CF | POKE_FLAG_PF | POKE_FLAG_ZF |
					 POKE_FLAG_SF | POKE_FLAG_OF };
		unsigned int k;

		for (k = 0; k < 2; k++) {
			struct poke_cpu cpu = { .rip = SITE + 1, .rsp = FAKE_BASE + 64,
						.rflags = flags[k] | 2 };
			uint64_t exp = poke_cond_true((uint8_t)cc, flags[k]) ?
				       0x400100 : SITE + 6;

			EXPECT_EQ(poke_emulate(&jcc, SITE, &cpu, &fake_mem), 0);
			EXPECT_EQ_U64(exp, cpu.rip);
			EXPECT_EQ_U64(FAKE_BASE + 64, cpu.rsp);
		}
	}
}

/*
 * A LOOP with a 67 prefix counts in ECX and writes it as ECX: RCX's upper
 * half cleared, as the real instruction does in the lab (test_lab_loop
 * found the emulation keeping it); JECXZ looks at ECX only, changing
 * nothing.
 */
static void test_emulate_loop_ecx(void)
{
	struct poke_emu loop32 = { .kind = POKE_EMU_LOOP, .len = 3, .cond = 2, .asize = 4,
				   .target = 0x402000 };
	struct poke_emu loop64 = loop32, jecxz = loop32;
	struct kvm_regs r;

	loop64.asize = 8;
	loop64.len = 2;
	jecxz.cond = 3;
	memset(&r, 0, sizeof(r));
	r.rcx = 0x100000001ull;
	EXPECT_EQ(poke_emulate_regs(&loop32, SITE, &r, &fake_mem), 0);
	EXPECT_EQ_U64(0, r.rcx);
	EXPECT_EQ_U64(SITE + 3, r.rip);
	r.rcx = 0x500000002ull;
	EXPECT_EQ(poke_emulate_regs(&loop32, SITE, &r, &fake_mem), 0);
	EXPECT_EQ_U64(1, r.rcx);
	EXPECT_EQ_U64(0x402000, r.rip);
	r.rcx = 0x100000001ull;
	EXPECT_EQ(poke_emulate_regs(&loop64, SITE, &r, &fake_mem), 0);
	EXPECT_EQ_U64(0x100000000ull, r.rcx);
	EXPECT_EQ_U64(0x402000, r.rip);
	r.rcx = 0x700000000ull;
	EXPECT_EQ(poke_emulate_regs(&jecxz, SITE, &r, &fake_mem), 0);
	EXPECT_EQ_U64(0x700000000ull, r.rcx);
	EXPECT_EQ_U64(0x402000, r.rip);
}

TEST_SUITE(patch_emulate, "patch_emulate", false,
	   TEST(test_cond_all_flags),
	   TEST(test_cond_jng_jnle),
	   TEST(test_emulate_jmp_and_nop),
	   TEST(test_emulate_call_ret),
	   TEST(test_emulate_stack_fault), TEST(test_emulate_ret_noncanonical),
	   TEST(test_emulate_jcc), TEST(test_emulate_loop_ecx))
