// SPDX-License-Identifier: MIT
/*
 * campaign_where.c - the campaign API's guest addresses: "sym", "sym+off"
 * or a number, and back again.  Pure: a symbol table in, text out.
 *
 * An error names the part that is wrong (the symbol, or the offset), as
 * bpftrace names the probe it could not attach: "lib_ad+0x4: unknown
 * symbol 'lib_ad'" tells the user which half to fix.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_internal.h"
#include "symtab.h"

/* A whole string as an unsigned number (0x hex or decimal); false if not. */
static bool where_number(const char *s, uint64_t *v)
{
	char *end;

	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 0);
	return !errno && !*end;
}

int campaign_parse_where(const struct symtab *st, const char *s, uint64_t *addr,
			 char *msg, size_t len)
{
	const struct sym *sym;
	char name[256];
	const char *plus;
	uint64_t off = 0;
	size_t n;

	if (where_number(s, addr))
		return 0;
	plus = strchr(s, '+');
	n = plus ? (size_t)(plus - s) : strlen(s);
	if (!n) {
		snprintf(msg, len, "missing symbol name in '%s'", s);
		return -EINVAL;
	}
	if (n >= sizeof(name)) {
		snprintf(msg, len, "symbol name too long in '%.64s...'", s);
		return -EINVAL;
	}
	memcpy(name, s, n);
	name[n] = 0;
	if (plus && !where_number(plus + 1, &off)) {
		snprintf(msg, len, "bad offset '%s' in '%s' (want a number, e.g. +0x1a)",
			 plus + 1, s);
		return -EINVAL;
	}
	sym = st ? symtab_find(st, name) : NULL;
	if (!sym) {
		snprintf(msg, len, "unknown symbol '%s' in '%s'", name, s);
		return -ENOENT;
	}
	if (sym->size && off >= sym->size) {
		snprintf(msg, len, "offset 0x%" PRIx64 " is past the end of '%s' "
			 "(%" PRIu64 " bytes) in '%s'", off, name, sym->size, s);
		return -ERANGE;
	}
	*addr = sym->addr + off;
	return 0;
}

void campaign_symbolize(const struct symtab *st, uint64_t addr, char *buf, size_t len)
{
	const struct sym *s;
	uint64_t off = 0;

	s = st ? symtab_lookup(st, addr, &off) : NULL;
	if (!s)
		snprintf(buf, len, "0x%" PRIx64, addr);
	else if (off)
		snprintf(buf, len, "%s+0x%" PRIx64, s->name, off);
	else
		snprintf(buf, len, "%s", s->name);
}

bool campaign_sym_listed(char type)
{
	return type && strchr("TtDdBbRr", type);
}
