// SPDX-License-Identifier: MIT
/*
 * test_guest_image.c - static checks of the built guest (images/guest.img)
 * against the ABI the VMM and the patcher rely on, without running it:
 *
 *  - the exported tables have the ABI sizes and valid static headers;
 *  - every STT_FUNC symbol has a size, the named functions exist;
 *  - every site's bytes are what its kind says, at an instruction boundary
 *    of the function that contains it, its targets are legal, its
 *    straddle flags are true, and no branch lands inside a MULTI range;
 *  - code that runs at CPL0 (everything reachable from _start by direct
 *    calls and jumps, and all of .entry.text) uses no instruction our KVM
 *    cannot emulate at CPL0 (SSE/x87/MMX registers, int3, int n, ...);
 *  - the IDT's exception stubs live in .entry.text.
 */
#include <fcntl.h>
#include <gelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <capstone/capstone.h>

#include "elf_load.h"
#include "symtab.h"
#include "testlib.h"
#include "vmpoke_abi.h"

#define RAM_SIZE	(64ull << 20)
#define LOW_4K_END	0x200000ull	/* the VMM maps [0, 2 MiB) with 4 KiB pages */

struct gimg {
	uint8_t *ram;
	struct symtab *st;
	csh cs;
	uint64_t entry_start, entry_end;
};

static int gimg_open(struct gimg *g)
{
	struct elf_image img;
	char err[256];
	const struct sym *s;

	memset(g, 0, sizeof(*g));
	g->ram = calloc(1, RAM_SIZE);
	if (!g->ram)
		return -1;
	if (elf_load(testlib_image(), g->ram, RAM_SIZE, VMPOKE_LOW_RESERVED_END,
		     &img, err, sizeof(err))) {
		fprintf(stderr, "\n  %s\n", err);
		return -1;
	}
	g->st = symtab_load(testlib_image(), err, sizeof(err));
	if (!g->st) {
		fprintf(stderr, "\n  %s\n", err);
		return -1;
	}
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &g->cs) != CS_ERR_OK)
		return -1;
	cs_option(g->cs, CS_OPT_DETAIL, CS_OPT_ON);
	s = symtab_find(g->st, VMPOKE_SYM_ENTRY_START);
	g->entry_start = s ? s->addr : 0;
	s = symtab_find(g->st, VMPOKE_SYM_ENTRY_END);
	g->entry_end = s ? s->addr : 0;
	return 0;
}

static void gimg_close(struct gimg *g)
{
	if (g->cs)
		cs_close(&g->cs);
	symtab_free(g->st);
	free(g->ram);
}

static const struct sym *need_sym(struct gimg *g, const char *name)
{
	const struct sym *s = symtab_find(g->st, name);

	if (!s)
		fprintf(stderr, "\n  guest image has no symbol %s\n", name);
	EXPECT_NOT_NULL(s);
	return s;
}

static const void *at(struct gimg *g, uint64_t addr, uint64_t len)
{
	if (addr >= RAM_SIZE || len > RAM_SIZE - addr)
		return NULL;
	return g->ram + addr;
}

/* Decode one instruction at addr (inside fn_end), or NULL. */
static cs_insn *decode1(struct gimg *g, uint64_t addr, uint64_t fn_end)
{
	const uint8_t *code = at(g, addr, fn_end - addr);
	cs_insn *insn = NULL;

	if (!code || addr >= fn_end ||
	    cs_disasm(g->cs, code, fn_end - addr, addr, 1, &insn) != 1)
		return NULL;
	return insn;
}

/* The immediate branch target of a jmp/jcc/call, or 0. */
static uint64_t branch_target(csh cs, const cs_insn *in)
{
	const cs_x86 *x = &in->detail->x86;

	if (!cs_insn_group(cs, in, CS_GRP_JUMP) && !cs_insn_group(cs, in, CS_GRP_CALL))
		return 0;
	if (x->op_count != 1 || x->operands[0].type != X86_OP_IMM)
		return 0;
	return (uint64_t)x->operands[0].imm;
}

/* Is addr an instruction boundary of fn (linear decode, no data in text)? */
static int is_boundary(struct gimg *g, const struct sym *fn, uint64_t addr)
{
	uint64_t pc = fn->addr, end = fn->addr + fn->size;

	while (pc < end && pc < addr) {
		cs_insn *in = decode1(g, pc, end);

		if (!in)
			return 0;
		pc += in->size;
		cs_free(in, 1);
	}
	return pc == addr;
}

static const struct sym *func_of(struct gimg *g, uint64_t addr)
{
	uint64_t off;
	const struct sym *s = symtab_lookup(g->st, addr, &off);

	return s && (s->type == 'T' || s->type == 't') && off < s->size ? s : NULL;
}

static void test_guest_tables(void)
{
	struct gimg g;
	const struct sym *s;
	const struct vmpoke_task_table *tt;
	const struct vmpoke_site_table *sites;

	EXPECT_EQ_FATAL(gimg_open(&g), 0);
	s = need_sym(&g, VMPOKE_SYM_TASKS);
	if (s) {
		EXPECT_EQ_U64(sizeof(struct vmpoke_task_table), s->size);
		tt = at(&g, s->addr, sizeof(*tt));
		EXPECT_NOT_NULL_FATAL(tt);
		EXPECT_EQ_U64(VMPOKE_TASKS_MAGIC, tt->magic);
		EXPECT_EQ_U64(VMPOKE_ABI_VERSION, tt->version);
		EXPECT_EQ_U64(sizeof(struct vmpoke_task), tt->task_size);
		EXPECT_EQ_U64(VMPOKE_MAX_VCPUS * VMPOKE_MAX_TASKS, tt->capacity);
	}
	s = need_sym(&g, VMPOKE_SYM_PERCPU);
	if (s)
		EXPECT_EQ_U64(sizeof(struct vmpoke_percpu) * VMPOKE_MAX_VCPUS, s->size);
	s = need_sym(&g, VMPOKE_SYM_SITES);
	if (s) {
		EXPECT_EQ_U64(sizeof(struct vmpoke_site_table), s->size);
		sites = at(&g, s->addr, sizeof(*sites));
		EXPECT_NOT_NULL_FATAL(sites);
		EXPECT_EQ_U64(VMPOKE_SITES_MAGIC, sites->magic);
		EXPECT_EQ_U64(VMPOKE_ABI_VERSION, sites->version);
		EXPECT_GE(sites->nr_sites, 10);
		EXPECT_LE(sites->nr_sites, VMPOKE_MAX_SITES);
	}
	EXPECT_TRUE(g.entry_start);
	EXPECT_LT(g.entry_start, g.entry_end);
	gimg_close(&g);
}

/* Every STT_FUNC has a size; the functions the ABI and tests name exist. */
static void test_guest_func_symbols(void)
{
	static const char *const names[] = {
		"_start", "guest_bp_entry", "guest_bp_handler", "guest_db_entry",
		"guest_timer_entry", "guest_fault_common", "user_check_fail",
		"user_ud_crash", "user_pf_crash", "user_int3",
		"site_nop5_a", "site_nop5_b", "site_nop2_a", "site_nop2_b",
		"site_call_a", "site_call_b", "site_jcc_a", "site_jcc_b",
		"site_multi_a", "site_multi_b", "site_multi_c", "site_multi_a_alt",
		"site_multi_b_alt", "site_multi_c_alt", "callee_v1", "callee_v2", "callee_v3",
	};
	unsigned int found[sizeof(names) / sizeof(names[0])] = { 0 };
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	Elf *e;
	int fd;
	size_t i, k;

	elf_version(EV_CURRENT);
	fd = open(testlib_image(), O_RDONLY);
	EXPECT_TRUE_FATAL(fd >= 0);
	e = elf_begin(fd, ELF_C_READ, NULL);
	EXPECT_NOT_NULL_FATAL(e);
	while ((scn = elf_nextscn(e, scn))) {
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB)
			continue;
		d = elf_getdata(scn, NULL);
		for (i = 0; d && sh.sh_entsize && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Sym sym;
			const char *n;

			if (!gelf_getsym(d, (int)i, &sym) ||
			    GELF_ST_TYPE(sym.st_info) != STT_FUNC)
				continue;
			n = elf_strptr(e, sh.sh_link, sym.st_name);
			if (!sym.st_size)
				fprintf(stderr, "\n  function %s has no size\n", n ? n : "?");
			EXPECT_GT(sym.st_size, 0);
			for (k = 0; n && k < sizeof(names) / sizeof(names[0]); k++)
				if (!strcmp(n, names[k]))
					found[k]++;
		}
	}
	for (k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		if (found[k] != 1)
			fprintf(stderr, "\n  %s: %u STT_FUNC symbols, want 1\n",
				names[k], found[k]);
		EXPECT_EQ(found[k], 1);
	}
	elf_end(e);
	close(fd);
}

static uint32_t straddle_flags(uint64_t a, uint32_t len)
{
	uint64_t l = a + len - 1;

	return (a / 8 != l / 8 ? VMPOKE_SITEF_STRADDLE_8 : 0) |
	       (a / 64 != l / 64 ? VMPOKE_SITEF_STRADDLE_LINE : 0) |
	       (a / 4096 != l / 4096 ? VMPOKE_SITEF_STRADDLE_PAGE : 0);
}

static int32_t rel32(const uint8_t *p)
{
	int32_t r;

	memcpy(&r, p, 4);
	return r;
}

/* Nothing in fn branches into (a, a + len). */
static int no_branch_inside(struct gimg *g, const struct sym *fn,
			    uint64_t a, uint32_t len)
{
	uint64_t pc = fn->addr, end = fn->addr + fn->size, t;

	while (pc < end) {
		cs_insn *in = decode1(g, pc, end);

		if (!in)
			return 0;
		t = branch_target(g->cs, in);
		pc += in->size;
		cs_free(in, 1);
		if (t > a && t < a + len)
			return 0;
	}
	return 1;
}

/* MULTI: >= 2 whole instructions cover exactly len; the alt jumps back to a + len. */
static int multi_ok(struct gimg *g, const struct vmpoke_site_desc *d)
{
	const struct sym *alt = func_of(g, d->target[0]);
	uint64_t pc = d->addr, end = d->addr + d->len, t;
	unsigned int n = 0;
	int back = 0;

	while (pc < end) {
		cs_insn *in = decode1(g, pc, end);

		if (!in)
			return 0;
		pc += in->size;
		n++;
		cs_free(in, 1);
	}
	if (pc != end || n < 2 || d->len < 5 || !alt || alt->addr != d->target[0])
		return 0;
	for (pc = alt->addr; pc < alt->addr + alt->size;) {
		cs_insn *in = decode1(g, pc, alt->addr + alt->size);

		if (!in)
			return 0;
		t = branch_target(g->cs, in);
		if (in->id == X86_INS_JMP && t == end)
			back = 1;
		pc += in->size;
		cs_free(in, 1);
	}
	return back;
}

static int site_ok(struct gimg *g, const struct vmpoke_site_desc *d, char *why,
		   size_t len)
{
	const struct sym *fn = func_of(g, d->addr), *tf;
	const uint8_t *b = at(g, d->addr, d->len);
	uint64_t next = d->addr + d->len;
	uint32_t i;

#define FAIL(...) do { snprintf(why, len, __VA_ARGS__); return 0; } while (0)
	if (!fn || !b || d->addr + d->len > fn->addr + fn->size)
		FAIL("not inside one function");
	if (g->entry_start <= d->addr && d->addr < g->entry_end)
		FAIL("inside .entry.text");
	if (next > LOW_4K_END)
		FAIL("outside the 4 KiB-mapped first 2 MiB");
	if (!is_boundary(g, fn, d->addr))
		FAIL("not an instruction boundary of %s", fn->name);
	if (d->nr_targets < 1 || d->nr_targets > 4)
		FAIL("nr_targets %u", d->nr_targets);
	if (d->flags != straddle_flags(d->addr, d->len))
		FAIL("flags 0x%x, true straddles 0x%x", d->flags,
		     straddle_flags(d->addr, d->len));
	for (i = 0; i < d->nr_targets; i++) {
		tf = func_of(g, d->target[i]);
		if (!tf || !is_boundary(g, tf, d->target[i]))
			FAIL("target[%u] is not an instruction boundary", i);
		if (d->kind != VMPOKE_SITE_CALL32 && d->kind != VMPOKE_SITE_MULTI &&
		    tf != fn)
			FAIL("target[%u] leaves %s", i, fn->name);
		if (d->kind == VMPOKE_SITE_CALL32 && tf->addr != d->target[i])
			FAIL("target[%u] is not a function entry", i);
	}
	switch (d->kind) {
	case VMPOKE_SITE_NOP5_JMP32:
		if (d->len != 5 || memcmp(b, "\x0f\x1f\x44\x00\x00", 5))
			FAIL("not a NOP5");
		break;
	case VMPOKE_SITE_NOP2_JMP8:
		if (d->len != 2 || memcmp(b, "\x66\x90", 2))
			FAIL("not a NOP2");
		if ((int64_t)(d->target[0] - next) < -128 ||
		    (int64_t)(d->target[0] - next) > 127)
			FAIL("target out of rel8 reach");
		break;
	case VMPOKE_SITE_CALL32:
		if (d->len != 5 || b[0] != 0xe8 || next + rel32(b + 1) != d->target[0])
			FAIL("not CALL rel32 to target[0]");
		break;
	case VMPOKE_SITE_JCC32:
		if (d->len != 6 || b[0] != 0x0f || (b[1] & 0xf0) != 0x80 ||
		    next + rel32(b + 2) != d->target[0])
			FAIL("not Jcc rel32 to target[0]");
		break;
	case VMPOKE_SITE_MULTI:
		if (!multi_ok(g, d))
			FAIL("not >= 2 instructions of >= 5 bytes with an alt block jumping back");
		if (!no_branch_inside(g, fn, d->addr, d->len))
			FAIL("a branch of %s lands inside the range", fn->name);
		break;
	default:
		FAIL("unknown kind %u", d->kind);
	}
	return 1;
#undef FAIL
}

static void test_guest_sites(void)
{
	struct gimg g;
	const struct sym *s;
	const struct vmpoke_site_table *t;
	unsigned int kinds[VMPOKE_SITE_MULTI + 1] = { 0 }, k;
	uint32_t i, flags = 0;
	char why[160];

	EXPECT_EQ_FATAL(gimg_open(&g), 0);
	s = need_sym(&g, VMPOKE_SYM_SITES);
	t = s ? at(&g, s->addr, sizeof(*t)) : NULL;
	EXPECT_NOT_NULL_FATAL(t);
	EXPECT_TRUE_FATAL(t->nr_sites <= VMPOKE_MAX_SITES);
	for (i = 0; i < t->nr_sites; i++) {
		const struct vmpoke_site_desc *d = &t->sites[i];
		char sym[128];

		if (!site_ok(&g, d, why, sizeof(why)))
			fprintf(stderr, "\n  site %u at %s: %s\n", i,
				symtab_format(g.st, d->addr, sym, sizeof(sym)), why);
		EXPECT_TRUE(site_ok(&g, d, why, sizeof(why)));
		if (d->kind <= VMPOKE_SITE_MULTI)
			kinds[d->kind]++;
		flags |= d->flags;
	}
	for (k = VMPOKE_SITE_NOP5_JMP32; k <= VMPOKE_SITE_MULTI; k++)
		EXPECT_GE(kinds[k], 2);
	EXPECT_EQ_U64(VMPOKE_SITEF_STRADDLE_8 | VMPOKE_SITEF_STRADDLE_LINE |
		      VMPOKE_SITEF_STRADDLE_PAGE, flags);
	gimg_close(&g);
}

/* Registers and instructions our KVM cannot run at CPL0 (docs/design.md, Platform facts). */
static const char *cpl0_forbidden(const cs_insn *in)
{
	static const char *const bad_mn[] = {
		"int3", "int", "int1", "into", "syscall", "sysenter", "popcnt",
		"cmpxchg16b", "andn", "invpcid", "rdtscp", "xgetbv", "stac",
		"clac", "vmcall",
	};
	static const char *const bad_reg[] = { "xmm", "ymm", "zmm", "st(", "mm" };
	size_t i;

	for (i = 0; i < sizeof(bad_mn) / sizeof(bad_mn[0]); i++)
		if (!strcmp(in->mnemonic, bad_mn[i]))
			return bad_mn[i];
	for (i = 0; i < sizeof(bad_reg) / sizeof(bad_reg[0]); i++)
		if (strstr(in->op_str, bad_reg[i]))
			return bad_reg[i];
	if (in->mnemonic[0] == 'f' && strcmp(in->mnemonic, "fxsave") &&
	    strcmp(in->mnemonic, "fxrstor"))
		return "x87";
	return NULL;
}

#define MAX_CPL0_FUNCS	64

/* Check fn and queue the functions it calls or tail-jumps to. */
static void cpl0_scan(struct gimg *g, const struct sym *fn,
		      const struct sym **todo, unsigned int *n)
{
	uint64_t pc = fn->addr, end = fn->addr + fn->size, t;
	const struct sym *callee;
	char sym[128];
	unsigned int k;

	/*
	 * A static-call trampoline is one 5-byte JMP (or RET): its signature
	 * 0f b9 cc after it is data no CPU executes, not an int3.
	 */
	if (!strncmp(fn->name, VMPOKE_SC_TRAMP_PREFIX, strlen(VMPOKE_SC_TRAMP_PREFIX)) &&
	    fn->size >= 5)
		end = fn->addr + 5;

	while (pc < end) {
		cs_insn *in = decode1(g, pc, end);
		const char *bad;

		EXPECT_NOT_NULL_FATAL(in);
		bad = cpl0_forbidden(in);
		/*
		 * The one deliberate exception: scenario EMUFAIL's x87 store
		 * exists to make KVM fail emulation.  Nothing else may.
		 */
		if (bad && !strcmp(fn->name, "guest_emulation_failure") &&
		    !strcmp(bad, "x87"))
			bad = NULL;
		if (bad)
			fprintf(stderr, "\n  CPL0 code %s: %s %s (%s)\n",
				symtab_format(g->st, pc, sym, sizeof(sym)),
				in->mnemonic, in->op_str, bad);
		EXPECT_NULL(bad);
		t = branch_target(g->cs, in);
		pc += in->size;
		cs_free(in, 1);
		callee = t ? func_of(g, t) : NULL;
		if (!callee || callee == fn)
			continue;
		for (k = 0; k < *n && todo[k] != callee; k++)
			;
		if (k == *n && *n < MAX_CPL0_FUNCS)
			todo[(*n)++] = callee;
	}
}

static void test_guest_cpl0_code(void)
{
	static const char *const user_fns[] = {
		"site_nop5_a", "site_multi_c", "site_nop5_b", "user_park", "lab_task_main",
	};
	const struct sym *todo[MAX_CPL0_FUNCS], *s, *us, *ue;
	const uint64_t *stubs;
	struct gimg g;
	unsigned int n = 0, i, saw_boot = 0;
	uint64_t off;

	EXPECT_EQ_FATAL(gimg_open(&g), 0);
	s = need_sym(&g, "_start");
	EXPECT_NOT_NULL_FATAL(s);
	todo[n++] = s;
	/* every function in .entry.text runs at CPL0 */
	for (i = 0; i < symtab_count(g.st); i++) {
		s = symtab_at(g.st, i);
		if (s->addr >= g.entry_start && s->addr < g.entry_end &&
		    (s->type == 'T' || s->type == 't') && s->size &&
		    n < MAX_CPL0_FUNCS)
			todo[n++] = s;
	}
	for (i = 0; i < n; i++) {
		cpl0_scan(&g, todo[i], todo, &n);
		saw_boot |= !strcmp(todo[i]->name, "guest_boot");
	}
	EXPECT_TRUE(saw_boot);
	EXPECT_LT(n, MAX_CPL0_FUNCS);
	/* guest.ld follows the ABI: no CPL0 code in the CPL3 task text... */
	us = need_sym(&g, VMPOKE_SYM_USER_TEXT_START);
	ue = need_sym(&g, VMPOKE_SYM_USER_TEXT_END);
	EXPECT_TRUE_FATAL(us && ue && us->addr < ue->addr);
	for (i = 0; i < n; i++)
		EXPECT_TRUE_MSG(todo[i]->addr + todo[i]->size <= us->addr ||
				todo[i]->addr >= ue->addr, "CPL0 code %s lies in the "
				"CPL3 task text", todo[i]->name);
	/* ...and the sites and the task entry points are in it. */
	for (i = 0; i < sizeof(user_fns) / sizeof(user_fns[0]); i++) {
		s = need_sym(&g, user_fns[i]);
		EXPECT_TRUE_MSG(s && s->addr >= us->addr && s->addr + s->size <= ue->addr,
				"%s is not in the CPL3 task text", user_fns[i]);
	}

	/* the IDT's exception vectors enter in .entry.text */
	s = need_sym(&g, "guest_exc_stubs");
	stubs = s ? at(&g, s->addr, 32 * 8) : NULL;
	EXPECT_NOT_NULL_FATAL(stubs);
	for (i = 0; i < 32; i++) {
		EXPECT_GE(stubs[i], g.entry_start);
		EXPECT_LT(stubs[i], g.entry_end);
		EXPECT_NOT_NULL(symtab_lookup(g.st, stubs[i], &off));
	}
	gimg_close(&g);
}

/*
 * The probe targets and the VMM-owned region: every lib_* function is CPL3
 * task text with its lib_calls_ counter; the XOL region is page aligned,
 * inside the image, all INT3, and holds no other symbol.
 */
static void test_guest_probe_abi(void)
{
	static const char *const libs[] = {
		"add", "mul_add", "checksum", "switch", "sum_calls",
	};
	const struct sym *lo, *hi, *fn, *calls, *s;
	const uint8_t *xol;
	struct gimg g;
	char name[64];
	unsigned int i;

	EXPECT_EQ_FATAL(gimg_open(&g), 0);
	lo = need_sym(&g, VMPOKE_SYM_USER_TEXT_START);
	hi = need_sym(&g, VMPOKE_SYM_USER_TEXT_END);
	EXPECT_TRUE_FATAL(lo && hi);
	for (i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		snprintf(name, sizeof(name), "lib_%s", libs[i]);
		fn = need_sym(&g, name);
		snprintf(name, sizeof(name), "lib_calls_%s", libs[i]);
		calls = need_sym(&g, name);
		if (!fn || !calls)
			continue;
		EXPECT_EQ(fn->type, 'T');
		EXPECT_GT(fn->size, 0);
		EXPECT_GE(fn->addr, lo->addr);
		EXPECT_LE(fn->addr + fn->size, hi->addr);
		EXPECT_EQ(calls->size, VMPOKE_MAX_VCPUS * sizeof(uint64_t));
	}
	lo = need_sym(&g, VMPOKE_SYM_XOL_START);
	hi = need_sym(&g, VMPOKE_SYM_XOL_END);
	EXPECT_TRUE_FATAL(lo && hi);
	EXPECT_EQ(lo->addr % 4096, 0);
	EXPECT_GT(hi->addr, lo->addr);
	EXPECT_LE(hi->addr - lo->addr, VMPOKE_XOL_MAX_SIZE);
	xol = at(&g, lo->addr, hi->addr - lo->addr);
	EXPECT_NOT_NULL_FATAL(xol);
	for (i = 0; i < hi->addr - lo->addr; i++)
		if (xol[i] != 0xcc)
			break;
	EXPECT_TRUE_MSG(i == hi->addr - lo->addr, "XOL byte %u is 0x%02x, not INT3",
			i, i < hi->addr - lo->addr ? xol[i] : 0);
	for (i = 0; i < symtab_count(g.st); i++) {
		s = symtab_at(g.st, i);
		if (s != lo && s != hi && s->addr >= lo->addr && s->addr < hi->addr)
			EXPECT_TRUE_MSG(false, "symbol %s inside the XOL region", s->name);
	}
	gimg_close(&g);
}

TEST_SUITE(guest_image, "guest_image", false,
	   TEST(test_guest_tables), TEST(test_guest_func_symbols),
	   TEST(test_guest_sites), TEST(test_guest_cpl0_code),
	   TEST(test_guest_probe_abi))
