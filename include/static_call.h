/* SPDX-License-Identifier: MIT */
/*
 * static_call.h - the guest's static calls, retargeted from outside
 * (patcher/static_call.c): trampolines __SCT__name with the 0f b9 cc
 * signature, keys __SCK__name, the .static_call_sites and
 * .static_call_targets sections (vmpoke_abi.h), all read from the image
 * and validated.  An update rewrites the trampoline and every site in one
 * text_poke_bp batch and writes key->func with the heads.
 */
#ifndef VMPOKE_STATIC_CALL_H
#define VMPOKE_STATIC_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "elf_load.h"
#include "vmpoke_abi.h"

struct symtab;
struct patcher;
struct vm;

#define SC_MAX_TARGETS	16

struct sc_site {
	uint64_t addr;
	bool tail;
	size_t entry;			/* index in .static_call_sites */
};

struct sc_call {
	char name[64];			/* without the __SCT__ prefix */
	uint64_t tramp, key;
	size_t nr_sites;
	struct sc_site *sites;
	size_t nr_targets;
	uint64_t targets[SC_MAX_TARGETS];
};

struct sc_table {
	size_t nr_calls;
	struct sc_call *calls;		/* by name */
};

/*
 * Pure: every __SCT__ function with its __SCK__ object (the key's size,
 * alignment), the trampoline's form and signature, every site (inside a
 * function, CALL/NOP5 or with TAIL JMP/RET, its key one of the calls) and
 * every target (a function).  A bad one is refused by name.
 */
int sc_table_parse(const struct elf_section *sites, const struct elf_section *targets,
		   const struct elf_section *text, const struct symtab *st,
		   struct sc_table **out, char *msg, size_t len);
/* The same from an image; an image without static calls has none. */
int sc_table_load(const char *image, const struct symtab *st, struct sc_table **out,
		  char *msg, size_t len);
void sc_table_free(struct sc_table *t);
const struct sc_call *sc_call_find(const struct sc_table *t, const char *name);

int sc_key_read(struct vm *vm, const struct sc_call *c, struct vmpoke_static_call_key *out);

struct sc_update_out {
	size_t sites;			/* trampoline and sites rewritten */
	size_t stw;			/* of them, written stop-the-world */
	uint64_t syncs;
	double us;
};

/*
 * static_call_update() from outside: target 0 is NULL.  The target must be
 * one the guest declared for the call.  Every site must hold a form of the
 * call (__static_call_validate()), and the trampoline its signature, or
 * nothing is written ("unexpected op at SITE").  0 or a negative errno.
 */
int sc_update(struct patcher *p, struct vm *vm, const struct sc_call *c, uint64_t target,
	      struct sc_update_out *out, char *msg, size_t len);

#endif /* VMPOKE_STATIC_CALL_H */
