// SPDX-License-Identifier: MIT
/*
 * test_jump_label.c - __jump_table parsing and validation (no KVM): the
 * real image's table, then copies of it with one entry broken each way,
 * every one refused with the entry's index and site named.
 */
#include <stdlib.h>
#include <string.h>

#include "jump_label.h"
#include "symtab.h"
#include "testlib.h"

struct jt_fix {
	struct elf_section jt, text;
	struct symtab *st;
};

static bool fix_load(struct jt_fix *f)
{
	char msg[256];

	memset(f, 0, sizeof(*f));
	f->st = symtab_load(testlib_image(), msg, sizeof(msg));
	EXPECT_TRUE_MSG(f->st != NULL, "%s", msg);
	EXPECT_TRUE_MSG(!elf_section_read(testlib_image(), VMPOKE_SEC_JUMP_TABLE, &f->jt, msg,
					  sizeof(msg)), "%s", msg);
	EXPECT_TRUE_MSG(!elf_section_read(testlib_image(), ".text", &f->text, msg,
					  sizeof(msg)), "%s", msg);
	return f->st && f->jt.data && f->text.data;
}

static void fix_free(struct jt_fix *f)
{
	free(f->jt.data);
	free(f->text.data);
	symtab_free(f->st);
}

static void test_jt_image(void)
{
	static const struct { const char *name; size_t sites; bool init_true; } want[] = {
		{ "jl_key_16", 16, false }, { "jl_key_256", 256, false },
		{ "jl_key_corrupt", 1, false }, { "jl_key_false", 4, false },
		{ "jl_key_one", 1, false }, { "jl_key_true", 4, true },
	};
	struct jl_table *t = NULL;
	struct jt_fix f;
	char msg[256];

	if (!fix_load(&f))
		goto out;
	EXPECT_TRUE_MSG(!jl_table_parse(&f.jt, &f.text, f.st, &t, msg, sizeof(msg)), "%s", msg);
	if (!t)
		goto out;
	EXPECT_EQ_U64(6, t->nr_keys);
	EXPECT_EQ_U64(282, t->nr_entries);
	for (size_t i = 0; i < 6 && i < t->nr_keys; i++) {
		const struct jl_key *k = jl_key_find(t, want[i].name);
		size_t two = 0, jmp_branch = 0;

		EXPECT_TRUE_MSG(k != NULL, "no key %s", want[i].name);
		if (!k)
			continue;
		EXPECT_EQ_U64(want[i].sites, k->nr_sites);
		for (size_t s = 0; s < k->nr_sites; s++) {
			two += k->sites[s].len == 2;
			jmp_branch += k->sites[s].branch;
			if (s)
				EXPECT_LT(k->sites[s - 1].code, k->sites[s].code);
		}
		/* the four-site keys have one site of each form, two of them likely */
		if (k->nr_sites == 4) {
			EXPECT_EQ_U64(2, two);
			EXPECT_EQ_U64(2, jmp_branch);
		}
	}
	EXPECT_NULL(jl_key_find(t, "no_such_key"));
out:
	jl_table_free(t);
	fix_free(&f);
}

static int32_t get32(const uint8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void put32(uint8_t *p, int32_t v)
{
	memcpy(p, &v, 4);
}

/* Parse a copy with one change; expect a refusal containing both texts. */
static void expect_refused(struct jt_fix *f, void (*change)(struct jt_fix *, uint8_t *),
			   const char *has1, const char *has2)
{
	uint8_t *orig = f->jt.data, *copy = malloc(f->jt.size);
	struct jl_table *t = NULL;
	char msg[512] = "";

	EXPECT_NOT_NULL_FATAL(copy);
	memcpy(copy, orig, f->jt.size);
	change(f, copy);
	f->jt.data = copy;
	EXPECT_NE(0, jl_table_parse(&f->jt, &f->text, f->st, &t, msg, sizeof(msg)));
	EXPECT_NULL(t);
	EXPECT_STR_HAS(msg, has1);
	EXPECT_STR_HAS(msg, has2);
	f->jt.data = orig;
	jl_table_free(t);
	free(copy);
}

/* The first entry whose site has len (2/5) and the JMP form (jmp) in the image. */
static size_t find_entry(struct jt_fix *f, unsigned int len, bool jmp)
{
	for (size_t i = 0; i < f->jt.size / 16; i++) {
		uint64_t code = f->jt.addr + i * 16 + (uint64_t)(int64_t)get32(f->jt.data + i * 16);
		uint8_t b = f->text.data[code - f->text.addr];

		if ((len == 5 && (jmp ? b == 0xe9 : b == 0x0f)) ||
		    (len == 2 && (jmp ? b == 0xeb : b == 0x66)))
			return i;
	}
	CU_FAIL("no such site in the image");
	return 0;
}

static void ch_code_outside(struct jt_fix *f, uint8_t *d)
{
	(void)f;
	put32(d + 3 * 16, get32(d + 3 * 16) + 0x40000000);
}

static void ch_key_func(struct jt_fix *f, uint8_t *d)
{
	const struct sym *s = symtab_find(f->st, "jl_one_site");
	int64_t k = (int64_t)(s->addr - (f->jt.addr + 5 * 16 + 8));

	memcpy(d + 5 * 16 + 8, &k, 8);
}

static void ch_duplicate(struct jt_fix *f, uint8_t *d)
{
	(void)f;
	/* entry 1 := entry 0, its self-relative fields moved by 16 */
	put32(d + 16, get32(d) - 16);
	put32(d + 20, get32(d + 4) - 16);
	{
		int64_t k;

		memcpy(&k, d + 8, 8);
		k -= 16;
		memcpy(d + 24, &k, 8);
	}
}

static void ch_jmp_target(struct jt_fix *f, uint8_t *d)
{
	size_t i = find_entry(f, 5, true);

	put32(d + i * 16 + 4, get32(d + i * 16 + 4) + 1);
}

static void ch_nop2_far(struct jt_fix *f, uint8_t *d)
{
	size_t i = find_entry(f, 2, false);

	put32(d + i * 16 + 4, get32(d + i * 16 + 4) + 0x1000);
}

static void ch_not_a_site(struct jt_fix *f, uint8_t *d)
{
	size_t i = find_entry(f, 5, false);

	/* into the middle of the NOP5 */
	put32(d + i * 16, get32(d + i * 16) + 1);
}

static void ch_size(struct jt_fix *f, uint8_t *d)
{
	(void)d;
	f->jt.size -= 8;
}

static void test_jt_refusals(void)
{
	struct jt_fix f;

	if (!fix_load(&f))
		goto out;
	expect_refused(&f, ch_code_outside, "__jump_table[3] (site ", "outside the text");
	expect_refused(&f, ch_key_func, "__jump_table[5] (site ", "static key object");
	expect_refused(&f, ch_duplicate, "the same site as entry", "__jump_table[");
	expect_refused(&f, ch_jmp_target, "__jump_table[", "the JMP goes to");
	expect_refused(&f, ch_nop2_far, "__jump_table[", "out of JMP8 range");
	expect_refused(&f, ch_not_a_site, "__jump_table[", "not a NOP2, NOP5, JMP8 or JMP32");
	expect_refused(&f, ch_size, "__jump_table: ", "not 8-aligned 16-byte entries");
	f.jt.size += 8;
out:
	fix_free(&f);
}

/*
 * Found by fuzz_elf: keys are looked up by name, but two keys could share
 * one (or one cut at 63 bytes), and jl_key_find() then found either.
 */
static void test_jt_key_names(void)
{
	static const char *const longname =
		"jl_key_with_a_name_far_longer_than_the_sixty_three_bytes_a_key_keeps";
	struct jl_table *t = NULL;
	struct symtab *orig;
	struct jt_fix f;
	char msg[512] = "";

	if (!fix_load(&f))
		goto out;
	orig = f.st;
	f.st = testlib_syms_renamed(orig, "jl_key_false", "jl_key_true");
	EXPECT_NE(0, jl_table_parse(&f.jt, &f.text, f.st, &t, msg, sizeof(msg)));
	EXPECT_NULL(t);
	EXPECT_STR_HAS(msg, "have one name, jl_key_true");
	symtab_free(f.st);
	f.st = testlib_syms_renamed(orig, "jl_key_false", longname);
	msg[0] = '\0';
	EXPECT_NE(0, jl_table_parse(&f.jt, &f.text, f.st, &t, msg, sizeof(msg)));
	EXPECT_NULL(t);
	EXPECT_STR_HAS(msg, "key name longer than 63 bytes");
	symtab_free(f.st);
	f.st = orig;
out:
	jl_table_free(t);
	fix_free(&f);
}

TEST_SUITE(jump_label, "jump_label", false,
	   TEST(test_jt_image), TEST(test_jt_refusals), TEST(test_jt_key_names))
