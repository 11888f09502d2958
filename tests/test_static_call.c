// SPDX-License-Identifier: MIT
/*
 * test_static_call.c - the static-call tables read from the image (no
 * KVM): sc_op found with its sites and targets; broken copies refused by
 * name.
 */
#include <stdlib.h>
#include <string.h>

#include "static_call.h"
#include "symtab.h"
#include "testlib.h"

struct sc_fix {
	struct elf_section sites, targets, text;
	struct symtab *st;
};

static bool sfix_load(struct sc_fix *f)
{
	char msg[256];

	memset(f, 0, sizeof(*f));
	f->st = symtab_load(testlib_image(), msg, sizeof(msg));
	EXPECT_TRUE_MSG(f->st != NULL, "%s", msg);
	EXPECT_EQ(0, elf_section_read(testlib_image(), VMPOKE_SEC_SC_SITES, &f->sites, msg,
				      sizeof(msg)));
	EXPECT_EQ(0, elf_section_read(testlib_image(), VMPOKE_SEC_SC_TARGETS, &f->targets, msg,
				      sizeof(msg)));
	EXPECT_EQ(0, elf_section_read(testlib_image(), ".text", &f->text, msg, sizeof(msg)));
	return f->st && f->sites.data && f->targets.data && f->text.data;
}

static void sfix_free(struct sc_fix *f)
{
	free(f->sites.data);
	free(f->targets.data);
	free(f->text.data);
	symtab_free(f->st);
}

static int sparse(struct sc_fix *f, char *msg, size_t len)
{
	struct sc_table *t = NULL;
	int ret = sc_table_parse(&f->sites, &f->targets, &f->text, f->st, &t, msg, len);

	sc_table_free(t);
	return ret;
}

static void test_sc_image(void)
{
	struct sc_table *t = NULL;
	const struct sc_call *c;
	struct sc_fix f;
	char msg[256];
	size_t tails = 0;

	if (!sfix_load(&f))
		goto out;
	EXPECT_EQ(0, sc_table_parse(&f.sites, &f.targets, &f.text, f.st, &t, msg, sizeof(msg)));
	c = sc_call_find(t, "sc_op");
	EXPECT_NOT_NULL_FATAL(c);
	EXPECT_EQ_U64(3, c->nr_sites);
	EXPECT_EQ_U64(3, c->nr_targets);
	EXPECT_EQ(c->tramp, symtab_find(f.st, "__SCT__sc_op")->addr);
	EXPECT_EQ(c->key, symtab_find(f.st, "__SCK__sc_op")->addr);
	for (size_t i = 0; i < c->nr_sites; i++)
		tails += c->sites[i].tail;
	EXPECT_EQ_U64(1, tails);
	EXPECT_NULL(sc_call_find(t, "nope"));
out:
	sc_table_free(t);
	sfix_free(&f);
}

static void test_sc_refusals_parse(void)
{
	const struct sym *tr;
	struct sc_fix f;
	char msg[512];
	uint8_t save;
	int32_t v;

	if (!sfix_load(&f))
		goto out;
	tr = symtab_find(f.st, "__SCT__sc_op");
	/* the trampoline's signature */
	save = f.text.data[tr->addr - f.text.addr + 6];
	f.text.data[tr->addr - f.text.addr + 6] = 0x0b;
	EXPECT_NE(0, sparse(&f, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "__SCT__sc_op: no signature 0f b9 cc at +5");
	f.text.data[tr->addr - f.text.addr + 6] = save;
	/* a site moved one byte: not a CALL/JMP form */
	memcpy(&v, f.sites.data, 4);
	v += 1;
	memcpy(f.sites.data, &v, 4);
	EXPECT_NE(0, sparse(&f, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, VMPOKE_SEC_SC_SITES "[0] (site ");
	v -= 1;
	memcpy(f.sites.data, &v, 4);
	/* a site whose key is no key */
	memcpy(&v, f.sites.data + 4, 4);
	v += 64;
	memcpy(f.sites.data + 4, &v, 4);
	EXPECT_NE(0, sparse(&f, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "is no __SCK__ key");
	v -= 64;
	memcpy(f.sites.data + 4, &v, 4);
	/* a target that is not a function start */
	memcpy(&v, f.targets.data + 4, 4);
	v += 1;
	memcpy(f.targets.data + 4, &v, 4);
	EXPECT_NE(0, sparse(&f, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, VMPOKE_SEC_SC_TARGETS "[0]: ");
	EXPECT_STR_HAS(msg, "is not the start of a function");
	v -= 1;
	memcpy(f.targets.data + 4, &v, 4);
	EXPECT_EQ(0, sparse(&f, msg, sizeof(msg)));
out:
	sfix_free(&f);
}

/* Entry i of .static_call_sites pointed at addr (its key kept), TAIL or not. */
static void site_point(struct sc_fix *f, size_t i, uint64_t addr, int32_t tail)
{
	int32_t v = (int32_t)(addr - (f->sites.addr + i * 8)), k;

	memcpy(f->sites.data + i * 8, &v, 4);
	memcpy(&k, f->sites.data + i * 8 + 4, 4);
	k = (k & ~VMPOKE_SC_TAIL) | tail;
	memcpy(f->sites.data + i * 8 + 4, &k, 4);
}

/*
 * Found by fuzz_elf: two trampolines with one key (two __SCT__ symbols of
 * one name), a site listed twice, or a site inside a trampoline were
 * accepted; sc_call_find() then found either call, and one update undid
 * another's.
 */
static void test_sc_shared_code(void)
{
	struct sc_table *t = NULL;
	struct symtab *orig;
	struct sc_fix f;
	uint8_t save[16];
	char msg[512] = "";
	uint64_t site0;
	int32_t v, k0;

	if (!sfix_load(&f))
		goto out;
	orig = f.st;
	f.st = testlib_syms_renamed(orig, "__SCT__sc_tick", "__SCT__sc_op");
	EXPECT_NE(0, sc_table_parse(NULL, NULL, &f.text, f.st, &t, msg, sizeof(msg)));
	EXPECT_NULL(t);
	EXPECT_STR_HAS(msg, ": shares its key with __SCT__sc_op");
	symtab_free(f.st);
	f.st = orig;
	memcpy(save, f.sites.data, sizeof(save));
	memcpy(&v, f.sites.data, 4);
	memcpy(&k0, f.sites.data + 4, 4);
	site0 = f.sites.addr + (uint64_t)(int64_t)v;
	site_point(&f, 1, site0, k0 & VMPOKE_SC_TAIL);
	EXPECT_NE(0, sparse(&f, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "overlaps " VMPOKE_SEC_SC_SITES "[");
	memcpy(f.sites.data, save, sizeof(save));
	site_point(&f, 0, symtab_find(f.st, "__SCT__sc_tick")->addr, VMPOKE_SC_TAIL);
	EXPECT_NE(0, sparse(&f, msg, sizeof(msg)));
	EXPECT_STR_HAS(msg, "the trampoline of sc_tick");
	memcpy(f.sites.data, save, sizeof(save));
	EXPECT_EQ(0, sparse(&f, msg, sizeof(msg)));
out:
	sfix_free(&f);
}

TEST_SUITE(static_call, "static_call", false,
	   TEST(test_sc_image), TEST(test_sc_refusals_parse), TEST(test_sc_shared_code))
