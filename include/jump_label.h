/* SPDX-License-Identifier: MIT */
/*
 * jump_label.h - the guest's static keys, flipped from outside
 * (patcher/jump_label.c).  The image's __jump_table (vmpoke_abi.h, the
 * kernel's x86-64 format) is parsed and validated from the ELF; a flip
 * rewrites every site of one key in one text_poke_bp batch, with the
 * expected old bytes computed from the key's state as
 * __jump_label_patch() does, and key->enabled written with the heads.
 */
#ifndef VMPOKE_JUMP_LABEL_H
#define VMPOKE_JUMP_LABEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "elf_load.h"
#include "vmpoke_abi.h"

struct symtab;
struct patcher;
struct vm;

struct jl_site {
	uint64_t code, target;
	uint8_t len;			/* 2 (NOP2/JMP8) or 5 (NOP5/JMP32) */
	bool branch, init;		/* the entry's key bits */
	size_t entry;			/* index in __jump_table */
};

struct poke_site;

struct jl_key {
	char name[64];			/* the key's symbol */
	uint64_t addr;
	size_t nr_sites;
	struct jl_site *sites;		/* ascending code addresses */
	/*
	 * The sites prepared (validated against their function) for the flip
	 * to disabled [0] and enabled [1], on the first such flip with patcher
	 * prep_for: validation decodes the whole function, which for a key
	 * with n sites in one function is n^2 work.  The batch still checks
	 * every site's old bytes before it writes.
	 */
	struct poke_site *prep[2];
	const struct patcher *prep_for;
};

struct jl_table {
	size_t nr_keys, nr_entries;
	struct jl_key *keys;		/* by name */
	struct jl_site *all;		/* backing store of every key's sites */
};

/*
 * Parse and validate __jump_table (jt) against the text section the sites
 * live in and the symbol table: every entry 16 bytes, 8-aligned; code a
 * NOP2/NOP5/JMP8/JMP32 inside a function; a JMP's destination the entry's
 * target, a 2-byte site's target within rel8; target inside text; key the
 * address of an object symbol of sizeof(struct vmpoke_static_key), 8-aligned;
 * no site twice.  A bad entry is refused by index and site:
 * "__jump_table[3] (jl_false_nop5+0x0): ...".  Pure: no VM needed.
 */
int jl_table_parse(const struct elf_section *jt, const struct elf_section *text,
		   const struct symtab *st, struct jl_table **out, char *msg, size_t len);
/* The same from an image file; an image without __jump_table has no keys. */
int jl_table_load(const char *image, const struct symtab *st, struct jl_table **out,
		  char *msg, size_t len);
void jl_table_free(struct jl_table *t);
const struct jl_key *jl_key_find(const struct jl_table *t, const char *name);

/* The key as the guest holds it now. */
int jl_key_read(struct vm *vm, const struct jl_key *k, struct vmpoke_static_key *out);

struct jl_flip_out {
	bool changed;			/* false: the key already had that state */
	size_t sites;			/* sites rewritten */
	uint64_t syncs;
	double us;
};

/*
 * static_key_enable()/disable() from outside.  Every site must hold the
 * form the key's current state implies (NOP when it becomes a JMP, JMP
 * when it becomes a NOP); anything else refuses the whole key with
 * "unexpected op at SITE" and nothing written.  key->seq is odd while
 * the batch runs; key->enabled is written with the heads.  0, or a
 * negative errno with msg.
 */
int jl_key_set(struct patcher *p, struct vm *vm, const struct jl_key *k, bool enable,
	       struct jl_flip_out *out, char *msg, size_t len);

#endif /* VMPOKE_JUMP_LABEL_H */
