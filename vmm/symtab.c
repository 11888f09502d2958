// SPDX-License-Identifier: MIT
/*
 * symtab.c - the guest image's symbols, sorted by address, with a
 * name index for bsearch.
 *
 * Address lookup policy (documented in vmpoke.1 too): among the symbols
 * whose range [addr, addr + max(size, 1)) contains the address, a sized
 * function wins over a sized object, which wins over a zero-size label; on
 * a tie the one that starts last (the innermost) wins.  So a local label
 * inside a function still prints as "function+off", and a label only
 * names the exact address it marks when nothing sized covers it.
 */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "symtab.h"

struct symtab {
	struct sym *syms;	/* sorted by address, then rank */
	size_t n;
	const struct sym **by_name;
	uint64_t max_span;	/* largest max(size, 1): bounds the backward scan */
	char *pool;		/* all names */
};

static bool symtab_is_text(char t)
{
	return t == 'T' || t == 't' || t == 'W' || t == 'w';
}

/* Higher is preferred when several symbols contain an address. */
static int symtab_rank(const struct sym *s)
{
	if (!s->size)
		return 0;
	return symtab_is_text(s->type) ? 2 : 1;
}

static uint64_t symtab_span(const struct sym *s)
{
	return s->size ? s->size : 1;
}

static int symtab_cmp_addr(const void *a, const void *b)
{
	const struct sym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (symtab_rank(x) != symtab_rank(y))
		return symtab_rank(y) - symtab_rank(x);
	return strcmp(x->name, y->name);
}

/* Global (upper-case) before local when names collide, then by address. */
static int symtab_cmp_name(const void *a, const void *b)
{
	const struct sym *x = *(const struct sym * const *)a;
	const struct sym *y = *(const struct sym * const *)b;
	int c = strcmp(x->name, y->name);
	bool gx = x->type >= 'A' && x->type <= 'Z';
	bool gy = y->type >= 'A' && y->type <= 'Z';

	if (c)
		return c;
	if (gx != gy)
		return gx ? -1 : 1;
	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

struct symtab *symtab_from_array(const struct sym *syms, size_t n)
{
	struct symtab *st = calloc(1, sizeof(*st));
	size_t pool_len = 0, i;
	char *p;

	if (!st)
		return NULL;
	for (i = 0; i < n; i++)
		pool_len += strlen(syms[i].name ? syms[i].name : "") + 1;
	st->syms = calloc(n ? n : 1, sizeof(*st->syms));
	st->by_name = calloc(n ? n : 1, sizeof(*st->by_name));
	st->pool = malloc(pool_len ? pool_len : 1);
	if (!st->syms || !st->by_name || !st->pool) {
		symtab_free(st);
		return NULL;
	}
	p = st->pool;
	for (i = 0; i < n; i++) {
		const char *name = syms[i].name ? syms[i].name : "";
		size_t len = strlen(name) + 1;

		st->syms[i] = syms[i];
		st->syms[i].name = memcpy(p, name, len);
		p += len;
		if (symtab_span(&syms[i]) > st->max_span)
			st->max_span = symtab_span(&syms[i]);
	}
	st->n = n;
	qsort(st->syms, n, sizeof(*st->syms), symtab_cmp_addr);
	for (i = 0; i < n; i++)
		st->by_name[i] = &st->syms[i];
	qsort(st->by_name, n, sizeof(*st->by_name), symtab_cmp_name);
	return st;
}

void symtab_free(struct symtab *st)
{
	if (!st)
		return;
	free(st->syms);
	free(st->by_name);
	free(st->pool);
	free(st);
}

size_t symtab_count(const struct symtab *st)
{
	return st ? st->n : 0;
}

const struct sym *symtab_at(const struct symtab *st, size_t i)
{
	return st && i < st->n ? &st->syms[i] : NULL;
}

const struct sym *symtab_find(const struct symtab *st, const char *name)
{
	size_t lo = 0, hi;

	if (!st || !name)
		return NULL;
	/* Lower bound, so the preferred (global) duplicate is returned. */
	hi = st->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (strcmp(st->by_name[mid]->name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < st->n && !strcmp(st->by_name[lo]->name, name))
		return st->by_name[lo];
	return NULL;
}

const struct sym *symtab_lookup(const struct symtab *st, uint64_t addr, uint64_t *off)
{
	const struct sym *best = NULL;
	size_t lo = 0, hi;

	if (!st || !st->n)
		return NULL;
	/* First symbol starting after addr. */
	hi = st->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (st->syms[mid].addr <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	/*
	 * Walk back over every symbol that could still contain addr: none
	 * starting more than max_span before it can.
	 */
	while (lo-- > 0) {
		const struct sym *s = &st->syms[lo];

		if (addr - s->addr >= st->max_span)
			break;
		if (addr - s->addr >= symtab_span(s))
			continue;
		/* Later (innermost) start wins ties: only replace on higher rank. */
		if (!best || symtab_rank(s) > symtab_rank(best))
			best = s;
	}
	if (best && off)
		*off = addr - best->addr;
	return best;
}

const char *symtab_format(const struct symtab *st, uint64_t addr, char *buf, size_t len)
{
	uint64_t off = 0;
	const struct sym *s = symtab_lookup(st, addr, &off);

	if (!buf || !len)
		return buf;
	if (!s)
		snprintf(buf, len, "0x%" PRIx64, addr);
	else if (off)
		snprintf(buf, len, "%s+0x%" PRIx64 " (0x%" PRIx64 ")", s->name, off, addr);
	else
		snprintf(buf, len, "%s (0x%" PRIx64 ")", s->name, addr);
	return buf;
}

/* --- loading from ELF --------------------------------------------------- */

/* nm's letter for a defined symbol in section shndx; 0 to skip it. */
static char symtab_letter(Elf *e, const GElf_Sym *gs)
{
	int bind = GELF_ST_BIND(gs->st_info);
	int type = GELF_ST_TYPE(gs->st_info);
	GElf_Shdr sh;
	Elf_Scn *scn;
	char c;

	if (type == STT_SECTION || type == STT_FILE || gs->st_shndx == SHN_UNDEF)
		return 0;
	if (gs->st_shndx == SHN_ABS)
		c = 'A';
	else if (gs->st_shndx == SHN_COMMON)
		c = 'C';
	else if (!(scn = elf_getscn(e, gs->st_shndx)) || !gelf_getshdr(scn, &sh))
		c = 'N';
	else if (sh.sh_flags & SHF_EXECINSTR)
		c = 'T';
	else if (sh.sh_type == SHT_NOBITS && (sh.sh_flags & SHF_ALLOC))
		c = 'B';
	else if ((sh.sh_flags & SHF_ALLOC) && (sh.sh_flags & SHF_WRITE))
		c = 'D';
	else if (sh.sh_flags & SHF_ALLOC)
		c = 'R';
	else
		c = 'N';
	if (bind == STB_WEAK)
		return type == STT_OBJECT ? 'V' : 'W';
	if (bind == STB_LOCAL)
		c = (char)(c - 'A' + 'a');
	return c;
}

static Elf_Scn *symtab_section(Elf *e, GElf_Shdr *sh)
{
	Elf_Scn *scn = NULL, *dyn = NULL;
	GElf_Shdr dsh;

	while ((scn = elf_nextscn(e, scn))) {
		if (!gelf_getshdr(scn, sh))
			continue;
		if (sh->sh_type == SHT_SYMTAB)
			return scn;
		if (sh->sh_type == SHT_DYNSYM && !dyn) {
			dyn = scn;
			dsh = *sh;
		}
	}
	if (dyn)
		*sh = dsh;
	return dyn;
}

static struct symtab *symtab_read(Elf *e, const char *path, char *err, size_t errlen)
{
	struct symtab *st = NULL;
	struct sym *tmp;
	Elf_Data *data;
	GElf_Shdr sh;
	Elf_Scn *scn;
	size_t i, nsyms, n = 0;

	if (elf_kind(e) != ELF_K_ELF) {
		snprintf(err, errlen, "%s: not an ELF file", path);
		return NULL;
	}
	scn = symtab_section(e, &sh);
	if (!scn || !sh.sh_entsize || !(data = elf_getdata(scn, NULL))) {
		snprintf(err, errlen, "%s: no symbol table (.symtab or .dynsym); "
			 "was the image stripped?", path);
		return NULL;
	}
	nsyms = data->d_size / sh.sh_entsize;
	tmp = calloc(nsyms ? nsyms : 1, sizeof(*tmp));
	if (!tmp) {
		snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	for (i = 0; i < nsyms; i++) {
		GElf_Sym gs;
		const char *name;
		char c;

		if (!gelf_getsym(data, (int)i, &gs))
			continue;
		name = elf_strptr(e, sh.sh_link, gs.st_name);
		c = symtab_letter(e, &gs);
		if (!c || !name || !*name)
			continue;
		tmp[n++] = (struct sym){ gs.st_value, gs.st_size, c, name };
	}
	/* from_array copies the names: they live in libelf's buffers. */
	st = symtab_from_array(tmp, n);
	free(tmp);
	if (!st)
		snprintf(err, errlen, "%s: out of memory", path);
	return st;
}

struct symtab *symtab_load(const char *path, char *err, size_t errlen)
{
	struct symtab *st = NULL;
	char dummy[1];
	Elf *e;
	int fd;

	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	if (elf_version(EV_CURRENT) == EV_NONE) {
		snprintf(err, errlen, "%s: libelf: %s", path, elf_errmsg(-1));
		return NULL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	e = elf_begin(fd, ELF_C_READ, NULL);
	if (!e)
		snprintf(err, errlen, "%s: not an ELF file (%s)", path, elf_errmsg(-1));
	else
		st = symtab_read(e, path, err, errlen);
	elf_end(e);
	close(fd);
	return st;
}
