// SPDX-License-Identifier: MIT
/*
 * probe.c - INT3 probes (include/probe.h).  First landing: the interface
 * and the list of refusal reasons, so the Lua layer can build against
 * them; probe_add() refuses everything with "unsupported" until the
 * engine lands.
 */
#include <stdio.h>
#include <string.h>

#include "patcher_internal.h"
#include "probe.h"

const char *const probe_reasons[] = {
	"not_code", "not_boundary", "entry_text", "foreign_int3", "live_site",
	"cpl0_untrappable", "far_transfer", "iret", "int", "hlt", "syscall",
	"mov_ss", "rip_rel_unreachable", "not_in_function", "unsupported",
	NULL,
};

struct probe {
	uint64_t addr;
};

struct probe *probe_add(struct patcher *p, uint64_t addr, const struct probe_opts *o,
			const char **reason, char *msg, size_t msglen)
{
	char where[96];

	(void)o;
	site_where(p, addr, where, sizeof(where));
	*reason = "unsupported";
	snprintf(msg, msglen, "%s: unsupported: the probe engine has not landed yet", where);
	return NULL;
}

int probe_remove(struct probe *pr, char *msg, size_t msglen)
{
	(void)pr;
	snprintf(msg, msglen, "no probe");
	return -1;
}

void probe_reap(struct patcher *p)
{
	(void)p;
}

void probe_counts(const struct probe *pr, struct probe_counts *c)
{
	(void)pr;
	memset(c, 0, sizeof(*c));
}

uint64_t probe_addr(const struct probe *pr)
{
	return pr->addr;
}

enum probe_kind probe_kind_of(const struct probe *pr)
{
	(void)pr;
	return PROBE_KIND_INT3;
}

bool probe_removed(const struct probe *pr)
{
	(void)pr;
	return true;
}
