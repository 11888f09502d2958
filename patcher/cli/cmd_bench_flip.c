// SPDX-License-Identifier: MIT
/*
 * cmd_bench_flip.c - `vmpoke bench flip`: what flipping a static key from
 * outside costs the guest.  The HOT tasks run every jump-label site in
 * each iteration (guest/jump_label.c); the figure of merit is their
 * iterations per second while jl_key_one flips at 1 kHz, against the same
 * guest undisturbed, in the same run: alternating windows of each, so a
 * busy host slows both alike.  Also: flips per second at full speed, and
 * the microseconds one flip of a key with 1, 16 and 256 sites takes.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <json-c/json.h>

#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "jump_label.h"
#include "patcher.h"
#include "stats.h"
#include "vmm.h"

#define FLIP_READY_MS	120000
#define FLIP_ROUNDS	4		/* undisturbed/flipping window pairs */
#define FLIP_TIMED	40		/* flips per key for flip_us */

struct flip_bench {
	struct vm *vm;
	struct patcher *p;
	struct jl_table *t;
	struct vmpoke_task_table *tab;
	const struct jl_key *hot;	/* the key flipped at 1 kHz */
	bool on;			/* hot's state */
	uint64_t flips, failures;
	char msg[512];
};

struct flip_result {
	double ratio, base_ips, flip_ips, flip_hz, flips_per_s;
	double flip_us[3];
	unsigned int seconds;
	uint64_t check_failures;
};

static const char *const timed_keys[] = { "jl_key_one", "jl_key_16", "jl_key_256" };
static const char *const timed_names[] = { "1", "16", "256" };

static int iterations(struct flip_bench *b, uint64_t *sum)
{
	char msg[256];

	if (vmm_tasks_read(b->vm, b->tab, msg, sizeof(msg))) {
		vmm_error("bench flip: %s", msg);
		return -1;
	}
	*sum = 0;
	for (uint32_t i = 0; i < b->tab->nr_tasks; i++)
		*sum += b->tab->tasks[i].iterations;
	return 0;
}

static int flip(struct flip_bench *b, const struct jl_key *k, bool on, uint64_t *ns)
{
	struct jl_flip_out o;

	if (jl_key_set(b->p, b->vm, k, on, &o, b->msg, sizeof(b->msg))) {
		vmm_error("bench flip: %s: %s", k->name, b->msg);
		return -1;
	}
	if (ns)
		*ns = (uint64_t)(o.us * CLOCK_NS_PER_US);
	b->flips++;
	return 0;
}

/* One window of ns: flipping every period_ns (0: never).  Iterations done. */
static int window(struct flip_bench *b, uint64_t ns, uint64_t period_ns, uint64_t *iters,
		  uint64_t *flips)
{
	uint64_t i0, i1, t0 = clock_now_ns(), next = t0, f0 = b->flips;
	struct timespec ts;

	if (iterations(b, &i0))
		return -1;
	for (;;) {
		uint64_t t = clock_now_ns();

		if (t - t0 >= ns)
			break;
		if (!period_ns) {
			next = t0 + ns;
		} else if (t >= next) {
			if (flip(b, b->hot, !b->on, NULL))
				return -1;
			b->on = !b->on;
			next += period_ns;
			/* fallen behind: keep the rate, do not burst to catch up */
			if (next < t)
				next = t + period_ns;
			continue;
		}
		if (next > t0 + ns)
			next = t0 + ns;
		ts.tv_sec = (time_t)(next / 1000000000ull);
		ts.tv_nsec = (long)(next % 1000000000ull);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	if (iterations(b, &i1))
		return -1;
	*iters += i1 - i0;
	*flips += b->flips - f0;
	return 0;
}

static int run(struct flip_bench *b, struct flip_result *r)
{
	uint64_t win = (uint64_t)r->seconds * 1000000000ull / (2 * FLIP_ROUNDS);
	uint64_t base = 0, busy = 0, flips = 0, dummy = 0, t0, n0;
	uint64_t ns[FLIP_TIMED];

	for (int i = 0; i < FLIP_ROUNDS; i++) {
		if (window(b, win, 0, &base, &dummy) ||
		    window(b, win, 1000000, &busy, &flips))
			return -1;
	}
	r->base_ips = (double)base / ((double)win * FLIP_ROUNDS / 1e9);
	r->flip_ips = (double)busy / ((double)win * FLIP_ROUNDS / 1e9);
	r->ratio = base ? (double)busy / (double)base : 0;
	r->flip_hz = (double)flips / ((double)win * FLIP_ROUNDS / 1e9);
	vmm_info("bench flip: %.0f iterations/s undisturbed, %.0f while flipping at "
		 "%.0f Hz: ratio %.3f", r->base_ips, r->flip_ips, r->flip_hz, r->ratio);
	/* full speed, one second */
	t0 = clock_now_ns();
	n0 = b->flips;
	while (clock_now_ns() - t0 < 1000000000ull) {
		if (flip(b, b->hot, !b->on, NULL))
			return -1;
		b->on = !b->on;
	}
	r->flips_per_s = (double)(b->flips - n0) / ((double)(clock_now_ns() - t0) / 1e9);
	for (size_t k = 0; k < 3; k++) {
		const struct jl_key *key = jl_key_find(b->t, timed_keys[k]);
		struct vmpoke_static_key v;

		if (!key || jl_key_read(b->vm, key, &v)) {
			vmm_error("bench flip: the image has no key %s", timed_keys[k]);
			return -1;
		}
		/* two untimed flips: the sites are prepared on a key's first flips */
		for (int i = 0; i < FLIP_TIMED + 2; i++)
			if (flip(b, key, (v.enabled > 0) ^ !(i & 1), i < 2 ? NULL : &ns[i - 2]))
				return -1;
		r->flip_us[k] = stats_median_us(ns, FLIP_TIMED);
		vmm_info("bench flip: %s (%zu sites): %.1f us per flip (median)", key->name,
			 key->nr_sites, r->flip_us[k]);
	}
	r->check_failures = vmm_hcall_count(b->vm, VMPOKE_HC_CHECK_FAIL);
	return 0;
}

static void emit(const struct flip_result *r, bool json)
{
	if (json) {
		struct json_object *o = json_object_new_object();
		struct json_object *us = json_object_new_object();

		json_object_object_add(o, "throughput_ratio", json_object_new_double(r->ratio));
		json_object_object_add(o, "flips_per_s", json_object_new_double(r->flips_per_s));
		for (size_t k = 0; k < 3; k++)
			json_object_object_add(us, timed_names[k],
					       json_object_new_double(r->flip_us[k]));
		json_object_object_add(o, "flip_us", us);
		json_object_object_add(o, "iterations_per_s",
				       json_object_new_double(r->base_ips));
		json_object_object_add(o, "iterations_per_s_flipping",
				       json_object_new_double(r->flip_ips));
		json_object_object_add(o, "flip_hz", json_object_new_double(r->flip_hz));
		json_object_object_add(o, "seconds", json_object_new_int((int)r->seconds));
		json_object_object_add(o, "check_failures",
				       json_object_new_uint64(r->check_failures));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		return;
	}
	printf("throughput while flipping jl_key_one at %.0f Hz: %.3f of undisturbed "
	       "(%.0f vs %.0f iterations/s)\n", r->flip_hz, r->ratio, r->flip_ips, r->base_ips);
	printf("flips per second at full speed: %.0f\n", r->flips_per_s);
	printf("us per flip: 1 site %.1f, 16 sites %.1f, 256 sites %.1f\n", r->flip_us[0],
	       r->flip_us[1], r->flip_us[2]);
	printf("guest check failures: %" PRIu64 "\n", r->check_failures);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: vmpoke bench flip [IMAGE] [--json] [--vcpus N] [--seconds S]\n");
}

int cmd_bench_flip(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_config cfg = {
		.nr_vcpus = 2, .mem_mib = 64, .tasks = 2, .hz = 1000,
		.scenario = VMPOKE_SCN_HOT, .seed = 1, .quiet = true,
	};
	struct flip_result r = { .seconds = 4 };
	struct flip_bench b = { 0 };
	struct vmm_result res = { 0 };
	char img[4096];
	bool json = false;
	int c, code, ret = VMPOKE_EXIT_HOST;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'v':
			if (cli_parse_uint("bench flip", "--vcpus", optarg, 1,
					   VMPOKE_MAX_VCPUS, &cfg.nr_vcpus))
				return VMPOKE_EXIT_USAGE;
			break;
		case 's':
			if (cli_parse_uint("bench flip", "--seconds", optarg, 1, 3600, &r.seconds))
				return VMPOKE_EXIT_USAGE;
			break;
		case 'h':
			usage(stdout);
			return VMPOKE_EXIT_OK;
		default:
			return cli_getopt_error("bench flip", c, argv);
		}
	}
	cfg.image = cli_bench_image("bench flip", argc, argv, cfg.mem_mib, usage, img, sizeof(img));
	if (!cfg.image)
		return VMPOKE_EXIT_USAGE;
	b.tab = malloc(sizeof(*b.tab));
	if (!b.tab)
		return VMPOKE_EXIT_HOST;
	b.vm = vmm_create(&cfg, &code);
	if (!b.vm) {
		free(b.tab);
		return code;
	}
	vmm_set_check_fail_fatal(b.vm, false);
	b.p = patcher_create(b.vm, NULL);
	if (!b.p)
		goto out_vm;
	if (jl_table_load(cfg.image, vmm_symtab(b.vm), &b.t, b.msg, sizeof(b.msg))) {
		vmm_error("bench flip: %s", b.msg);
		ret = VMPOKE_EXIT_USAGE;
		goto out;
	}
	b.hot = jl_key_find(b.t, "jl_key_one");
	if (!b.hot) {
		vmm_error("bench flip: %s: no static key jl_key_one", cfg.image);
		ret = VMPOKE_EXIT_USAGE;
		goto out;
	}
	if (vmm_start_ready(b.vm, FLIP_READY_MS, &res)) {
		vmm_error("bench flip: %s: the guest did not come up: %s", cfg.image,
			  res.message[0] ? res.message : "no READY");
		ret = VMPOKE_EXIT_GUEST;
		goto out;
	}
	if (run(&b, &r) == 0) {
		emit(&r, json);
		ret = r.check_failures ? VMPOKE_EXIT_GUEST : VMPOKE_EXIT_OK;
		if (r.check_failures)
			vmm_error("bench flip: the guest's checks failed %" PRIu64 " times",
				  r.check_failures);
	}
out:
	vmm_stop(b.vm);
	patcher_destroy(b.p);
out_vm:
	vmm_destroy(b.vm);
	jl_table_free(b.t);
	free(b.tab);
	return ret;
}
