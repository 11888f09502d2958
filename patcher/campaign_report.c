// SPDX-License-Identifier: MIT
/*
 * campaign_report.c - how a campaign ends: its exit code and the summary
 * table on stdout (the --json report is the sink's: cli/campaign_files.c).
 * Both come after every probe and patch was undone.
 */
#include <inttypes.h>
#include <string.h>

#include "campaign_internal.h"
#include "symtab.h"
#include "vmm.h"

static bool campaign_expect_failed(const struct campaign *c)
{
	for (size_t i = 0; i < c->nr_expects; i++)
		if (!c->expects[i].ok)
			return true;
	return false;
}

bool campaign_guest_faulted(const struct campaign *c)
{
	return c->boot_guest_fault ||
	       (c->have_stats && (c->stats.guest_faults || (c->stats.ended && !c->stats.healthy)));
}

int campaign_exit_code(struct campaign *c)
{
	if (campaign_signalled())
		return VMPOKE_EXIT_SIGNAL;
	if (c->boot_failed)
		return c->boot_code;
	if (c->script_error && !c->timed_out)
		return VMPOKE_EXIT_USAGE;
	if (c->timed_out || campaign_expect_failed(c) || campaign_guest_faulted(c))
		return VMPOKE_EXIT_GUEST;
	return VMPOKE_EXIT_OK;
}

void campaign_summary(struct campaign *c, FILE *f)
{
	struct campaign_counts cnt;
	size_t pass = 0;

	fprintf(f, "\ncampaign %s\n", c->script_name);
	if (c->nr_probes) {
		fprintf(f, "\n%-32s %-18s %-9s %12s %10s\n", "probe", "addr", "kind", "hits",
			"missed");
		for (size_t i = 0; i < c->nr_probes; i++) {
			struct campaign_probe *cp = c->probes[i];

			if (!cp->h) {
				fprintf(f, "%-32s 0x%016" PRIx64 " refused: %s\n", cp->where,
					cp->addr, cp->refused);
				continue;
			}
			campaign_probe_refresh(c, cp, &cnt);
			fprintf(f, "%-32s 0x%016" PRIx64 " %-9s %12" PRIu64 " %10" PRIu64 "%s%s\n",
				cp->where, cp->addr, cp->kind, cnt.hits, cnt.missed,
				cp->kind_refused[0] ? "   not optimized: " : "", cp->kind_refused);
		}
	}
	if (c->nr_batches) {
		fprintf(f, "\n%-8s %6s %-8s %6s %10s %s\n", "patch", "sites", "state", "syncs",
			"us", "refused");
		for (size_t i = 0; i < c->nr_batches; i++) {
			struct campaign_batch *b = c->batches[i];
			const char *st = !b->applied ? "refused" : b->keep ? "kept"
					 : b->undone ? "undone" : "applied";

			fprintf(f, "%-8zu %6zu %-8s %6" PRIu64 " %10.1f %zu%s%s\n", i + 1, b->n, st,
				b->syncs, b->us, b->nr_refused, b->error[0] ? " " : "", b->error);
		}
	}
	if (c->nr_expects) {
		fprintf(f, "\nexpectations\n");
		for (size_t i = 0; i < c->nr_expects; i++) {
			pass += c->expects[i].ok;
			fprintf(f, "  %s  line %-5d %s\n", c->expects[i].ok ? "ok  " : "FAIL",
				c->expects[i].line, c->expects[i].message);
		}
		fprintf(f, "  %zu of %zu held\n", pass, c->nr_expects);
	}
	if (c->have_stats)
		fprintf(f, "\nguest: %" PRIu64 " iterations, %" PRIu64 " check failures, %"
			PRIu64 " faults%s%s\n", c->stats.iterations, c->stats.check_failures,
			c->stats.guest_faults, c->stats.ended ? "; " : "",
			c->stats.ended ? c->stats.outcome : "");
	else
		fprintf(f, "\nguest: not booted\n");
	fprintf(f, "text restored: %s\n", c->restored ? "yes" : "NO");
	fflush(f);
}
