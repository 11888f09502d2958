// SPDX-License-Identifier: MIT
/*
 * test_symtab.c - symbol lookup by name and by address, from an array and
 * from a real ELF built by test_elf_build().
 */
#include <stdlib.h>
#include <string.h>

#include "symtab.h"
#include "testlib.h"

int test_elf_build(char *dir, size_t dirlen, char *path, size_t pathlen);
void test_elf_cleanup(const char *dir);

static const struct sym arr[] = {
	{ 0x1100, 0x40, 'T', "func_b" },
	{ 0x1000, 0x100, 'T', "func_a" },
	{ 0x1000, 0, 'T', "label_at_a" },	/* same address, zero size */
	{ 0x1010, 0, 't', "inner_label" },	/* label inside func_a */
	{ 0x1200, 0, 'T', "lone_label" },	/* no function around it */
	{ 0x2000, 8, 'D', "obj" },
	{ 0x3000, 4, 'd', "dup" },
	{ 0x3100, 4, 'D', "dup" },		/* global wins by name */
};

static void test_symtab_array_by_name(void)
{
	struct symtab *st = symtab_from_array(arr, sizeof(arr) / sizeof(arr[0]));
	const struct sym *s;

	EXPECT_NOT_NULL_FATAL(st);
	EXPECT_EQ_U64(8, symtab_count(st));
	s = symtab_find(st, "func_b");
	EXPECT_NOT_NULL_FATAL(s);
	EXPECT_EQ_U64(0x1100, s->addr);
	EXPECT_EQ_U64(0x40, s->size);
	s = symtab_find(st, "dup");
	EXPECT_NOT_NULL_FATAL(s);
	EXPECT_EQ_U64(0x3100, s->addr);
	EXPECT_NULL(symtab_find(st, "nope"));
	EXPECT_NULL(symtab_find(st, ""));
	/* Names are copies: the table outlives the caller's strings. */
	EXPECT_PTR_NE(symtab_find(st, "obj")->name, arr[5].name);
	/* symtab_at is sorted by address; the sized function first on a tie. */
	for (size_t i = 1; i < symtab_count(st); i++)
		EXPECT_LE(symtab_at(st, i - 1)->addr, symtab_at(st, i)->addr);
	EXPECT_STREQ(symtab_at(st, 0)->name, "func_a");
	EXPECT_NULL(symtab_at(st, 8));
	symtab_free(st);
}

static void test_symtab_array_by_addr(void)
{
	struct symtab *st = symtab_from_array(arr, sizeof(arr) / sizeof(arr[0]));
	const struct sym *s;
	uint64_t off = 99;
	char buf[64];

	EXPECT_NOT_NULL_FATAL(st);
	s = symtab_lookup(st, 0x1000, &off);
	EXPECT_STREQ(s->name, "func_a");
	EXPECT_EQ_U64(0, off);
	/* A label inside a function resolves to the function. */
	s = symtab_lookup(st, 0x1010, &off);
	EXPECT_STREQ(s->name, "func_a");
	EXPECT_EQ_U64(0x10, off);
	s = symtab_lookup(st, 0x10ff, &off);
	EXPECT_STREQ(s->name, "func_a");
	s = symtab_lookup(st, 0x1100, &off);
	EXPECT_STREQ(s->name, "func_b");
	/* A zero-size label names only its own address. */
	s = symtab_lookup(st, 0x1200, &off);
	EXPECT_STREQ(s->name, "lone_label");
	EXPECT_NULL(symtab_lookup(st, 0x1201, &off));
	EXPECT_NULL(symtab_lookup(st, 0x1140, &off));
	EXPECT_NULL(symtab_lookup(st, 0xfff, &off));
	s = symtab_lookup(st, 0x2007, &off);
	EXPECT_STREQ(s->name, "obj");
	EXPECT_NULL(symtab_lookup(st, 0x2008, &off));

	EXPECT_STREQ(symtab_format(st, 0x101c, buf, sizeof(buf)), "func_a+0x1c (0x101c)");
	EXPECT_STREQ(symtab_format(st, 0x1100, buf, sizeof(buf)), "func_b (0x1100)");
	EXPECT_STREQ(symtab_format(st, 0x5000, buf, sizeof(buf)), "0x5000");
	EXPECT_STREQ(symtab_format(NULL, 0x1100, buf, sizeof(buf)), "0x1100");
	symtab_free(st);

	st = symtab_from_array(NULL, 0);
	EXPECT_NOT_NULL_FATAL(st);
	EXPECT_NULL(symtab_lookup(st, 0, &off));
	symtab_free(st);
}

static void test_symtab_elf(void)
{
	char dir[128], path[256], err[512] = "";
	const struct sym *start, *s;
	struct symtab *st;
	uint64_t off;

	EXPECT_EQ_FATAL(test_elf_build(dir, sizeof(dir), path, sizeof(path)), 0);
	st = symtab_load(path, err, sizeof(err));
	EXPECT_TRUE_MSG(st != NULL, "%s", err);
	if (!st)
		goto out;
	start = symtab_find(st, "_start");
	EXPECT_NOT_NULL_FATAL(start);
	EXPECT_EQ(start->type, 'T');
	EXPECT_GT(start->size, 0);
	s = symtab_find(st, "tiny_helper");
	EXPECT_NOT_NULL(s);
	EXPECT_EQ(s ? s->type : 0, 't');
	s = symtab_find(st, "tiny_data");
	EXPECT_EQ(s ? s->type : 0, 'D');
	s = symtab_find(st, "tiny_ro");
	EXPECT_EQ(s ? s->type : 0, 'R');
	s = symtab_find(st, "tiny_bss");
	EXPECT_EQ(s ? s->type : 0, 'B');
	EXPECT_EQ_U64(256, s ? s->size : 0);
	/* File symbols are skipped. */
	EXPECT_NULL(symtab_find(st, "tiny.c"));
	/* The asm label inside _start resolves to _start. */
	s = symtab_find(st, "tiny_inner");
	EXPECT_NOT_NULL_FATAL(s);
	EXPECT_EQ(s->type, 't');
	EXPECT_PTR_EQ(symtab_lookup(st, s->addr, &off), start);
	EXPECT_EQ_U64(s->addr - start->addr, off);
	s = symtab_find(st, "tiny_lone");
	EXPECT_NOT_NULL_FATAL(s);
	EXPECT_STREQ(symtab_lookup(st, s->addr, &off)->name, "tiny_lone");
	symtab_free(st);
out:
	/* Errors name the file. */
	EXPECT_NULL(symtab_load("/nonexistent.elf", err, sizeof(err)));
	EXPECT_NOT_NULL(strstr(err, "/nonexistent.elf"));
	snprintf(err, sizeof(err), "%s/tiny.c", dir);
	EXPECT_NULL(symtab_load(err, err + 256, sizeof(err) - 256));
	EXPECT_NOT_NULL(strstr(err + 256, "not an ELF"));
	test_elf_cleanup(dir);
}

TEST_SUITE(symtab, "symtab", false,
	   TEST(test_symtab_array_by_name),
	   TEST(test_symtab_array_by_addr),
	   TEST(test_symtab_elf))
