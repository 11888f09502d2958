// SPDX-License-Identifier: MIT
/*
 * torture_sites.c - the guest's vmpoke_sites table, checked, and the byte
 * variants each site toggles between.  See torture.h.
 */
#include <stdio.h>
#include <string.h>

#include "symtab.h"
#include "torture.h"

static const struct {
	const char *name;
	uint32_t kind;
} kind_names[] = {
	{ "nop5", VMPOKE_SITE_NOP5_JMP32 },
	{ "nop2", VMPOKE_SITE_NOP2_JMP8 },
	{ "call", VMPOKE_SITE_CALL32 },
	{ "jcc", VMPOKE_SITE_JCC32 },
	{ "multi", VMPOKE_SITE_MULTI },
	{ "jump_label", TORTURE_KIND_JUMP_LABEL },
	{ "static_call", TORTURE_KIND_STATIC_CALL },
	{ "probe", TORTURE_KIND_PROBE },
	{ "optprobe", TORTURE_KIND_OPTPROBE },
	{ "livepatch", TORTURE_KIND_LIVEPATCH },
};

static const char *const inject_names[] = {
	[POKE_INJECT_NONE] = "none",
	[POKE_INJECT_NO_INT3] = "no-int3",
	[POKE_INJECT_TORN_WRITE] = "torn-write",
	[POKE_INJECT_NO_SHADOW_CHECK] = "no-shadow-check",
	[POKE_INJECT_NO_SYNC] = "no-sync",
	[POKE_INJECT_EARLY_RETIRE] = "early-retire",
	[POKE_INJECT_NO_GHOST] = "no-ghost",
	[POKE_INJECT_LATE_PUBLISH] = "late-publish",
	[POKE_INJECT_NO_OPTIMIZE_SHADOW] = "no-optimize-shadow",
	[POKE_INJECT_NO_STACK_CHECK] = "no-stack-check",
};

const char *torture_kind_name(uint32_t kind)
{
	for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (kind_names[i].kind == kind)
			return kind_names[i].name;
	return "?";
}

unsigned int torture_parse_kinds(const char *list, char *msg, size_t msglen)
{
	unsigned int mask = 0;
	const char *p = list;

	while (*p) {
		size_t n = strcspn(p, ",");
		bool found = false;

		for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++) {
			if (strlen(kind_names[i].name) == n &&
			    !strncmp(kind_names[i].name, p, n)) {
				mask |= 1u << kind_names[i].kind;
				found = true;
			}
		}
		if (!found) {
			snprintf(msg, msglen, "--kinds %s: unknown kind '%.*s' "
				 "(nop5,nop2,call,jcc,multi,jump_label,static_call)", list, (int)n, p);
			return 0;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	if (!mask)
		snprintf(msg, msglen, "--kinds '%s': no kind given", list);
	return mask;
}

int torture_parse_inject(const char *name)
{
	for (size_t i = 1; i < sizeof(inject_names) / sizeof(inject_names[0]); i++)
		if (!strcmp(inject_names[i], name))
			return (int)i;
	return -1;
}

const char *torture_inject_name(enum poke_inject inj)
{
	if ((size_t)inj < sizeof(inject_names) / sizeof(inject_names[0]))
		return inject_names[inj];
	return "?";
}

bool torture_rel32(uint64_t from_end, uint64_t to, int32_t *rel)
{
	int64_t d = (int64_t)(to - from_end);

	if (d < INT32_MIN || d > INT32_MAX)
		return false;
	*rel = (int32_t)d;
	return true;
}

void torture_put_le32(uint8_t *buf, int32_t rel)
{
	uint32_t v = (uint32_t)rel;

	for (int i = 0; i < 4; i++)
		buf[i] = (uint8_t)(v >> (8 * i));
}

/* [addr, addr + len) inside one function symbol. */
static bool torture_in_function(const struct symtab *st, uint64_t addr, uint64_t len)
{
	uint64_t off;
	const struct sym *s = symtab_lookup(st, addr, &off);

	if (!s || !s->size || !s->type || !strchr("TtWw", s->type))
		return false;
	return off + len <= s->size;
}

static uint32_t torture_kind_len(uint32_t kind)
{
	switch (kind) {
	case VMPOKE_SITE_NOP5_JMP32:
	case VMPOKE_SITE_CALL32:
		return 5;
	case VMPOKE_SITE_NOP2_JMP8:
		return 2;
	case VMPOKE_SITE_JCC32:
		return 6;
	default:
		return 0;	/* MULTI: 5..POKE_MAX_LEN */
	}
}

int torture_table_check(const struct vmpoke_site_table *t,
			const struct symtab *st, char *msg, size_t msglen)
{
	/* vmm_sites_read() checked the header, kinds, counts and RAM. */
	for (uint32_t i = 0; i < t->nr_sites && i < VMPOKE_MAX_SITES; i++) {
		const struct vmpoke_site_desc *d = &t->sites[i];
		uint32_t want = torture_kind_len(d->kind);

		if (want ? d->len != want : (d->len < 5 || d->len > POKE_MAX_LEN)) {
			snprintf(msg, msglen, "%s[%u] (%s at 0x%llx): bad len %u",
				 VMPOKE_SYM_SITES, i, torture_kind_name(d->kind),
				 (unsigned long long)d->addr, d->len);
			return -1;
		}
		if (!torture_in_function(st, d->addr, d->len)) {
			snprintf(msg, msglen, "%s[%u]: 0x%llx+%u is not inside a "
				 "function of the image", VMPOKE_SYM_SITES, i,
				 (unsigned long long)d->addr, d->len);
			return -1;
		}
		for (uint32_t k = 0; k < d->nr_targets; k++) {
			if (!torture_in_function(st, d->target[k], 1)) {
				snprintf(msg, msglen, "%s[%u] (0x%llx): target[%u] "
					 "0x%llx is not inside a function",
					 VMPOKE_SYM_SITES, i,
					 (unsigned long long)d->addr, k,
					 (unsigned long long)d->target[k]);
				return -1;
			}
		}
		for (uint32_t j = 0; j < i; j++) {
			const struct vmpoke_site_desc *o = &t->sites[j];

			if (d->addr < o->addr + o->len && o->addr < d->addr + d->len) {
				snprintf(msg, msglen, "%s[%u] (0x%llx) overlaps [%u]",
					 VMPOKE_SYM_SITES, i,
					 (unsigned long long)d->addr, j);
				return -1;
			}
		}
	}
	return 0;
}

static int torture_build_fail(char *msg, size_t msglen, const struct vmpoke_site_desc *d,
		      const char *why)
{
	snprintf(msg, msglen, "%s site 0x%llx: %s", torture_kind_name(d->kind),
		 (unsigned long long)d->addr, why);
	return -1;
}

int torture_site_build(struct torture_site *ts,
		       const struct vmpoke_site_desc *d, const uint8_t *orig,
		       char *msg, size_t msglen)
{
	static const uint8_t nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
	static const uint8_t nop2[2] = { 0x66, 0x90 };
	uint64_t end = d->addr + d->len;
	int32_t rel;

	memset(ts, 0, sizeof(*ts));
	ts->desc = *d;
	memcpy(ts->variant[0], orig, d->len);
	ts->nr_variants = 1;

	switch (d->kind) {
	case VMPOKE_SITE_NOP5_JMP32:
	case VMPOKE_SITE_MULTI:
		/* Remember the original bytes; the alternative is a JMP. */
		if (!torture_rel32(d->addr + 5, d->target[0], &rel))
			return torture_build_fail(msg, msglen, d, "target out of rel32 range");
		ts->variant[1][0] = 0xe9;
		torture_put_le32(&ts->variant[1][1], rel);
		/* A JMP may be padded, but only with INT3 (as Linux does). */
		memset(&ts->variant[1][5], 0xcc, d->len - 5);
		ts->nr_variants = 2;
		break;
	case VMPOKE_SITE_NOP2_JMP8: {
		int64_t d8 = (int64_t)(d->target[0] - end);

		if (d8 < -128 || d8 > 127)
			return torture_build_fail(msg, msglen, d, "target out of rel8 range");
		ts->variant[1][0] = 0xeb;
		ts->variant[1][1] = (uint8_t)(int8_t)d8;
		ts->nr_variants = 2;
		break;
	}
	case VMPOKE_SITE_CALL32:
	case VMPOKE_SITE_JCC32: {
		/* Keep the opcode (and with it Jcc's condition); retarget. */
		unsigned int oplen = d->kind == VMPOKE_SITE_CALL32 ? 1 : 2;

		if (d->kind == VMPOKE_SITE_CALL32 && orig[0] != 0xe8)
			return torture_build_fail(msg, msglen, d, "not a CALL rel32");
		if (d->kind == VMPOKE_SITE_JCC32 &&
		    (orig[0] != 0x0f || (orig[1] & 0xf0) != 0x80))
			return torture_build_fail(msg, msglen, d, "not a Jcc rel32");
		if (d->nr_targets < 2)
			return torture_build_fail(msg, msglen, d, "only one target");
		ts->nr_variants = 0;
		for (uint32_t k = 0; k < d->nr_targets; k++) {
			uint8_t *v = ts->variant[k];

			if (!torture_rel32(end, d->target[k], &rel))
				return torture_build_fail(msg, msglen, d,
						  "target out of rel32 range");
			memcpy(v, orig, oplen);
			torture_put_le32(v + oplen, rel);
			ts->nr_variants++;
		}
		break;
	}
	default:
		return torture_build_fail(msg, msglen, d, "unknown kind");
	}

	/*
	 * A NOP site the guest (or an earlier run) left in its JMP form:
	 * the original was the canonical NOP of that length.
	 */
	if ((d->kind == VMPOKE_SITE_NOP5_JMP32 || d->kind == VMPOKE_SITE_NOP2_JMP8) &&
	    !memcmp(orig, ts->variant[1], d->len)) {
		memcpy(ts->variant[0], d->len == 5 ? nop5 : nop2, d->len);
		ts->cur = 1;
		return 0;
	}
	/* Where are we now?  The guest must hold one of the variants. */
	for (unsigned int k = 0; k < ts->nr_variants; k++) {
		if (!memcmp(ts->variant[k], orig, d->len)) {
			ts->cur = k;
			return 0;
		}
	}
	return torture_build_fail(msg, msglen, d, "current bytes match no variant "
			  "(CALL/Jcc not aimed at target[0]?)");
}
