// SPDX-License-Identifier: MIT
/*
 * campaign_out.c - what a campaign writes while it runs:
 *
 *   --events FILE  NDJSON, one object per line as it happens, each with
 *                  "t_us" (since the campaign started) and "type": probe,
 *                  hit, patch_phase, expect, log, guest_fault.  Hits are
 *                  written up to CAMPAIGN_HIT_SAMPLE_PER_S per second;
 *                  above that they are counted, not written.
 *   --trace FILE   Chrome trace-event JSON, {"traceEvents": [...]}, which
 *                  Perfetto and chrome://tracing load: pid 1, tid 0 the
 *                  controller (patch phases as nested X slices), tid 1+N
 *                  vCPU N (probe hits as thread-scoped i events), and a C
 *                  counter "guest progress".  Streamed, so a crash leaves
 *                  every event written so far; the array is closed on exit.
 *
 * vCPU threads write hit events; out.lock serializes them with the
 * controller.  Nobody waits for a vCPU while holding it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "campaign_internal.h"

static FILE *out_open_one(const char *path, const char *what, char *msg, size_t len)
{
	FILE *f;

	if (!strcmp(path, "-"))
		return stdout;
	f = fopen(path, "w");
	if (!f)
		snprintf(msg, len, "%s: cannot create '%s': %s", what, path, strerror(errno));
	return f;
}

int campaign_out_open(struct campaign *c, char *msg, size_t len)
{
	struct campaign_out *o = &c->out;

	if (c->o->events && !(o->events = out_open_one(c->o->events, "--events", msg, len)))
		return -1;
	if (c->o->trace && !(o->trace = out_open_one(c->o->trace, "--trace", msg, len)))
		return -1;
	if (o->trace) {
		fputs("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n"
		      "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
		      "\"args\":{\"name\":\"vmpoke campaign\"}},\n"
		      "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
		      "\"args\":{\"name\":\"controller\"}}", o->trace);
		o->trace_first = false;
	}
	return 0;
}

void campaign_out_close(struct campaign *c)
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

/* out.lock held */
static void event_locked(struct campaign *c, const char *type, json_object *obj)
{
	json_object *ev = json_object_new_object();

	json_object_object_add(ev, "t_us", json_object_new_uint64(campaign_t_us(c)));
	json_object_object_add(ev, "type", json_object_new_string(type));
	if (obj) {
		json_object_object_foreach(obj, k, v)
			json_object_object_add(ev, k, json_object_get(v));
	}
	fprintf(c->out.events, "%s\n", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
	fflush(c->out.events);
	json_object_put(ev);
}

void campaign_event(struct campaign *c, const char *type, json_object *obj)
{
	if (c->out.events) {
		pthread_mutex_lock(&c->out.lock);
		event_locked(c, type, obj);
		pthread_mutex_unlock(&c->out.lock);
	}
	json_object_put(obj);
}

/* out.lock held; takes ev */
static void trace_locked(struct campaign *c, json_object *ev)
{
	fprintf(c->out.trace, ",\n%s", json_object_to_json_string_ext(ev, JSON_C_TO_STRING_PLAIN));
	json_object_put(ev);
}

static json_object *trace_ev(const char *name, const char *ph, double ts_us, int tid)
{
	json_object *ev = json_object_new_object();

	json_object_object_add(ev, "name", json_object_new_string(name));
	json_object_object_add(ev, "ph", json_object_new_string(ph));
	json_object_object_add(ev, "ts", json_object_new_double(ts_us));
	json_object_object_add(ev, "pid", json_object_new_int(1));
	json_object_object_add(ev, "tid", json_object_new_int(tid));
	return ev;
}

static double trace_ts(struct campaign *c, uint64_t ns)
{
	return ns > c->t0_ns ? (double)(ns - c->t0_ns) / 1000.0 : 0.0;
}

void campaign_trace_threads(struct campaign *c, unsigned int nr_vcpus)
{
	char name[32];

	if (!c->out.trace)
		return;
	pthread_mutex_lock(&c->out.lock);
	for (unsigned int i = 0; i < nr_vcpus; i++) {
		json_object *ev = trace_ev("thread_name", "M", 0, (int)i + 1);
		json_object *args = json_object_new_object();

		json_object_object_del(ev, "ts");
		snprintf(name, sizeof(name), "vCPU %u", i);
		json_object_object_add(args, "name", json_object_new_string(name));
		json_object_object_add(ev, "args", args);
		trace_locked(c, ev);
	}
	pthread_mutex_unlock(&c->out.lock);
}

void campaign_trace_slice(struct campaign *c, const char *name, const char *cat,
			  uint64_t start_ns, uint64_t end_ns, json_object *args)
{
	json_object *ev;

	if (!c->out.trace) {
		json_object_put(args);
		return;
	}
	ev = trace_ev(name, "X", trace_ts(c, start_ns), 0);
	json_object_object_add(ev, "cat", json_object_new_string(cat));
	json_object_object_add(ev, "dur", json_object_new_double(
		end_ns > start_ns ? (double)(end_ns - start_ns) / 1000.0 : 0.0));
	if (args)
		json_object_object_add(ev, "args", args);
	pthread_mutex_lock(&c->out.lock);
	trace_locked(c, ev);
	pthread_mutex_unlock(&c->out.lock);
}

void campaign_trace_counter(struct campaign *c, const char *name, json_object *args)
{
	json_object *ev;

	if (!c->out.trace) {
		json_object_put(args);
		return;
	}
	ev = trace_ev(name, "C", trace_ts(c, campaign_now_ns()), 0);
	json_object_object_add(ev, "args", args);
	pthread_mutex_lock(&c->out.lock);
	trace_locked(c, ev);
	pthread_mutex_unlock(&c->out.lock);
}

void campaign_phase_done(struct campaign *c, const struct campaign_phase *ph)
{
	json_object *args = json_object_new_object();

	json_object_object_add(args, "depth", json_object_new_int((int)ph->depth));
	campaign_trace_slice(c, ph->name, "patch", ph->start_ns, ph->end_ns, args);
}

static const char *verdict_name(enum campaign_verdict v)
{
	return v == CAMPAIGN_SKIP ? "skip" : v == CAMPAIGN_MISSED ? "missed" : "resume";
}

void campaign_out_hit(struct campaign *c, struct campaign_probe *cp, struct campaign_hit *h,
		      enum campaign_verdict v)
{
	struct campaign_out *o = &c->out;
	uint64_t now, sec;
	char rip[24];

	if (!o->events && !o->trace)
		return;
	now = campaign_now_ns();
	sec = (now - c->t0_ns) / 1000000000ull;
	pthread_mutex_lock(&o->lock);
	if (sec != o->window_s) {
		o->window_s = sec;
		o->window_hits = 0;
	}
	if (++o->window_hits > CAMPAIGN_HIT_SAMPLE_PER_S) {
		o->hits_dropped++;
		pthread_mutex_unlock(&o->lock);
		return;
	}
	snprintf(rip, sizeof(rip), "0x%" PRIx64, cp->addr);
	if (o->events) {
		json_object *ev = json_object_new_object();

		json_object_object_add(ev, "where", json_object_new_string(cp->where));
		json_object_object_add(ev, "addr", json_object_new_uint64(cp->addr));
		json_object_object_add(ev, "vcpu", json_object_new_int((int)h->vcpu));
		json_object_object_add(ev, "task", json_object_new_int(h->task));
		json_object_object_add(ev, "verdict", json_object_new_string(verdict_name(v)));
		event_locked(c, "hit", ev);
		json_object_put(ev);
	}
	if (o->trace) {
		json_object *ev = trace_ev(cp->where, "i", trace_ts(c, now), (int)h->vcpu + 1);
		json_object *args = json_object_new_object();

		json_object_object_add(ev, "cat", json_object_new_string("probe"));
		json_object_object_add(ev, "s", json_object_new_string("t"));
		json_object_object_add(args, "rip", json_object_new_string(rip));
		json_object_object_add(args, "task", json_object_new_int(h->task));
		json_object_object_add(args, "verdict", json_object_new_string(verdict_name(v)));
		json_object_object_add(ev, "args", args);
		trace_locked(c, ev);
	}
	pthread_mutex_unlock(&o->lock);
}
