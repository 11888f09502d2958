// SPDX-License-Identifier: MIT
/*
 * campaign_files.c - the campaign's files, written with json-c (the sink
 * of include/campaign.h):
 *
 *   --events FILE  NDJSON, one object per line as it happens, each with
 *                  "t_us" and "type";
 *   --trace FILE   Chrome trace-event JSON {"traceEvents": [...]} that
 *                  Perfetto and chrome://tracing load.  Streamed, one
 *                  event per line, so a crash leaves every event written
 *                  so far; the array is closed on exit;
 *   --json FILE    the report, one document, written after every probe,
 *                  patch, key, call and livepatch was undone: "command",
 *                  "script", "exit_code", "restored", "guest", "probes",
 *                  "patches", "static_keys", "static_calls", "livepatches",
 *                  "expectations".
 */
#include <errno.h>
#include <json.h>
#include <string.h>

#include "../campaign_internal.h"

static FILE *files_open_one(const char *path, const char *what, char *msg, size_t len)
{
	FILE *f;

	if (!strcmp(path, "-"))
		return stdout;
	f = fopen(path, "w");
	if (!f)
		snprintf(msg, len, "%s: cannot create '%s': %s", what, path, strerror(errno));
	return f;
}

static int files_open(struct campaign *c, char *msg, size_t len)
{
	struct campaign_out *o = &c->out;

	if (c->o->events && !(o->events = files_open_one(c->o->events, "--events", msg, len)))
		return -1;
	if (c->o->trace && !(o->trace = files_open_one(c->o->trace, "--trace", msg, len)))
		return -1;
	if (o->trace)
		fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n"
		      "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
		      "\"args\":{\"name\":\"vmpoke campaign\"}},\n"
		      "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
		      "\"args\":{\"name\":\"controller\"}}", o->trace);
	return 0;
}

static void files_close(struct campaign *c)
{
	struct campaign_out *o = &c->out;

	if (o->trace) {
		fputs("\n]}\n", o->trace);
		if (o->trace != stdout)
			fclose(o->trace);
		else
			fflush(stdout);
	}
	if (o->events && o->events != stdout)
		fclose(o->events);
	o->trace = o->events = NULL;
}

static json_object *files_kv(json_object *o, const struct campaign_kv *kv, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		json_object *v = NULL;

		switch (kv[i].type) {
		case CAMPAIGN_KV_STR:
			v = kv[i].s ? json_object_new_string(kv[i].s) : NULL;
			break;
		case CAMPAIGN_KV_U64:
			v = json_object_new_uint64(kv[i].u);
			break;
		case CAMPAIGN_KV_I64:
			v = json_object_new_int64(kv[i].i);
			break;
		case CAMPAIGN_KV_BOOL:
			v = json_object_new_boolean(kv[i].b);
			break;
		case CAMPAIGN_KV_DBL:
			v = json_object_new_double(kv[i].d);
			break;
		}
		json_object_object_add(o, kv[i].key, v);
	}
	return o;
}

static void files_line(FILE *f, json_object *o, const char *prefix)
{
	fprintf(f, "%s%s", prefix, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
}

static void files_event(struct campaign *c, uint64_t t_us, const char *type,
			const struct campaign_kv *kv, size_t n)
{
	json_object *o;

	if (!c->out.events)
		return;
	o = json_object_new_object();
	json_object_object_add(o, "t_us", json_object_new_uint64(t_us));
	json_object_object_add(o, "type", json_object_new_string(type));
	files_line(c->out.events, files_kv(o, kv, n), "");
	fputc('\n', c->out.events);
	fflush(c->out.events);
}

static void files_trace(struct campaign *c, char ph, const char *name, const char *cat, int tid,
			double ts_us, double dur_us, const struct campaign_kv *kv, size_t n)
{
	char phs[2] = { ph, 0 };
	json_object *o;

	if (!c->out.trace)
		return;
	o = json_object_new_object();
	json_object_object_add(o, "name", json_object_new_string(ph == 'M' ? "thread_name" : name));
	json_object_object_add(o, "ph", json_object_new_string(phs));
	json_object_object_add(o, "pid", json_object_new_int(1));
	json_object_object_add(o, "tid", json_object_new_int(tid));
	if (ph == 'M') {
		json_object *args = json_object_new_object();

		json_object_object_add(args, "name", json_object_new_string(name));
		json_object_object_add(o, "args", args);
		files_line(c->out.trace, o, ",\n");
		return;
	}
	json_object_object_add(o, "ts", json_object_new_double(ts_us));
	if (cat)
		json_object_object_add(o, "cat", json_object_new_string(cat));
	if (ph == 'X')
		json_object_object_add(o, "dur", json_object_new_double(dur_us));
	if (ph == 'i')
		json_object_object_add(o, "s", json_object_new_string("t"));
	if (n)
		json_object_object_add(o, "args", files_kv(json_object_new_object(), kv, n));
	files_line(c->out.trace, o, ",\n");
}

/* --- the report -------------------------------------------------------------- */

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
	/* asked for optimized/auto and stayed INT3: the named rule */
	json_object_object_add(o, "optimize_refused", cp->kind_refused[0] ?
			       json_object_new_string(cp->kind_refused) : NULL);
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
		const char *why = b->sites[i].refused[0] ? b->sites[i].refused
			       : !b->applied && b->error[0] ? b->error : NULL;

		campaign_symbolize(c->ops->symtab(c->be), b->sites[i].at, where, sizeof(where));
		json_object_object_add(s, "at", json_object_new_uint64(b->sites[i].at));
		json_object_object_add(s, "where", json_object_new_string(where));
		json_object_object_add(s, "len", json_object_new_int(b->sites[i].len));
		json_object_array_add(sites, s);
		if (why) {
			json_object *r = json_object_new_object();

			json_object_object_add(r, "at", json_object_new_uint64(b->sites[i].at));
			json_object_object_add(r, "reason", json_object_new_string(why));
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
	struct campaign_kv kv[] = {
		KV_S("image", c->cfg.image), KV_B("booted", c->booted),
		KV_I("vcpus", c->cfg.vcpus), KV_I("tasks", c->cfg.tasks),
		KV_B("healthy", !campaign_guest_faulted(c)),
	};
	struct campaign_kv st[] = {
		KV_U("iterations", c->stats.iterations),
		KV_U("check_failures", c->stats.check_failures),
		KV_U("guest_faults", c->stats.guest_faults),
		KV_S("outcome", c->stats.ended ? c->stats.outcome : NULL),
	};

	files_kv(g, kv, KVN(kv));
	if (c->have_stats)
		files_kv(g, st, KVN(st));
	return g;
}

/* A symbol (or "0x..." outside every symbol), null for 0. */
static json_object *report_sym(struct campaign *c, uint64_t addr)
{
	char buf[128];

	if (!addr)
		return NULL;
	campaign_symbolize(c->ops->symtab(c->be), addr, buf, sizeof(buf));
	return json_object_new_string(buf);
}

static json_object *report_str(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

/* The fields of lp.pending, every key present (null where Lua has nil). */
static json_object *report_straggler(struct campaign *c, const struct klp_straggler *s)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "task", json_object_new_uint64(s->task));
	json_object_object_add(o, "vcpu", json_object_new_uint64(s->vcpu));
	json_object_object_add(o, "reason", report_str(s->reason));
	json_object_object_add(o, "function", s->func[0] ? json_object_new_string(s->func) : NULL);
	json_object_object_add(o, "return_address", report_sym(c, s->addr));
	json_object_object_add(o, "addr", s->addr ? json_object_new_uint64(s->addr) : NULL);
	json_object_object_add(o, "why", json_object_new_string(s->detail));
	return o;
}

/*
 * One vm:livepatch(), read now: after the exit's undo, so "state" is
 * "unpatched" unless it was forced or its last transition did not finish;
 * "before_restore" is what the script left.
 */
static json_object *report_livepatch(struct campaign *c, const struct campaign_livepatch *lp)
{
	json_object *o = json_object_new_object(), *a = json_object_new_array();
	struct klp_info in;

	for (size_t i = 0; i < lp->n; i++) {
		json_object *f = json_object_new_object();

		json_object_object_add(f, "old", report_str(lp->old[i]));
		json_object_object_add(f, "new", report_str(lp->new[i]));
		json_object_array_add(a, f);
	}
	json_object_object_add(o, "functions", a);
	memset(&in, 0, sizeof(in));
	c->ops->livepatch_info(c->be, lp->h, &in);
	json_object_object_add(o, "before_restore",
			       json_object_new_string(klp_state_name(lp->before_restore)));
	json_object_object_add(o, "state", json_object_new_string(klp_state_name(in.state)));
	json_object_object_add(o, "restored", json_object_new_boolean(in.state == KLP_UNPATCHED));
	json_object_object_add(o, "forced", json_object_new_boolean(in.forced));
	json_object_object_add(o, "retries", json_object_new_uint64(in.retries));
	json_object_object_add(o, "switched", json_object_new_uint64(in.switched));
	a = json_object_new_array();
	for (size_t i = 0; i < in.nr_pending; i++)
		json_object_array_add(a, report_straggler(c, &in.pending[i]));
	json_object_object_add(o, "pending", a);
	a = json_object_new_array();
	for (size_t i = 0; i < in.nr_history; i++) {
		struct campaign_kv h[] = {
			KV_U("retry", in.history[i].retry), KV_D("t", in.history[i].t_s),
			KV_U("switched", in.history[i].switched),
			KV_U("pending", in.history[i].pending),
		};

		json_object_array_add(a, files_kv(json_object_new_object(), h, KVN(h)));
	}
	json_object_object_add(o, "history", a);
	json_object_object_add(o, "syncs", json_object_new_uint64(in.syncs));
	json_object_object_add(o, "us", json_object_new_double(in.us));
	return o;
}

/* A key's value as JSON: enabled true/false; a call's: its target's symbol. */
static json_object *report_kind_value(struct campaign *c, enum campaign_kind kind, uint64_t v)
{
	return kind == CAMPAIGN_KIND_KEY ? json_object_new_boolean(v != 0) : report_sym(c, v);
}

/*
 * Each key or call of that kind the script changed: "original" (before
 * the script), "before_restore" (what the script last set), "enabled" or
 * "current" read back now, after the exit's undo, and "restored".
 */
static json_object *report_kinds(struct campaign *c, enum campaign_kind kind)
{
	json_object *a = json_object_new_array();

	for (size_t i = 0; i < c->nr_changed; i++) {
		const struct campaign_changed *ch = &c->changed[i];
		json_object *o;
		uint64_t now;
		bool read;

		if (ch->kind != kind)
			continue;
		o = json_object_new_object();
		read = !campaign_kind_now(c, ch, &now);
		json_object_object_add(o, "name", json_object_new_string(ch->name));
		json_object_object_add(o, "original", report_kind_value(c, kind, ch->orig));
		json_object_object_add(o, "before_restore", report_kind_value(c, kind, ch->cur));
		json_object_object_add(o, kind == CAMPAIGN_KIND_KEY ? "enabled" : "current",
				       read ? report_kind_value(c, kind, now) : NULL);
		json_object_object_add(o, "restored",
				       json_object_new_boolean(read && now == ch->orig));
		json_object_array_add(a, o);
	}
	return a;
}

static int files_report(struct campaign *c, int exit_code)
{
	struct campaign_kv head[] = {
		KV_S("command", c->o->command ? c->o->command : "campaign"),
		KV_S("script", c->script_name), KV_I("exit_code", exit_code),
		KV_B("restored", c->restored), KV_S("error", c->error[0] ? c->error : NULL),
		KV_U("hit_events_dropped", c->out.hits_dropped),
	};
	json_object *r, *a;
	FILE *f;
	int ret = 0;

	if (!c->o->json)
		return 0;
	r = files_kv(json_object_new_object(), head, KVN(head));
	json_object_object_add(r, "guest", report_guest(c));
	a = json_object_new_array();
	for (size_t i = 0; i < c->nr_probes; i++)
		json_object_array_add(a, report_probe(c, c->probes[i]));
	json_object_object_add(r, "probes", a);
	a = json_object_new_array();
	for (size_t i = 0; i < c->nr_batches; i++)
		json_object_array_add(a, report_batch(c, c->batches[i]));
	json_object_object_add(r, "patches", a);
	/*
	 * Keys and calls in two arrays, not one "kinds" array with a "kind"
	 * field: a key's value is a boolean and a call's a symbol, and the
	 * arrays read as vm:static_keys() and vm:static_calls() do.
	 */
	json_object_object_add(r, "static_keys", report_kinds(c, CAMPAIGN_KIND_KEY));
	json_object_object_add(r, "static_calls", report_kinds(c, CAMPAIGN_KIND_CALL));
	a = json_object_new_array();
	for (size_t i = 0; i < c->nr_livepatches; i++)
		json_object_array_add(a, report_livepatch(c, &c->livepatches[i]));
	json_object_object_add(r, "livepatches", a);
	a = json_object_new_array();
	for (size_t i = 0; i < c->nr_expects; i++) {
		struct campaign_kv e[] = {
			KV_S("message", c->expects[i].message), KV_B("ok", c->expects[i].ok),
			KV_I("line", c->expects[i].line),
		};

		json_object_array_add(a, files_kv(json_object_new_object(), e, KVN(e)));
	}
	json_object_object_add(r, "expectations", a);

	f = strcmp(c->o->json, "-") ? fopen(c->o->json, "w") : stdout;
	if (!f) {
		fprintf(stderr, "vmpoke campaign: --json: cannot create '%s': %s\n", c->o->json,
			strerror(errno));
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

const struct campaign_sink_ops campaign_files = {
	.open = files_open,
	.event = files_event,
	.trace = files_trace,
	.report = files_report,
	.close = files_close,
};
