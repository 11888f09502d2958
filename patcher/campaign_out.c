// SPDX-License-Identifier: MIT
/*
 * campaign_out.c - what a campaign records while it runs, handed to the
 * sink (include/campaign.h) under one lock:
 *
 *   events: "probe", "hit", "patch_phase", "expect", "log", "guest_fault",
 *           each stamped with t_us since the campaign started;
 *   trace:  tid 0 the controller (patch phases as nested X slices), tid
 *           1 + N vCPU N (probe hits as thread instants), a C counter for
 *           guest progress.
 *
 * Hits are recorded up to CAMPAIGN_HIT_SAMPLE_PER_S per second; above that
 * they are counted, not written, so a hot probe cannot flood the files.
 * vCPU threads record hits; nobody waits for a vCPU while holding the lock.
 */
#include <inttypes.h>
#include <stdio.h>

#include "campaign_internal.h"

static bool out_on(struct campaign *c)
{
	return c->o->sink && (c->o->events || c->o->trace);
}

int campaign_out_open(struct campaign *c, char *msg, size_t len)
{
	if (!c->o->sink)
		return 0;
	return c->o->sink->open(c, msg, len);
}

void campaign_out_close(struct campaign *c)
{
	if (c->o->sink)
		c->o->sink->close(c);
}

void campaign_event(struct campaign *c, const char *type, const struct campaign_kv *kv, size_t n)
{
	if (!out_on(c))
		return;
	pthread_mutex_lock(&c->out.lock);
	c->o->sink->event(c, campaign_t_us(c), type, kv, n);
	pthread_mutex_unlock(&c->out.lock);
}

static double out_ts(struct campaign *c, uint64_t ns)
{
	return ns > c->t0_ns ? (double)(ns - c->t0_ns) / 1000.0 : 0.0;
}

static void out_trace(struct campaign *c, char ph, const char *name, const char *cat, int tid,
		      uint64_t ns, double dur_us, const struct campaign_kv *kv, size_t n)
{
	if (!out_on(c))
		return;
	pthread_mutex_lock(&c->out.lock);
	c->o->sink->trace(c, ph, name, cat, tid, out_ts(c, ns), dur_us, kv, n);
	pthread_mutex_unlock(&c->out.lock);
}

void campaign_trace_threads(struct campaign *c, unsigned int nr_vcpus)
{
	char name[32];

	for (unsigned int i = 0; i < nr_vcpus; i++) {
		snprintf(name, sizeof(name), "vCPU %u", i);
		out_trace(c, 'M', name, NULL, (int)i + 1, c->t0_ns, 0, NULL, 0);
	}
}

void campaign_trace_slice(struct campaign *c, const char *name, const char *cat,
			  uint64_t start_ns, uint64_t end_ns, const struct campaign_kv *kv, size_t n)
{
	out_trace(c, 'X', name, cat, 0, start_ns,
		  end_ns > start_ns ? (double)(end_ns - start_ns) / 1000.0 : 0.0, kv, n);
}

void campaign_trace_counter(struct campaign *c, const char *name, const struct campaign_kv *kv,
			    size_t n)
{
	out_trace(c, 'C', name, NULL, 0, campaign_now_ns(), 0, kv, n);
}

void campaign_phase_done(struct campaign *c, const struct campaign_phase *ph)
{
	struct campaign_kv kv[] = { KV_I("depth", ph->depth) };

	campaign_trace_slice(c, ph->name, "patch", ph->start_ns, ph->end_ns, kv, KVN(kv));
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

	if (!out_on(c))
		return;
	now = campaign_now_ns();
	sec = (now - c->t0_ns) / 1000000000ull;
	snprintf(rip, sizeof(rip), "0x%" PRIx64, (uint64_t)h->regs->rip);
	pthread_mutex_lock(&o->lock);
	if (sec != o->window_s) {
		o->window_s = sec;
		o->window_hits = 0;
	}
	if (++o->window_hits > CAMPAIGN_HIT_SAMPLE_PER_S) {
		o->hits_dropped++;
	} else {
		struct campaign_kv ev[] = {
			KV_S("where", cp->where), KV_U("addr", cp->addr), KV_I("vcpu", h->vcpu),
			KV_I("task", h->task), KV_S("verdict", verdict_name(v)),
		};
		struct campaign_kv args[] = {
			KV_S("rip", rip), KV_I("task", h->task), KV_S("verdict", verdict_name(v)),
		};

		c->o->sink->event(c, (now - c->t0_ns) / 1000, "hit", ev, KVN(ev));
		c->o->sink->trace(c, 'i', cp->where, "probe", (int)h->vcpu + 1, out_ts(c, now), 0,
				  args, KVN(args));
	}
	pthread_mutex_unlock(&o->lock);
}
