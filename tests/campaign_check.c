// SPDX-License-Identifier: MIT
/*
 * campaign_check.c - see campaign_check.h.
 *
 * The trace rules checked are the ones the Chrome trace-event format
 * (and Perfetto's JSON importer) impose: a {"traceEvents": [...]} object;
 * every event has a string name, a known ph, integer pid and tid; every
 * non-metadata event a numeric ts >= 0; X has dur >= 0; i has scope s in
 * t/p/g; C has an args object of numbers; M names a process or thread; and
 * X slices on one (pid, tid) nest perfectly (Perfetto drops overlapping
 * ones).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "campaign_check.h"
#include "campaign_fake.h"

const char *campaign_check_tmp(const char *name)
{
	static char paths[8][96];
	static const char *names[8];

	for (size_t i = 0; i < 8; i++) {
		if (!names[i]) {
			names[i] = name;
			snprintf(paths[i], sizeof(paths[i]), "/tmp/vmpoke-%d-%s", (int)getpid(), name);
		}
		if (!strcmp(names[i], name))
			return paths[i];
	}
	return "/tmp/vmpoke-too-many-names";
}

char *campaign_check_script(const char *lua)
{
	char *p = strdup("/tmp/vmpoke-script-XXXXXX.lua");
	int fd = p ? mkstemps(p, 4) : -1;
	ssize_t n = fd >= 0 ? write(fd, lua, strlen(lua)) : -1;

	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)strlen(lua))
		fprintf(stderr, "\n  cannot write a script to %s\n", p ? p : "/tmp");
	return p;
}

int campaign_check_run_fake(const char *lua, const char *json_path, const char *trace_path,
			    const char *events_path, struct fake_be **fake)
{
	return campaign_check_run_fake_timeout(lua, json_path, trace_path, events_path, 0, fake);
}

int campaign_check_run_fake_timeout(const char *lua, const char *json_path,
				    const char *trace_path, const char *events_path,
				    unsigned int timeout_s, struct fake_be **fake)
{
	struct fake_be *f = fake_be_new();
	int rc = campaign_check_run_on(f, lua, json_path, trace_path, events_path, timeout_s);

	if (fake)
		*fake = f;
	else
		fake_be_free(f);
	return rc;
}

int campaign_check_run_on(struct fake_be *f, const char *lua, const char *json_path,
			  const char *trace_path, const char *events_path, unsigned int timeout_s)
{
	char path[] = "/tmp/vmpoke-campaign-XXXXXX.lua";
	struct campaign_opts o;
	FILE *fp;
	int fd, rc;

	fd = mkstemps(path, 4);
	if (fd < 0)
		return -1;
	fp = fdopen(fd, "w");
	if (!fp) {
		close(fd);
		return -1;
	}
	fputs(lua, fp);
	fclose(fp);
	memset(&o, 0, sizeof(o));
	o.script = path;
	o.image = "fake.img";
	o.scenario = -1;
	o.json = json_path;
	o.trace = trace_path;
	o.events = events_path;
	o.quiet = true;
	o.sink = &campaign_files;
	o.handler_insn_limit = 200000;
	o.timeout_s = timeout_s;
	rc = f ? campaign_run(&o, &fake_ops, f) : -1;
	unlink(path);
	return rc;
}

/* Each element of r[key] (an array) is an object with every key of keys. */
static int check_each(json_object *r, const char *key, const char *const *keys, size_t nk,
		      char *why, size_t len)
{
	json_object *a, *v;

	if (!json_object_object_get_ex(r, key, &a) || !json_object_is_type(a, json_type_array)) {
		snprintf(why, len, "report: \"%s\" is not an array", key);
		return -1;
	}
	for (size_t i = 0; i < json_object_array_length(a); i++)
		for (size_t k = 0; k < nk; k++)
			if (!json_object_object_get_ex(json_object_array_get_idx(a, i), keys[k], &v)) {
				snprintf(why, len, "%s[%zu]: no key \"%s\"", key, i, keys[k]);
				return -1;
			}
	return 0;
}

/* Every livepatch's "state" is one of lp.state's, its "pending" entries whole. */
static int check_livepatches(json_object *r, char *why, size_t len)
{
	static const char *const states[] = { "unpatched", "patching", "patched", "unpatching" };
	static const char *const pend_keys[] = { "task", "vcpu", "reason", "function",
						 "return_address", "addr", "why" };
	json_object *a, *v;

	json_object_object_get_ex(r, "livepatches", &a);
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		json_object *lp = json_object_array_get_idx(a, i);
		const char *st;
		bool known = false;

		json_object_object_get_ex(lp, "state", &v);
		st = json_object_get_string(v);
		for (size_t k = 0; st && k < sizeof(states) / sizeof(states[0]); k++)
			known |= !strcmp(st, states[k]);
		if (!known) {
			snprintf(why, len, "livepatches[%zu]: state \"%s\"", i, st ? st : "(null)");
			return -1;
		}
		if (check_each(lp, "pending", pend_keys, sizeof(pend_keys) / sizeof(pend_keys[0]),
			       why, len) ||
		    check_each(lp, "functions", (const char *const[]){ "old", "new" }, 2, why, len))
			return -1;
	}
	return 0;
}

int campaign_check_report(json_object *r, char *why, size_t len)
{
	static const char *const keys[] = { "command", "script", "exit_code", "restored",
					    "guest", "probes", "patches", "static_keys",
					    "static_calls", "livepatches", "expectations" };
	static const char *const probe_keys[] = { "where", "addr", "kind", "hits", "missed",
						  "per_vcpu", "refused" };
	static const char *const patch_keys[] = { "sites", "syncs", "us", "refused" };
	static const char *const key_keys[] = { "name", "original", "before_restore", "enabled",
						"restored" };
	static const char *const call_keys[] = { "name", "original", "before_restore", "current",
						 "restored" };
	static const char *const lp_keys[] = { "functions", "before_restore", "state", "restored",
					       "forced", "retries", "switched", "pending",
					       "history", "syncs", "us" };
	json_object *v;

	if (!r || !json_object_is_type(r, json_type_object)) {
		snprintf(why, len, "the report is not a JSON object");
		return -1;
	}
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		if (!json_object_object_get_ex(r, keys[i], &v)) {
			snprintf(why, len, "report: no key \"%s\"", keys[i]);
			return -1;
		}
#define EACH(key, k)	check_each(r, key, k, sizeof(k) / sizeof((k)[0]), why, len)
	if (EACH("probes", probe_keys) || EACH("patches", patch_keys) ||
	    EACH("static_keys", key_keys) || EACH("static_calls", call_keys) ||
	    EACH("livepatches", lp_keys))
		return -1;
#undef EACH
	return check_livepatches(r, why, len);
}

json_object *campaign_check_at(json_object *r, const char *key, size_t i)
{
	json_object *a;

	if (!r || !json_object_object_get_ex(r, key, &a) || !json_object_is_type(a, json_type_array))
		return NULL;
	return json_object_array_get_idx(a, i);
}

int campaign_check_json(json_object *got, const char *want, char *why, size_t len)
{
	json_object *w = json_tokener_parse(want);
	int ret = w && got && json_object_equal(got, w) ? 0 : -1;

	if (ret)
		snprintf(why, len, "\n  got  %s\n  want %s",
			 got ? json_object_to_json_string(got) : "(nothing)", want);
	json_object_put(w);
	return ret;
}

int campaign_check_expectations(json_object *r, size_t min, char *why, size_t len)
{
	json_object *a, *e, *v;
	size_t n;

	if (!json_object_object_get_ex(r, "expectations", &a)) {
		snprintf(why, len, "no expectations");
		return -1;
	}
	n = json_object_array_length(a);
	for (size_t i = 0; i < n; i++) {
		e = json_object_array_get_idx(a, i);
		if (json_object_object_get_ex(e, "ok", &v) && !json_object_get_boolean(v)) {
			json_object_object_get_ex(e, "message", &v);
			snprintf(why, len, "expectation failed: %s", json_object_get_string(v));
			return -1;
		}
	}
	if (n < min) {
		snprintf(why, len, "%zu expectations, want at least %zu", n, min);
		return -1;
	}
	return 0;
}

struct slice {
	long tid;
	double ts, end;
};

static int slice_cmp(const void *a, const void *b)
{
	const struct slice *x = a, *y = b;

	if (x->tid != y->tid)
		return x->tid < y->tid ? -1 : 1;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->end > y->end ? -1 : x->end < y->end;	/* parents first */
}

/* X slices of one tid, sorted: each must end before its parent does. */
static int trace_nesting(struct slice *s, size_t n, char *why, size_t len)
{
	struct slice *stack[64];
	size_t depth = 0;

	qsort(s, n, sizeof(*s), slice_cmp);
	for (size_t i = 0; i < n; i++) {
		if (i && s[i].tid != s[i - 1].tid)
			depth = 0;
		while (depth && stack[depth - 1]->end <= s[i].ts + 1e-3)
			depth--;
		if (depth && s[i].end > stack[depth - 1]->end + 1e-3) {
			snprintf(why, len, "X slice at ts %.3f (tid %ld) overlaps its parent "
				 "[%.3f, %.3f) without nesting", s[i].ts, s[i].tid,
				 stack[depth - 1]->ts, stack[depth - 1]->end);
			return -1;
		}
		if (depth < 64)
			stack[depth++] = &s[i];
	}
	return 0;
}

static int trace_event(json_object *ev, size_t i, struct slice *sl, size_t *nsl,
		       char *why, size_t len)
{
	json_object *name, *ph, *pid, *tid, *ts, *dur, *s, *args;
	const char *p;

	if (!json_object_is_type(ev, json_type_object) ||
	    !json_object_object_get_ex(ev, "name", &name) ||
	    !json_object_is_type(name, json_type_string) ||
	    !json_object_object_get_ex(ev, "ph", &ph) ||
	    !json_object_is_type(ph, json_type_string) ||
	    !json_object_object_get_ex(ev, "pid", &pid) ||
	    !json_object_is_type(pid, json_type_int) ||
	    !json_object_object_get_ex(ev, "tid", &tid) ||
	    !json_object_is_type(tid, json_type_int)) {
		snprintf(why, len, "event %zu: wants string name and ph, integer pid and tid", i);
		return -1;
	}
	p = json_object_get_string(ph);
	if (!strcmp(p, "M")) {
		if (strcmp(json_object_get_string(name), "process_name") &&
		    strcmp(json_object_get_string(name), "thread_name")) {
			snprintf(why, len, "event %zu: unknown metadata", i);
			return -1;
		}
		return 0;
	}
	if (!json_object_object_get_ex(ev, "ts", &ts) ||
	    !(json_object_is_type(ts, json_type_double) || json_object_is_type(ts, json_type_int)) ||
	    json_object_get_double(ts) < 0) {
		snprintf(why, len, "event %zu (%s): no numeric ts >= 0", i, p);
		return -1;
	}
	if (!strcmp(p, "X")) {
		if (!json_object_object_get_ex(ev, "dur", &dur) || json_object_get_double(dur) < 0) {
			snprintf(why, len, "event %zu: X without dur >= 0", i);
			return -1;
		}
		sl[*nsl].tid = json_object_get_int(tid);
		sl[*nsl].ts = json_object_get_double(ts);
		sl[*nsl].end = sl[*nsl].ts + json_object_get_double(dur);
		(*nsl)++;
	} else if (!strcmp(p, "i") || !strcmp(p, "I")) {
		if (json_object_object_get_ex(ev, "s", &s) &&
		    !strchr("tpg", json_object_get_string(s)[0])) {
			snprintf(why, len, "event %zu: instant scope must be t, p or g", i);
			return -1;
		}
	} else if (!strcmp(p, "C")) {
		if (!json_object_object_get_ex(ev, "args", &args) ||
		    !json_object_is_type(args, json_type_object)) {
			snprintf(why, len, "event %zu: C without args", i);
			return -1;
		}
		json_object_object_foreach(args, k, v) {
			if (!json_object_is_type(v, json_type_int) &&
			    !json_object_is_type(v, json_type_double)) {
				snprintf(why, len, "event %zu: counter %s is not a number", i, k);
				return -1;
			}
		}
	} else if (strcmp(p, "B") && strcmp(p, "E")) {
		snprintf(why, len, "event %zu: unexpected phase '%s'", i, p);
		return -1;
	}
	return 0;
}

int campaign_check_trace(const char *path, char *why, size_t len)
{
	json_object *t = json_object_from_file(path), *evs;
	struct slice *sl = NULL;
	size_t n, nsl = 0;
	int ret = -1;

	if (!t || !json_object_is_type(t, json_type_object) ||
	    !json_object_object_get_ex(t, "traceEvents", &evs) ||
	    !json_object_is_type(evs, json_type_array)) {
		snprintf(why, len, "%s: not a {\"traceEvents\": [...]} JSON object", path);
		goto out;
	}
	n = json_object_array_length(evs);
	sl = calloc(n + 1, sizeof(*sl));
	if (!sl)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (trace_event(json_object_array_get_idx(evs, i), i, sl, &nsl, why, len))
			goto out;
	ret = trace_nesting(sl, nsl, why, len);
out:
	free(sl);
	json_object_put(t);
	return ret;
}

bool campaign_check_trace_has(const char *path, const char *ph, const char *name)
{
	json_object *t = json_object_from_file(path), *evs, *v;
	bool found = false;

	if (t && json_object_object_get_ex(t, "traceEvents", &evs))
		for (size_t i = 0; !found && i < json_object_array_length(evs); i++) {
			json_object *ev = json_object_array_get_idx(evs, i);

			found = json_object_object_get_ex(ev, "ph", &v) &&
				!strcmp(json_object_get_string(v), ph) &&
				json_object_object_get_ex(ev, "name", &v) &&
				!strcmp(json_object_get_string(v), name);
		}
	json_object_put(t);
	return found;
}

int campaign_check_events(const char *path, char *why, size_t len)
{
	static const char *const types[] = { "probe", "hit", "patch_phase", "expect", "log",
					     "guest_fault", "static_key",
					     "static_call", "livepatch" };
	FILE *f = fopen(path, "r");
	char line[8192];
	size_t n = 0;
	int ret = 0;

	if (!f) {
		snprintf(why, len, "%s: cannot open", path);
		return -1;
	}
	while (!ret && fgets(line, sizeof(line), f)) {
		json_object *o = json_tokener_parse(line), *t, *ty;
		bool known = false;

		n++;
		if (!o || !json_object_object_get_ex(o, "t_us", &t) ||
		    !json_object_object_get_ex(o, "type", &ty)) {
			snprintf(why, len, "%s:%zu: not an object with t_us and type", path, n);
			ret = -1;
		} else {
			for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
				known |= !strcmp(types[i], json_object_get_string(ty));
			if (!known) {
				snprintf(why, len, "%s:%zu: unknown type '%s'", path, n,
					 json_object_get_string(ty));
				ret = -1;
			}
		}
		json_object_put(o);
	}
	fclose(f);
	return ret;
}
