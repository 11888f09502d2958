// SPDX-License-Identifier: MIT
/*
 * fuzz_elf.c - target fuzz_elf: the image loader (elf_load), the symbol
 * table (symtab_load and its lookups), the jump-label table
 * (jl_table_load: elf_section_read + jl_table_parse) and the static-call
 * tables (sc_table_load: .static_call_sites, .static_call_targets, the
 * __SCT__ trampolines and __SCK__ keys) on arbitrary bytes as the image.
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
#include "static_call.h"
#include "symtab.h"
#include "vmpoke_abi.h"

#define T		"fuzz_elf"
/* Big enough for our guest (about 5.7 MiB with .bss), small enough to fuzz. */
#define ELF_RAM_SIZE	(8ull << 20)
#define SYMS_CHECKED	256
/* The overlap check is quadratic: a table this big is not ours anyway. */
#define SC_SITES_CHECKED 512

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
 * A table reader's answer r with table t: refused with a message and no
 * table (true: nothing more to check), or accepted with a table.
 */
static bool table_refused(const char *what, int r, const void *t, const char *msg)
{
	if (r) {
		FUZZ_CHECK(T, r < 0 && msg[0], "%s refused (%d) without a message", what, r);
		FUZZ_CHECK(T, !t, "a refused %s was handed out", what);
		return true;
	}
	FUZZ_CHECK(T, t != NULL, "no %s and no error", what);
	return false;
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

	if (table_refused("__jump_table", r, t, msg))
		return;
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

/* Does [a, a + an) meet [b, b + bn)? */
static bool sc_meet(uint64_t a, uint64_t an, uint64_t b, uint64_t bn)
{
	return a < b + bn && b < a + an;
}

/*
 * Every code range an accepted table lets sc_update() rewrite, the
 * trampolines' 8 bytes (with the signature) and the sites' 5, against all
 * the others: one byte in two of them and one update would undo another's.
 */
static void sc_check_overlaps(const struct sc_table *t)
{
	size_t n = 0;

	for (size_t i = 0; i < t->nr_calls; i++)
		n += t->calls[i].nr_sites + 1;
	if (n > SC_SITES_CHECKED)
		return;
	for (size_t i = 0; i < t->nr_calls; i++) {
		const struct sc_call *c = &t->calls[i];

		for (size_t j = 0; j < t->nr_calls; j++) {
			const struct sc_call *d = &t->calls[j];

			FUZZ_CHECK(T, i == j || (c->key != d->key &&
						 !sc_meet(c->tramp, 8, d->tramp, 8)),
				   "%s and %s share a key or trampoline bytes", c->name, d->name);
			for (size_t k = 0; k < d->nr_sites; k++)
				FUZZ_CHECK(T, !sc_meet(c->tramp, 8, d->sites[k].addr, 5),
					   "site 0x%llx of %s is in the trampoline of %s",
					   (unsigned long long)d->sites[k].addr, d->name,
					   c->name);
			for (size_t s = 0; s < c->nr_sites; s++)
				for (size_t k = 0; k < d->nr_sites; k++)
					FUZZ_CHECK(T, (i == j && s == k) ||
						   !sc_meet(c->sites[s].addr, 5,
							    d->sites[k].addr, 5),
						   "sites 0x%llx (%s) and 0x%llx (%s) overlap",
						   (unsigned long long)c->sites[s].addr,
						   c->name,
						   (unsigned long long)d->sites[k].addr,
						   d->name);
		}
	}
}

/*
 * The image's static calls: what is accepted keeps the rules static_call.h
 * lists, and every call is found by its one name.
 */
static void sc_check(const char *path, const struct symtab *st)
{
	struct sc_table *t = NULL;
	char msg[512] = "";
	int r = sc_table_load(path, st, &t, msg, sizeof(msg));

	if (table_refused("static-call table", r, t, msg))
		return;
	for (size_t i = 0; i < t->nr_calls; i++) {
		const struct sc_call *c = &t->calls[i];

		FUZZ_CHECK(T, c->name[0] && memchr(c->name, 0, sizeof(c->name)),
			   "call %zu has no name", i);
		FUZZ_CHECK(T, sc_call_find(t, c->name) == c, "call %s not found by name",
			   c->name);
		FUZZ_CHECK(T, !(c->tramp & 3) && !(c->key & 7),
			   "%s: trampoline 0x%llx or key 0x%llx misaligned", c->name,
			   (unsigned long long)c->tramp, (unsigned long long)c->key);
		FUZZ_CHECK(T, c->nr_targets <= SC_MAX_TARGETS, "%s: %zu targets", c->name,
			   c->nr_targets);
		FUZZ_CHECK(T, !c->nr_sites || c->sites, "%s: %zu sites, no array", c->name,
			   c->nr_sites);
	}
	sc_check_overlaps(t);
	FUZZ_CHECK(T, !sc_call_find(t, ""), "a call with no name was found");
	sc_table_free(t);
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
	sc_check(path, st);
	symtab_free(st);
	return 0;
}
