// SPDX-License-Identifier: MIT
/*
 * fuzz_decode.c - target fuzz_decode: instruction bytes through site
 * preparation, the decoder and the emulator.
 *
 * Input: a small header (see struct dec_in) then the bytes of one
 * "function".  Each run
 *  1. calls the pure parts on the raw values: decode_scan_function(),
 *     decode_frame_offsets() (the same bytes as a guest's #BP stub),
 *     decode_one(), decode_whole(), and poke_emulate() over a fuzzed
 *     register file and a fuzzed stack window; then the same bytes as a
 *     probed instruction: probe_insn_decode(), poke_emulate_regs(), the
 *     relocator and the probe's out-of-line slot (fuzz_relocate.c), and the
 *     bytes as a function whose displaced region an optimized probe
 *     relocates (relocate_region(), fuzz_region.c);
 *  2. runs the real poke_site_prepare() against a VM without KVM: a struct
 *     vm that holds only guest RAM (identity page tables as vmpoke_abi.h
 *     lays them out, the function at VMPOKE_IMAGE_BASE) and a symbol table
 *     naming the function;
 *  3. when the site is accepted, publishes it and enters the real trap hook
 *     (traptable_hook) as a vCPU hitting its INT3 would, with the fuzzed
 *     registers and stack bytes in guest RAM.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "symtab.h"
#include "vmpoke_abi.h"
#include "../../patcher/patcher_internal.h"
#include "../../vmm/vmm_internal.h"

#define T		"fuzz_decode"
#define DEC_RAM_SIZE	(2ull << 20)		/* the 4 KiB-mapped region */
#define DEC_FN_GPA	VMPOKE_IMAGE_BASE
#define DEC_FN_MAX	(64u << 10)
#define DEC_STACK_GPA	0x180000ull		/* stack window in RAM */
#define DEC_STACK_LEN	32

enum {
	DEC_EMULATABLE	= 1 << 0,
	DEC_EMULATE	= 1 << 1,	/* static_call style: separate emulate */
	DEC_OLD		= 1 << 2,	/* pass the expected old bytes */
	DEC_ENTRY_TEXT	= 1 << 3,	/* entry-text symbols around the site */
	DEC_RSP_RAW	= 1 << 4,	/* rsp anywhere, not in the stack window */
	DEC_LIVE	= 1 << 5,	/* another live site in the function */
	DEC_FAR		= 1 << 6,	/* relocate anywhere, not within 2^31 */
};

struct dec_in {
	unsigned int flags;
	size_t len;			/* 0..19: the refusals of 0 and >16 too */
	uint64_t addr, off, off2;
	uint64_t rsp, rflags;
	uint8_t stack[DEC_STACK_LEN];
	uint8_t new[POKE_MAX_LEN], emulate[POKE_MAX_LEN];
	const uint8_t *code;
	size_t size;
};

static void dec_parse(const uint8_t *data, size_t size, struct dec_in *d)
{
	struct fuzz_in in = { data, size };
	size_t i;

	d->flags = (unsigned int)fuzz_take(&in, 1);
	d->len = fuzz_take(&in, 1) % 20;
	d->off = fuzz_take(&in, 2);
	d->off2 = fuzz_take(&in, 2);
	d->addr = fuzz_take(&in, 8);
	d->rsp = fuzz_take(&in, 8);
	d->rflags = fuzz_take(&in, 8);
	for (i = 0; i < DEC_STACK_LEN; i++)
		d->stack[i] = (uint8_t)fuzz_take(&in, 1);
	for (i = 0; i < POKE_MAX_LEN; i++)
		d->new[i] = (uint8_t)fuzz_take(&in, 1);
	for (i = 0; i < POKE_MAX_LEN; i++)
		d->emulate[i] = (uint8_t)fuzz_take(&in, 1);
	d->code = in.p;
	d->size = in.left < DEC_FN_MAX ? in.left : DEC_FN_MAX;
}

/* --- 1. the pure parts ------------------------------------------------------ */

/* The stack as the checks expect it: [dec_stack_at, + dec_stack_len). */
static const uint8_t *dec_stack;
static uint64_t dec_stack_at;
static size_t dec_stack_len;

static int dec_mem_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
	(void)ctx;
	if (gva < dec_stack_at || gva - dec_stack_at > dec_stack_len ||
	    len > dec_stack_len - (gva - dec_stack_at))
		return -EFAULT;
	memcpy(buf, dec_stack + (gva - dec_stack_at), len);
	return 0;
}

/* The window is the fuzzer's (const) input: check the range, store nothing. */
static int dec_mem_write(void *ctx, uint64_t gva, const void *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	if (gva < dec_stack_at || gva - dec_stack_at > dec_stack_len ||
	    len > dec_stack_len - (gva - dec_stack_at))
		return -EFAULT;
	return 0;
}

static void dec_check_emulate(const struct poke_emu *emu, uint64_t addr,
			      const struct poke_cpu *in, const struct poke_cpu *out,
			      int ret)
{
	uint64_t next = addr + emu->len, v;

	if (ret) {
		FUZZ_CHECK(T, ret == -EFAULT && out->rip == addr && out->rsp == in->rsp,
			   "a faulting emulation must leave rip at the INT3, rsp as it was");
		FUZZ_CHECK(T, emu->kind == POKE_EMU_CALL || emu->kind == POKE_EMU_RET,
			   "only CALL and RET touch the stack, kind %d faulted", emu->kind);
		return;
	}
	switch (emu->kind) {
	case POKE_EMU_JMP:
		FUZZ_CHECK(T, out->rip == emu->target && out->rsp == in->rsp, "JMP");
		break;
	case POKE_EMU_JCC:
		FUZZ_CHECK(T, out->rip == (poke_cond_true(emu->cond, in->rflags) ?
					   emu->target : next) && out->rsp == in->rsp, "Jcc");
		break;
	case POKE_EMU_CALL:
		FUZZ_CHECK(T, out->rip == emu->target && out->rsp == in->rsp - 8, "CALL");
		break;
	case POKE_EMU_RET:
		FUZZ_CHECK(T, !dec_mem_read(NULL, in->rsp, &v, 8) && out->rip == v &&
			   out->rsp == in->rsp + 8, "RET");
		break;
	default:
		fuzz_fail(T, "emulated kind %d", emu->kind);
	}
}

static void dec_check_scan(const struct dec_in *d)
{
	uint64_t addr = d->addr + d->off, end = addr + d->len;
	struct decode_scan sc;

	if (decode_scan_function(d->code, d->size, d->addr, addr, d->len, &sc))
		fuzz_fail(T, "Capstone did not start");
	FUZZ_CHECK(T, sc.insns <= d->len, "%u instructions in %zu bytes", sc.insns, d->len);
	FUZZ_CHECK(T, !sc.int3_at || (sc.int3_at >= addr && sc.int3_at < end),
		   "INT3 reported outside the range");
	FUZZ_CHECK(T, !sc.call_at || (sc.call_at >= addr && sc.call_at < end),
		   "CALL reported outside the range");
	FUZZ_CHECK(T, !sc.jump_from || (sc.jump_to > addr && sc.jump_to < end),
		   "jump target reported outside the range");
}

/* The same bytes as a #BP stub: where is the frame at each instruction? */
static void dec_check_frame_offsets(const struct dec_in *d)
{
	int32_t *off = malloc(d->size ? d->size * sizeof(*off) : 1);
	uint64_t bell = 1;

	if (!off)
		fuzz_fail(T, "out of memory");
	if (decode_frame_offsets(d->code, d->size, d->addr, off, &bell))
		fuzz_fail(T, "Capstone did not start");
	/* Modulo 2^64: a stub may wrap around the top of the address space. */
	FUZZ_CHECK(T, !bell || bell - d->addr < d->size,
		   "doorbell 0x%llx outside the stub", (unsigned long long)bell);
	FUZZ_CHECK(T, !d->size || off[0] == 0 || off[0] == DECODE_OFF_CONFLICT,
		   "the entry's frame offset is %d", off[0]);
	free(off);
}

static void dec_pure(const struct dec_in *d)
{
	const struct poke_mem mem = { dec_mem_read, dec_mem_write, NULL };
	bool emulatable = d->flags & DEC_EMULATABLE;
	struct poke_cpu in, out;
	struct poke_emu emu;
	enum poke_err err;
	char why[256];
	int ret;

	dec_check_scan(d);
	dec_check_frame_offsets(d);
	why[0] = '\0';
	memset(&emu, 0xa5, sizeof(emu));
	err = decode_one(d->new, d->len, d->addr, emulatable, &emu, why, sizeof(why));
	FUZZ_CHECK(T, err == POKE_OK || why[0], "decode_one refused without a reason");
	why[0] = '\0';
	if (decode_whole(d->new, d->len, d->addr, why, sizeof(why)) != POKE_OK)
		FUZZ_CHECK(T, why[0], "decode_whole refused without a reason");
	if (err != POKE_OK || !emulatable)
		return;
	FUZZ_CHECK(T, emu.kind != POKE_EMU_NONE && emu.len >= 1 && emu.len <= d->len,
		   "accepted an emulation of kind %d, length %u", emu.kind, emu.len);
	in = (struct poke_cpu){ d->addr + 1, d->rsp, d->rflags };
	out = in;
	dec_stack = d->stack;
	dec_stack_len = DEC_STACK_LEN;
	/* Mostly a stack the emulation can use; sometimes none at all. */
	dec_stack_at = d->flags & DEC_RSP_RAW ? d->rflags : d->rsp - 16;
	ret = poke_emulate(&emu, d->addr, &out, &mem);
	dec_check_emulate(&emu, d->addr, &in, &out, ret);
}

/* The same bytes as the instruction under a probe (fuzz_relocate.c). */
static void dec_probe(const struct dec_in *d)
{
	const struct poke_mem mem = { dec_mem_read, dec_mem_write, NULL };
	uint64_t w[8], to;
	struct kvm_regs r;

	/* A register file from the fuzzed stack, new and emulate bytes. */
	memcpy(w, d->stack, 32);
	memcpy(w + 4, d->new, 16);
	memcpy(w + 6, d->emulate, 16);
	r = (struct kvm_regs){
		.rax = w[0], .rcx = w[1], .rdx = w[2], .rbx = w[3], .rsp = d->rsp,
		.rbp = w[4], .rsi = w[5], .rdi = w[6], .r8 = w[7], .r9 = ~w[0],
		.r10 = ~w[1], .r11 = ~w[2], .r12 = ~w[3], .r13 = ~w[4], .r14 = ~w[5],
		.r15 = ~w[6], .rflags = d->rflags,
	};
	dec_stack = d->stack;
	dec_stack_len = DEC_STACK_LEN;
	dec_stack_at = d->rsp - 16;
	/* Slot addresses near the code (in rel32 reach) and anywhere. */
	to = d->flags & DEC_FAR ? d->rflags ^ d->rsp :
	     d->addr + (int64_t)(int32_t)(d->off2 << 16 | d->off) * 16;
	fuzz_decode_probe(d->code, d->size, d->addr, to, &r, &mem);
	fuzz_decode_region(d->code, d->size, d->addr, to, (unsigned int)d->off2);
}

/* --- 2. and 3.: site preparation and the trap hook on a RAM-only VM -------- */

static struct vm dec_vm;
static struct patcher dec_p;

static void dec_vm_init(void)
{
	uint64_t *pml4, *pdpt, *pd, *pt, i;

	if (dec_vm.ram.host)
		return;
	dec_vm.ram.host = calloc(1, DEC_RAM_SIZE);
	if (!dec_vm.ram.host)
		fuzz_fail(T, "out of memory");
	dec_vm.ram.size = DEC_RAM_SIZE;
	pml4 = (uint64_t *)(dec_vm.ram.host + VMPOKE_PML4_GPA);
	pdpt = (uint64_t *)(dec_vm.ram.host + VMPOKE_PDPT_GPA);
	pd = (uint64_t *)(dec_vm.ram.host + VMPOKE_PD_GPA);
	pt = (uint64_t *)(dec_vm.ram.host + VMPOKE_PT_GPA);
	pml4[0] = VMPOKE_PDPT_GPA | 3;
	pdpt[0] = VMPOKE_PD_GPA | 3;
	pd[0] = VMPOKE_PT_GPA | 3;
	for (i = 1; i < 512; i++)	/* page 0 not present, as in the VMM */
		pt[i] = (i << 12) | 3;
	dec_p.vm = &dec_vm;
	pthread_mutex_init(&dec_p.lock, NULL);
	traptable_init(&dec_p.table);
}

static struct symtab *dec_symbols(const struct dec_in *d)
{
	struct sym syms[3] = {
		{ DEC_FN_GPA, d->size, 'T', "fuzz_fn" },
		{ DEC_FN_GPA + d->off2 % (d->size + 1), 0, 'T', VMPOKE_SYM_ENTRY_START },
		{ DEC_FN_GPA + d->off2 % (d->size + 1) + d->len, 0, 'T',
		  VMPOKE_SYM_ENTRY_END },
	};

	return symtab_from_array(syms, d->flags & DEC_ENTRY_TEXT ? 3 : 1);
}

/* One of our sites already live: its INT3 is in RAM, its old bytes in the table. */
static bool dec_live_other(const struct dec_in *d, struct poke_site *other)
{
	uint64_t off2 = d->off2 % (d->size + 1);

	if (!(d->flags & DEC_LIVE) || !d->len || d->len > POKE_MAX_LEN ||
	    off2 + d->len > d->size)
		return false;
	memset(other, 0, sizeof(*other));
	other->addr = DEC_FN_GPA + off2;
	other->len = (uint8_t)d->len;
	memcpy(other->old, d->emulate, d->len);
	if (traptable_add(&dec_p.table, other, 1))
		fuzz_fail(T, "out of memory");
	dec_vm.ram.host[other->addr] = POKE_INT3;
	return true;
}

static void dec_retire(const struct poke_site *site)
{
	if (traptable_remove(&dec_p.table, site, 1))
		fuzz_fail(T, "out of memory");
	traptable_reclaim(&dec_p.table, traptable_mark(&dec_p.table));
}

/* A vCPU hits the INT3 of the live site with the fuzzed registers. */
static void dec_trap(const struct dec_in *d, const struct poke_site *site)
{
	bool raw = d->flags & DEC_RSP_RAW;
	uint64_t rsp = raw ? d->rsp : DEC_STACK_GPA + 16 + (d->rsp & 0xf);
	struct vmm_trap trap = {
		.vm = &dec_vm, .path = VMM_TRAP_DOORBELL, .addr = site->addr,
		.rip = site->addr + 1, .rsp = rsp, .rflags = d->rflags,
	};
	struct poke_cpu in = { site->addr + 1, rsp, d->rflags }, out;
	uint8_t saved = dec_vm.ram.host[site->addr], before[64];
	uint64_t pushed;

	if (traptable_add(&dec_p.table, site, 1))
		fuzz_fail(T, "out of memory");
	dec_vm.ram.host[site->addr] = POKE_INT3;
	/* The stack as it was, for the checks: the hook may push onto it. */
	memcpy(before, dec_vm.ram.host + DEC_STACK_GPA, sizeof(before));
	dec_stack = before;
	dec_stack_at = DEC_STACK_GPA;
	dec_stack_len = sizeof(before);
	FUZZ_CHECK(T, traptable_hook(&trap, &dec_p) == VMM_TRAP_HANDLED,
		   "a live site's INT3 filed as foreign");
	out = (struct poke_cpu){ trap.rip, trap.rsp, d->rflags };
	if (!raw) {
		int ret = 0;

		/* A RET to a non-canonical address is left to the guest's #GP. */
		if (site->emu.kind == POKE_EMU_RET && out.rip == site->addr &&
		    out.rsp == in.rsp) {
			memcpy(&pushed, before + (in.rsp - DEC_STACK_GPA), 8);
			FUZZ_CHECK(T, (uint64_t)((int64_t)(pushed << 16) >> 16) != pushed,
				   "RET to canonical 0x%llx not emulated",
				   (unsigned long long)pushed);
			ret = -EFAULT;
		}
		dec_check_emulate(&site->emu, site->addr, &in, &out, ret);
		if (site->emu.kind == POKE_EMU_CALL) {
			memcpy(&pushed, dec_vm.ram.host + out.rsp, 8);
			FUZZ_CHECK(T, pushed == site->addr + site->len,
				   "CALL pushed 0x%llx", (unsigned long long)pushed);
		}
	} else if (site->emu.kind == POKE_EMU_CALL || site->emu.kind == POKE_EMU_RET) {
		FUZZ_CHECK(T, (out.rip == site->addr && out.rsp == in.rsp) ||
			   out.rsp == in.rsp + (site->emu.kind == POKE_EMU_RET ? 8 : -8),
			   "CALL/RET moved rsp by %lld", (long long)(out.rsp - in.rsp));
	} else {
		dec_check_emulate(&site->emu, site->addr, &in, &out, 0);
	}
	dec_vm.ram.host[site->addr] = saved;
	dec_retire(site);
}

static void dec_prepare(const struct dec_in *d)
{
	uint64_t addr = DEC_FN_GPA + d->off % (d->size + 8);
	struct poke_site site, other;
	const uint8_t *old = NULL;
	bool live;
	enum poke_err err;
	char msg[512];

	dec_vm_init();
	memcpy(dec_vm.ram.host + DEC_FN_GPA, d->code, d->size);
	memcpy(dec_vm.ram.host + DEC_STACK_GPA, d->stack, DEC_STACK_LEN);
	dec_vm.symtab = dec_symbols(d);
	if (!dec_vm.symtab)
		fuzz_fail(T, "out of memory");
	live = dec_live_other(d, &other);
	msg[0] = '\0';
	if (d->flags & DEC_OLD)
		old = addr + d->len <= DEC_FN_GPA + d->size ?
		      d->code + (addr - DEC_FN_GPA) : d->emulate;
	err = poke_site_prepare(&dec_p, &site, addr, old,
				d->new, d->len, d->flags & DEC_EMULATE ? d->emulate : NULL,
				msg, sizeof(msg));
	if (err) {
		FUZZ_CHECK(T, msg[0], "refused (%d) without a message", err);
	} else {
		FUZZ_CHECK(T, site.addr == addr && site.len == d->len &&
			   !memcmp(site.new, d->new, d->len) &&
			   site.emu.kind != POKE_EMU_NONE &&
			   addr + d->len <= DEC_FN_GPA + d->size,
			   "accepted a site that breaks its own rules");
		if (!live)
			dec_trap(d, &site);
	}
	if (live)
		dec_retire(&other);
	symtab_free(dec_vm.symtab);
	dec_vm.symtab = NULL;
	memset(dec_vm.ram.host + DEC_FN_GPA, 0, d->size);
	memset(dec_vm.ram.host + DEC_STACK_GPA, 0, 64);
}

int fuzz_decode_one(const uint8_t *data, size_t size)
{
	struct dec_in d;

	dec_parse(data, size, &d);
	dec_pure(&d);
	dec_probe(&d);
	dec_prepare(&d);
	return 0;
}
