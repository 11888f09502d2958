/* SPDX-License-Identifier: MIT */
/*
 * symtab.h - the guest image's symbol table, loaded with libelf.
 * Name -> symbol and address -> "sym+0xoff", for patch-site resolution and
 * for every diagnostic that prints a guest address.
 */
#ifndef VMPOKE_SYMTAB_H
#define VMPOKE_SYMTAB_H

#include <stddef.h>
#include <stdint.h>

struct sym {
	uint64_t addr;
	uint64_t size;
	char type;		/* nm-style: 'T' func, 'D' object, 'N' notype... */
	const char *name;
};

struct symtab;

/* From an ELF file on disk; NULL and a message naming the file on error. */
struct symtab *symtab_load(const char *path, char *err, size_t errlen);
/* From an in-memory array (tests, and the loader). Copies the names. */
struct symtab *symtab_from_array(const struct sym *syms, size_t n);
void symtab_free(struct symtab *st);

size_t symtab_count(const struct symtab *st);
const struct sym *symtab_at(const struct symtab *st, size_t i);	/* by address */
const struct sym *symtab_find(const struct symtab *st, const char *name);
/*
 * The symbol containing addr: addr in [s->addr, s->addr + max(size,1)).
 * Prefers sized function symbols over labels at the same address.
 * *off receives addr - s->addr.  NULL if none.
 */
const struct sym *symtab_lookup(const struct symtab *st, uint64_t addr, uint64_t *off);
/* "sym+0x1c (0x401a2c)", "sym (0x401a10)" or "0x401a2c"; returns buf. */
const char *symtab_format(const struct symtab *st, uint64_t addr, char *buf, size_t len);

#endif /* VMPOKE_SYMTAB_H */
