// SPDX-License-Identifier: MIT
/*
 * fuzz_elf.c - target fuzz_elf: the image loader (elf_load), the symbol
 * table (symtab_load and its lookups) and the jump-label table
 * (jl_table_load: elf_section_read + jl_table_parse) on arbitrary bytes as
 * the image.
 *
 * Both readers take a path, as vmpoke does, so the bytes go into a memfd
 * opened through /proc/self/fd (fuzz_file): the code under test is exactly
 * what `vmpoke run IMAGE` runs, with no test-only entry point.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elf_load.h"
#include "fuzz.h"
#include "jump_label.h"
#include "symtab.h"
#include "vmpoke_abi.h"

#define T		"fuzz_elf"
/* Big enough for our guest (about 5.7 MiB with .bss), small enough to fuzz. */
#define ELF_RAM_SIZE	(8ull << 20)
#define SYMS_CHECKED	256

static void elf_check_image(const struct elf_image *img)
{
	FUZZ_CHECK(T, img->nr_segments >= 1, "loaded with no segment");
	FUZZ_CHECK(T, img->lowest >= VMPOKE_IMAGE_BASE && img->lowest < img->highest &&
		   img->highest <= ELF_RAM_SIZE,
		   "segments [0x%llx, 0x%llx) outside RAM [0x%llx, 0x%llx)",
		   (unsigned long long)img->lowest, (unsigned long long)img->highest,
		   (unsigned long long)VMPOKE_IMAGE_BASE, (unsigned long long)ELF_RAM_SIZE);
}

static void elf_load_both(const char *path)
{
	static uint8_t *ram;
	struct elf_image img, dry;
	char err[512], err2[512];
	int ret, ret2;

	if (!ram)
		ram = calloc(1, ELF_RAM_SIZE);
	if (!ram)
		fuzz_fail(T, "out of memory");
	err[0] = err2[0] = '\0';
	/* The CLI validates without RAM first: it must agree with the load. */
	ret = elf_load(path, NULL, ELF_RAM_SIZE, VMPOKE_IMAGE_BASE, &dry, err, sizeof(err));
	ret2 = elf_load(path, ram, ELF_RAM_SIZE, VMPOKE_IMAGE_BASE, &img, err2, sizeof(err2));
	FUZZ_CHECK(T, ret == ret2, "validate says %d, load says %d", ret, ret2);
	if (ret) {
		FUZZ_CHECK(T, err[0] && err2[0], "refused without a message");
		return;
	}
	FUZZ_CHECK(T, !memcmp(&img, &dry, sizeof(img)), "validate and load disagree");
	elf_check_image(&img);
}

static void symtab_check(const struct symtab *st)
{
	size_t n = symtab_count(st), i;
	const struct sym *prev = NULL;
	char small[12], buf[256];

	for (i = 0; i < n && i < SYMS_CHECKED; i++) {
		const struct sym *s = symtab_at(st, i), *f, *l;
		uint64_t off = 0;

		FUZZ_CHECK(T, s && s->name, "symbol %zu missing", i);
		FUZZ_CHECK(T, !prev || prev->addr <= s->addr, "symbols not sorted at %zu", i);
		prev = s;
		f = symtab_find(st, s->name);
		FUZZ_CHECK(T, f && !strcmp(f->name, s->name), "cannot find \"%s\"", s->name);
		l = symtab_lookup(st, s->addr, &off);
		FUZZ_CHECK(T, l && off == s->addr - l->addr &&
			   off < (l->size ? l->size : 1),
			   "lookup of 0x%llx misses \"%s\"", (unsigned long long)s->addr,
			   s->name);
		l = symtab_lookup(st, s->addr + s->size, &off);
		FUZZ_CHECK(T, !l || off < (l->size ? l->size : 1), "lookup past a symbol");
		symtab_format(st, s->addr + 1, small, sizeof(small));
		FUZZ_CHECK(T, strlen(small) < sizeof(small), "format overran");
		symtab_format(st, s->addr - 1, buf, sizeof(buf));
	}
	FUZZ_CHECK(T, !symtab_at(st, n), "symbol past the end");
}

/*
 * The image's __jump_table, parsed and validated against .text and the
 * symbols: what is accepted keeps the rules jump_label.h lists.
 */
static void jl_check(const char *path, const struct symtab *st)
{
	struct jl_table *t = NULL;
	char msg[512] = "";
	int r = jl_table_load(path, st, &t, msg, sizeof(msg));

	if (r) {
		FUZZ_CHECK(T, r < 0 && msg[0], "__jump_table refused (%d) without a message", r);
		FUZZ_CHECK(T, !t, "a refused __jump_table was handed out");
		return;
	}
	FUZZ_CHECK(T, t != NULL, "no table and no error");
	for (size_t i = 0; i < t->nr_keys; i++) {
		const struct jl_key *k = &t->keys[i];

		FUZZ_CHECK(T, jl_key_find(t, k->name) == k, "key %s not found by name", k->name);
		FUZZ_CHECK(T, !(k->addr & 7), "key %s at 0x%llx is not 8-aligned", k->name,
			   (unsigned long long)k->addr);
		for (size_t j = 0; j < k->nr_sites; j++) {
			const struct jl_site *s = &k->sites[j];

			FUZZ_CHECK(T, s->len == 2 || s->len == 5, "site of %u bytes", s->len);
			FUZZ_CHECK(T, !j || k->sites[j - 1].code < s->code,
				   "key %s: sites not ascending or twice", k->name);
		}
	}
	jl_table_free(t);
}

int fuzz_elf_one(const uint8_t *data, size_t size)
{
	char path[64], err[512];
	struct symtab *st;

	fuzz_file(T, data, size, path, sizeof(path));
	elf_load_both(path);
	err[0] = '\0';
	st = symtab_load(path, err, sizeof(err));
	if (!st) {
		FUZZ_CHECK(T, err[0], "symtab refused without a message");
		return 0;
	}
	symtab_check(st);
	jl_check(path, st);
	symtab_free(st);
	return 0;
}
