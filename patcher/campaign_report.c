// SPDX-License-Identifier: MIT
/*
 * campaign_report.c - how a campaign ends: its exit code, the summary
 * table on stdout, and the --json report (keys in README.md: "command",
 * "script", "exit_code", "restored", "guest", "probes", "patches",
 * "expectations").  Written after every probe and patch was undone.
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

static bool campaign_guest_faulted(const struct campaign *c)
{
	return c->have_stats && (c->stats.guest_faults || (c->stats.ended && !c->stats.healthy));
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
		fprintf(f, "\n%-32s %-18s %-6s %12s %10s\n", "probe", "addr", "kind", "hits",
			"missed");
		for (size_t i = 0; i < c->nr_probes; i++) {
			struct campaign_probe *cp = c->probes[i];

			if (!cp->h) {
				fprintf(f, "%-32s 0x%016" PRIx64 " refused: %s\n", cp->where,
					cp->addr, cp->refused);
				continue;
			}
			campaign_probe_refresh(c, cp, &cnt);
			fprintf(f, "%-32s 0x%016" PRIx64 " %-6s %12" PRIu64 " %10" PRIu64 "\n",
				cp->where, cp->addr, cp->kind, cnt.hits, cnt.missed);
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

static json_object *report_probe(struct campaign *c, struct campaign_probe *cp)
{
	json_object *o = json_object_new_object(), *pv = json_object_new_array();
	struct campaign_counts cnt;

	memset(&cnt, 0, sizeof(cnt));
	if (cp->h)
		campaign_probe_refresh(c, cp, &cnt);
	json_object_object_add(o, "where", json_object_new_string(cp->where));
	json_object_object_add(o, "addr", json_object_new_uint64(cp->addr));
	json_object_object_add(o, "kind", json_object_new_string(cp->kind));
	json_object_object_add(o, "hits", json_object_new_uint64(cnt.hits));
	json_object_object_add(o, "missed", json_object_new_uint64(cnt.missed));
	for (unsigned int i = 0; i < c->cfg.vcpus && i < VMPOKE_MAX_VCPUS; i++)
		json_object_array_add(pv, json_object_new_uint64(cnt.per_vcpu[i]));
	json_object_object_add(o, "per_vcpu", pv);
	json_object_object_add(o, "refused", cp->h ? NULL : json_object_new_string(cp->refused));
	return o;
}

static json_object *report_batch(struct campaign *c, struct campaign_batch *b)
{
	json_object *o = json_object_new_object(), *sites = json_object_new_array();
	json_object *refused = json_object_new_array();
	char where[320];

	for (size_t i = 0; i < b->n; i++) {
		json_object *s = json_object_new_object();

		campaign_symbolize(c->ops->symtab(c->be), b->sites[i].at, where, sizeof(where));
		json_object_object_add(s, "at", json_object_new_uint64(b->sites[i].at));
		json_object_object_add(s, "where", json_object_new_string(where));
		json_object_object_add(s, "len", json_object_new_int(b->sites[i].len));
		json_object_array_add(sites, s);
		if (b->sites[i].refused[0] || (!b->applied && b->error[0])) {
			json_object *r = json_object_new_object();

			json_object_object_add(r, "at", json_object_new_uint64(b->sites[i].at));
			json_object_object_add(r, "reason", json_object_new_string(
				b->sites[i].refused[0] ? b->sites[i].refused : b->error));
			json_object_array_add(refused, r);
		}
	}
	json_object_object_add(o, "sites", sites);
	json_object_object_add(o, "syncs", json_object_new_uint64(b->syncs));
	json_object_object_add(o, "us", json_object_new_double(b->us));
	json_object_object_add(o, "refused", refused);
	json_object_object_add(o, "applied", json_object_new_boolean(b->applied));
	json_object_object_add(o, "keep", json_object_new_boolean(b->keep));
	json_object_object_add(o, "undone", json_object_new_boolean(b->undone));
	return o;
}

static json_object *report_guest(struct campaign *c)
{
	json_object *g = json_object_new_object();

	json_object_object_add(g, "image", c->cfg.image ? json_object_new_string(c->cfg.image)
							: NULL);
	json_object_object_add(g, "booted", json_object_new_boolean(c->booted));
	json_object_object_add(g, "vcpus", json_object_new_int((int)c->cfg.vcpus));
	json_object_object_add(g, "tasks", json_object_new_int((int)c->cfg.tasks));
	json_object_object_add(g, "healthy", json_object_new_boolean(!campaign_guest_faulted(c)));
	if (c->have_stats) {
		json_object_object_add(g, "iterations", json_object_new_uint64(c->stats.iterations));
		json_object_object_add(g, "check_failures",
				       json_object_new_uint64(c->stats.check_failures));
		json_object_object_add(g, "guest_faults",
				       json_object_new_uint64(c->stats.guest_faults));
		if (c->stats.ended)
			json_object_object_add(g, "outcome",
					       json_object_new_string(c->stats.outcome));
	}
	return g;
}

int campaign_write_report(struct campaign *c, int exit_code)
{
	json_object *r, *a;
	FILE *f;
	int ret = 0;

	if (!c->o->json)
		return 0;
	r = json_object_new_object();
	json_object_object_add(r, "command", json_object_new_string(
		c->o->command ? c->o->command : "campaign"));
	json_object_object_add(r, "script", json_object_new_string(c->script_name));
	json_object_object_add(r, "exit_code", json_object_new_int(exit_code));
	json_object_object_add(r, "restored", json_object_new_boolean(c->restored));
	if (c->error[0])
		json_object_object_add(r, "error", json_object_new_string(c->error));
	json_object_object_add(r, "guest", report_guest(c));
	a = json_object_new_array();
	for (size_t i = 0; i < c->nr_probes; i++)
		json_object_array_add(a, report_probe(c, c->probes[i]));
	json_object_object_add(r, "probes", a);
	a = json_object_new_array();
	for (size_t i = 0; i < c->nr_batches; i++)
		json_object_array_add(a, report_batch(c, c->batches[i]));
	json_object_object_add(r, "patches", a);
	a = json_object_new_array();
	for (size_t i = 0; i < c->nr_expects; i++) {
		json_object *e = json_object_new_object();

		json_object_object_add(e, "message", json_object_new_string(c->expects[i].message));
		json_object_object_add(e, "ok", json_object_new_boolean(c->expects[i].ok));
		json_object_object_add(e, "line", json_object_new_int(c->expects[i].line));
		json_object_array_add(a, e);
	}
	json_object_object_add(r, "expectations", a);
	json_object_object_add(r, "hit_events_dropped", json_object_new_uint64(c->out.hits_dropped));

	f = strcmp(c->o->json, "-") ? fopen(c->o->json, "w") : stdout;
	if (!f) {
		fprintf(stderr, "vmpoke campaign: --json: cannot create '%s'\n", c->o->json);
		ret = -1;
	} else {
		fprintf(f, "%s\n", json_object_to_json_string_ext(r, JSON_C_TO_STRING_PRETTY |
								    JSON_C_TO_STRING_NOSLASHESCAPE));
		if (f != stdout && fclose(f))
			ret = -1;
	}
	json_object_put(r);
	return ret;
}
