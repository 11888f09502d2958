// SPDX-License-Identifier: MIT
/*
 * test_trap_frame.c - trap_doorbell()'s read, emulate and write-back on a
 * guest stack built in a buffer, as the CPU and our #BP stub leave it: the
 * frame pushed after aligning RSP to 16 (64-bit mode), the stub's %rax
 * pushed below it.  The hook is the patcher's real CALL emulation.  Then
 * the stub's "pop %rax; iretq" is replayed from where the VMM says the
 * stub's %rsp is, and the callee's RET from the callee's %rsp.
 */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "../patcher/patcher_internal.h"
#include "../vmm/vmm_internal.h"

#define RAM_SIZE	(4ull << 20)
#define CR3		0x1000ull
#define SITE		0x300000ull	/* a CALL site, 5 bytes */
#define CALLEE		0x300400ull
#define SAVED_RAX	0x1234567887654321ull

static struct guest_ram ram;

struct emu_ctx {
	struct poke_emu emu;
	struct poke_mem mem;
};

static int mem_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
	return gva_read(ctx, CR3, gva, buf, len);
}

static int mem_write(void *ctx, uint64_t gva, const void *buf, size_t len)
{
	return gva_write(ctx, CR3, gva, buf, len);
}

/* What traptable_hook() does for a live CALL site. */
static enum vmm_trap_verdict call_hook(void *ctx, struct vmm_trap *t)
{
	struct emu_ctx *e = ctx;
	struct poke_cpu cpu = { .rip = t->rip, .rsp = t->rsp, .rflags = t->rflags };

	EXPECT_EQ(t->addr, SITE);
	EXPECT_EQ(poke_emulate(&e->emu, t->addr, &cpu, &e->mem), 0);
	t->rip = cpu.rip;
	t->rsp = cpu.rsp;
	return VMM_TRAP_HANDLED;
}

static uint64_t rd64(uint64_t gva)
{
	uint64_t v = 0;

	EXPECT_EQ(gva_read(&ram, CR3, gva, &v, 8), 0);
	return v;
}

static void wr64(uint64_t gva, uint64_t v)
{
	EXPECT_EQ(gva_write(&ram, CR3, gva, &v, 8), 0);
}

static void ram_setup(void)
{
	uint64_t e;

	free(ram.host);
	ram.size = RAM_SIZE;
	ram.host = calloc(1, RAM_SIZE);
	EXPECT_NOT_NULL_FATAL(ram.host);
	e = 0x2000 | 7;
	memcpy(ram.host + 0x1000, &e, 8);		/* PML4[0] -> PDPT */
	e = 0x3000 | 7;
	memcpy(ram.host + 0x2000, &e, 8);		/* PDPT[0] -> PD */
	for (uint64_t i = 0; i < 2; i++) {		/* 2 x 2 MiB identity, RW */
		e = (i << 21) | 0x80 | 3;
		memcpy(ram.host + 0x3000 + 8 * i, &e, 8);
	}
}

/*
 * A CPL0 CALL site hit with interrupted %rsp = rsp: the callee must see the
 * return address at its [%rsp], and the stub must resume with its %rax and
 * an intact frame.
 */
static void doorbell_call_at(uint64_t rsp, bool expect_gap)
{
	struct emu_ctx e = {
		.emu = { .kind = POKE_EMU_CALL, .len = 5, .target = CALLEE },
		.mem = { mem_read, mem_write, &ram },
	};
	struct vmm_trap t = { .path = VMM_TRAP_DOORBELL };
	uint64_t frame = (rsp & ~15ull) - VMPOKE_CPL0_FRAME_SIZE, stub_rsp = frame - 8, new_rsp;
	struct kvm_regs stub = { .rsp = stub_rsp, .rax = 0xe0 };
	bool set;

	ram_setup();
	wr64(frame, SITE + 1);		/* rip after the int3 */
	wr64(frame + 8, 0x8);		/* cs: CPL0 */
	wr64(frame + 16, 0x2);		/* rflags */
	wr64(frame + 24, rsp);
	wr64(frame + 32, 0x10);		/* ss */
	wr64(stub_rsp, SAVED_RAX);	/* the stub's push %rax */
	EXPECT_EQ_FATAL(trap_doorbell_frame(&ram, CR3, &stub, &t, call_hook, &e, &set), TRAP_DB_RESUME);
	new_rsp = stub.rsp;
	EXPECT_EQ(set, expect_gap);
	EXPECT_EQ(stub.rax, 0xe0);	/* the stub's own %rax: the IN's */
	EXPECT_EQ(t.cpl, 0);
	EXPECT_TRUE_MSG((new_rsp != stub_rsp) == expect_gap, "rsp 0x%llx: stub moved %d",
			(unsigned long long)rsp, new_rsp != stub_rsp);
	/* The stub: pop %rax; iretq. */
	EXPECT_EQ_U64(SAVED_RAX, rd64(new_rsp));
	EXPECT_EQ_U64(CALLEE, rd64(new_rsp + 8));
	EXPECT_EQ_U64(0x8, rd64(new_rsp + 16));
	EXPECT_EQ_U64(0x2, rd64(new_rsp + 24));
	EXPECT_EQ_U64(rsp - 8, rd64(new_rsp + 32));
	EXPECT_EQ_U64(0x10, rd64(new_rsp + 40));
	/* The callee's RET. */
	EXPECT_EQ_U64(SITE + 5, rd64(rsp - 8));
}

/* 16-aligned: the frame's SS slot is rsp - 8, where CALL pushes. */
static void test_doorbell_cpl0_call_aligned16(void)
{
	doorbell_call_at(0x200000, true);
}

/* 8-aligned: the CPU's alignment left rsp - 8 free, yet the stub's stack moves too. */
static void test_doorbell_cpl0_call_aligned8(void)
{
	doorbell_call_at(0x200008, false);
}

/* From CPL3 the frame is on RSP0, far from the user stack: nothing moves. */
static void test_doorbell_cpl3_call(void)
{
	struct emu_ctx e = {
		.emu = { .kind = POKE_EMU_CALL, .len = 5, .target = CALLEE },
		.mem = { mem_read, mem_write, &ram },
	};
	struct vmm_trap t = { .path = VMM_TRAP_DOORBELL };
	uint64_t frame = 0x100000 - VMPOKE_CPL0_FRAME_SIZE;
	struct kvm_regs stub = { .rsp = frame - 8 };
	bool set;

	ram_setup();
	wr64(frame, SITE + 1);
	wr64(frame + 8, 0x2b);
	wr64(frame + 24, 0x180000);
	wr64(frame + 32, 0x23);
	EXPECT_EQ_FATAL(trap_doorbell_frame(&ram, CR3, &stub, &t, call_hook, &e, &set), TRAP_DB_RESUME);
	EXPECT_EQ(t.cpl, 3);
	EXPECT_FALSE(set);
	EXPECT_EQ_U64(frame - 8, stub.rsp);
	EXPECT_EQ_U64(CALLEE, rd64(frame));
	EXPECT_EQ_U64(0x180000 - 8, rd64(frame + 24));
	EXPECT_EQ_U64(SITE + 5, rd64(0x180000 - 8));
}

TEST_SUITE(trap_frame, "trap_frame", false,
	   TEST(test_doorbell_cpl0_call_aligned16), TEST(test_doorbell_cpl0_call_aligned8),
	   TEST(test_doorbell_cpl3_call))
