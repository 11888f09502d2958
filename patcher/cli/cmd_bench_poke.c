// SPDX-License-Identifier: MIT
/*
 * bench_poke.c - `vmpoke bench poke`: what one patch costs, with the cost
 * of one sync between phases (vmm_sync_core()) as the unit (the protocol
 * needs three of them, so a single-site patch near 3 syncs means the
 * protocol adds little else).  The acknowledged vmm_sync() is timed too.
 *
 * Sites come from bench_pad_0..63 (guest/bench_sites.S): 4096 NOP5s
 * nobody executes, so every measurement is the protocol alone.  Each site
 * toggles NOP5 <-> JMP rel32 to the next instruction, which is the same
 * thing.  Sites are prepared (validated) before the clock starts, as
 * Linux validates at queue time, for the single site as for the batches;
 * validation is measured separately.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "cli.h"
#include "clock.h"
#include "stats.h"
#include "commands.h"
#include "symtab.h"
#include "../torture.h"
#include "vmm.h"

#define BENCH_SYNCS		200
#define BENCH_SINGLES		200
#define BENCH_STW		200
#define BENCH_READY_MS		120000

static const unsigned int batch_sizes[] = { 16, 256, 4096 };
#define NR_BATCH_SIZES	(sizeof(batch_sizes) / sizeof(batch_sizes[0]))

struct bench {
	struct vm *vm;
	struct patcher *p;
	uint64_t *addr;			/* the NOP5 sites of bench_pad_* */
	unsigned int nr_pad;
	uint8_t *state;			/* per site: 0 = NOP5, 1 = JMP */
	struct poke_site *prep[2];	/* [state][site]: prepared flip */
	uint8_t *prep_ok[2];
	double prepare_us;		/* median, per site */
	uint8_t nop5[5];
};

/*
 * Between timed rounds: give the vCPU threads time to get back into guest
 * mode, or a pause right after a resume finds them still parked and
 * measures nothing.  A sleep, not a wait on vCPUs: nothing is polled.
 */
static void bench_poke_gap(void)
{
	struct timespec ts = { 0, 2 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

/* The bytes of site i in state s: NOP5, or JMP rel32 to the next insn. */
static void bench_poke_site_bytes(const struct bench *b, unsigned int i, int s, uint8_t *out)
{
	(void)i;
	if (!s) {
		memcpy(out, b->nop5, 5);
		return;
	}
	out[0] = 0xe9;
	torture_put_le32(out + 1, 0);
}

static uint64_t bench_poke_site_addr(const struct bench *b, unsigned int i)
{
	return b->addr[i];
}

static int bench_poke_find_pad(struct bench *b, const char *image)
{
	const struct symtab *st = vmm_symtab(b->vm);
	unsigned int cap = 0;

	for (unsigned int f = 0; f < VMPOKE_BENCH_PAD_FUNCS; f++) {
		const struct sym *s;
		char name[32];
		unsigned int per;

		snprintf(name, sizeof(name), VMPOKE_SYM_BENCH_PAD_FMT, f);
		s = symtab_find(st, name);
		if (!s)
			break;
		if (s->size < 6 || s->size > 1u << 20) {
			vmm_error("bench poke: %s: %s has size %" PRIu64, image,
				  name, s->size);
			return -1;
		}
		per = (unsigned int)((s->size - 1) / 5);
		if (b->nr_pad + per > cap) {
			uint64_t *n;

			cap = (b->nr_pad + per) * 2;
			n = realloc(b->addr, cap * sizeof(*n));
			if (!n)
				return -1;
			b->addr = n;
		}
		for (unsigned int k = 0; k < per; k++)
			b->addr[b->nr_pad++] = s->addr + 5ull * k;
	}
	if (b->nr_pad < 2) {
		vmm_error("bench poke: %s has no bench_pad_N functions "
			  "(guest/bench_sites.S)", image);
		return -1;
	}
	if (vmm_gva_read(b->vm, b->addr[0], b->nop5, 5)) {
		vmm_error("bench poke: cannot read bench_pad_0 at 0x%" PRIx64,
			  b->addr[0]);
		return -1;
	}
	b->state = calloc(b->nr_pad, 1);
	for (int s = 0; s < 2; s++) {
		b->prep[s] = calloc(b->nr_pad, sizeof(*b->prep[s]));
		b->prep_ok[s] = calloc(b->nr_pad, 1);
		if (!b->prep[s] || !b->prep_ok[s])
			return -1;
	}
	return b->state ? 0 : -1;
}

static void bench_poke_free(struct bench *b)
{
	free(b->addr);
	free(b->state);
	for (int s = 0; s < 2; s++) {
		free(b->prep[s]);
		free(b->prep_ok[s]);
	}
}

/* The prepared flip of site i from its current state; NULL on refusal. */
static const struct poke_site *bench_poke_prepared(struct bench *b, unsigned int i)
{
	int s = b->state[i];
	uint8_t old[5], new[5];
	char msg[256];
	enum poke_err e;

	if (b->prep_ok[s][i])
		return &b->prep[s][i];
	bench_poke_site_bytes(b, i, s, old);
	bench_poke_site_bytes(b, i, !s, new);
	e = poke_site_prepare(b->p, &b->prep[s][i], bench_poke_site_addr(b, i), old, new, 5,
			      NULL, msg, sizeof(msg));
	if (e != POKE_OK) {
		vmm_error("bench poke: prepare: %s (%s)", msg, poke_strerror(e));
		return NULL;
	}
	b->prep_ok[s][i] = 1;
	return &b->prep[s][i];
}

static double bench_poke_sync(struct bench *b, int (*sync)(struct vm *vm))
{
	uint64_t t[BENCH_SYNCS];

	for (int i = 0; i < BENCH_SYNCS; i++) {
		uint64_t t0;

		bench_poke_gap();
		t0 = clock_now_ns();
		if (sync(b->vm))
			return -1;
		t[i] = clock_now_ns() - t0;
	}
	return stats_median_us(t, BENCH_SYNCS);
}

/* One batch toggling sites [0, n): add + finish, timed in ns; -1 on error. */
static int64_t bench_poke_batch_once(struct bench *b, unsigned int n)
{
	struct poke_batch *batch;
	char msg[256];
	enum poke_err e = POKE_OK;
	uint64_t t0, dt;

	for (unsigned int i = 0; i < n; i++)
		if (!bench_poke_prepared(b, i))
			return -1;
	t0 = clock_now_ns();
	batch = poke_batch_new(b->p);
	if (!batch)
		return -1;
	for (unsigned int i = 0; i < n && e == POKE_OK; i++)
		e = poke_batch_add(batch, bench_poke_prepared(b, i));
	if (e == POKE_OK)
		e = poke_batch_finish(batch, msg, sizeof(msg));
	dt = clock_now_ns() - t0;
	poke_batch_free(batch);
	if (e != POKE_OK) {
		vmm_error("bench poke: batch of %u: %s (%s)", n, msg, poke_strerror(e));
		return -1;
	}
	for (unsigned int i = 0; i < n; i++)
		b->state[i] ^= 1;
	return (int64_t)dt;
}

/* What validation costs per site (excluded from the batch figures). */
static double bench_poke_prepare(struct bench *b)
{
	uint64_t t[BENCH_SINGLES];
	struct poke_site site;
	uint8_t old[5], new[5];
	char msg[256];

	bench_poke_site_bytes(b, 1, b->state[1], old);
	bench_poke_site_bytes(b, 1, !b->state[1], new);
	for (int i = 0; i < BENCH_SINGLES; i++) {
		uint64_t t0 = clock_now_ns();

		if (poke_site_prepare(b->p, &site, bench_poke_site_addr(b, 1), old, new, 5,
				      NULL, msg, sizeof(msg)) != POKE_OK)
			return -1;
		t[i] = clock_now_ns() - t0;
	}
	return stats_median_us(t, BENCH_SINGLES);
}

static double bench_poke_batch(struct bench *b, unsigned int n)
{
	unsigned int reps = n >= 4096 ? 5 : n >= 256 ? 11 : 51;
	uint64_t t[51];

	for (unsigned int r = 0; r < reps; r++) {
		int64_t ns;

		bench_poke_gap();
		ns = bench_poke_batch_once(b, n);
		if (ns < 0)
			return -1;
		t[r] = (uint64_t)ns;
	}
	return stats_median_us(t, reps);
}

/*
 * A single site is a one-site batch, measured exactly as the batches are
 * (prepared before the clock, same gap), so the ratios compare the
 * protocol with itself; what validation costs is reported on its own.
 */
static double bench_poke_single(struct bench *b)
{
	uint64_t t[BENCH_SINGLES];

	for (int i = 0; i < BENCH_SINGLES; i++) {
		int64_t ns;

		bench_poke_gap();
		ns = bench_poke_batch_once(b, 1);
		if (ns < 0)
			return -1;
		t[i] = (uint64_t)ns;
	}
	return stats_median_us(t, BENCH_SINGLES);
}

/* Stop the world on the single site: pause, write, resume. */
static double bench_poke_stw(struct bench *b)
{
	uint64_t t[BENCH_STW];

	for (int i = 0; i < BENCH_STW; i++) {
		uint8_t new[5];
		uint64_t t0;
		int err;

		bench_poke_site_bytes(b, 0, !b->state[0], new);
		bench_poke_gap();
		t0 = clock_now_ns();
		err = vmm_pause(b->vm);
		if (err)
			return -1;
		err = vmm_gva_write(b->vm, bench_poke_site_addr(b, 0), new, 5);
		vmm_resume(b->vm);
		t[i] = clock_now_ns() - t0;
		if (err)
			return -1;
		b->state[0] ^= 1;
	}
	return stats_median_us(t, BENCH_STW);
}

static uint64_t bench_poke_syncs_acked(struct bench *b)
{
	uint64_t sum = 0;

	for (unsigned int i = 0; i < vmm_nr_vcpus(b->vm); i++) {
		struct vmm_vcpu_stats st;

		vmm_vcpu_stats(b->vm, i, &st);
		sum += st.syncs_acked;
	}
	return sum;
}

struct bench_result {
	double sync_us, single_us, stw_us;
	double ack_sync_us;		/* vmm_sync(), for comparison */
	double batch_us[NR_BATCH_SIZES];
	unsigned int batch_sites[NR_BATCH_SIZES];
	double prepare_us;
	double kicks_per_patch;		/* per vCPU: acknowledged syncs */
	double kick_us;
	double ipis_per_patch;		/* core syncs (one IPI per running vCPU) */
	double exit_us;			/* exit round trip: an interrupt exit's bound */
};

static void bench_poke_emit(const struct bench_result *r, bool json)
{
	double bp_out = r->kicks_per_patch * r->kick_us + r->ipis_per_patch * r->exit_us;

	if (json) {
		struct json_object *o = json_object_new_object();
		struct json_object *arr = json_object_new_array();
		struct json_object *out = json_object_new_object();

		json_object_object_add(o, "sync_us", json_object_new_double(r->sync_us));
		json_object_object_add(o, "ack_sync_us", json_object_new_double(r->ack_sync_us));
		json_object_object_add(o, "single_site_us",
				       json_object_new_double(r->single_us));
		for (size_t i = 0; i < NR_BATCH_SIZES; i++) {
			struct json_object *e = json_object_new_object();

			json_object_object_add(e, "sites",
					       json_object_new_int((int)r->batch_sites[i]));
			json_object_object_add(e, "us", json_object_new_double(r->batch_us[i]));
			json_object_object_add(e, "ratio_to_single",
					       json_object_new_double(r->batch_us[i] /
								      r->single_us));
			json_object_array_add(arr, e);
		}
		json_object_object_add(o, "batch", arr);
		json_object_object_add(out, "breakpoint", json_object_new_double(bp_out));
		json_object_object_add(out, "stop_the_world",
				       json_object_new_double(r->stw_us));
		json_object_object_add(o, "vcpu_out_us", out);
		json_object_object_add(o, "stop_the_world_us",
				       json_object_new_double(r->stw_us));
		puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		json_object_put(o);
		return;
	}
	printf("sync (unit)           %10.1f us  (vmm_sync_core(); vmm_sync() %.1f us)\n",
	       r->sync_us, r->ack_sync_us);
	printf("single site           %10.1f us  (%.2f syncs)\n", r->single_us,
	       r->single_us / r->sync_us);
	for (size_t i = 0; i < NR_BATCH_SIZES; i++)
		printf("batch of %-5u        %10.1f us  (%.2f x single, %.2f syncs)\n",
		       r->batch_sites[i], r->batch_us[i],
		       r->batch_us[i] / r->single_us, r->batch_us[i] / r->sync_us);
	printf("(prepare, per site    %10.1f us, not in the batch figures)\n",
	       r->prepare_us);
	printf("stop the world        %10.1f us  (%.2f syncs)\n", r->stw_us,
	       r->stw_us / r->sync_us);
	printf("vCPU out of guest per patch: breakpoint at most %.1f us "
	       "(%.2f kicks acked x %.1f us kick + %.2f IPIs x %.1f us exit round trip), "
	       "stop-the-world %.1f us\n", bp_out, r->kicks_per_patch, r->kick_us,
	       r->ipis_per_patch, r->exit_us, r->stw_us);
}

static int bench_poke_run(struct bench *b, struct bench_result *r, unsigned int nr_vcpus)
{
	struct vmm_host_caps caps;
	struct poke_stats st0, st1;
	uint64_t k0;

	memset(r, 0, sizeof(*r));
	r->sync_us = bench_poke_sync(b, vmm_sync_core);
	r->ack_sync_us = bench_poke_sync(b, vmm_sync);
	if (r->sync_us < 0 || r->ack_sync_us < 0)
		return -1;
	vmm_info("bench poke: sync %.1f us (acknowledged %.1f us); single-site patches next",
		 r->sync_us, r->ack_sync_us);
	k0 = bench_poke_syncs_acked(b);
	patcher_stats(b->p, &st0);
	r->single_us = bench_poke_single(b);
	if (r->single_us < 0)
		return -1;
	vmm_info("bench poke: single %.1f us; batches next", r->single_us);
	patcher_stats(b->p, &st1);
	r->kicks_per_patch = (double)(bench_poke_syncs_acked(b) - k0) / BENCH_SINGLES / nr_vcpus;
	r->ipis_per_patch = (double)(st1.core_syncs - st0.core_syncs) / BENCH_SINGLES;
	for (size_t i = 0; i < NR_BATCH_SIZES; i++) {
		unsigned int n = batch_sizes[i];

		if (n > b->nr_pad) {
			vmm_info("bench poke: only %u pad sites; batch of %u "
				 "capped", b->nr_pad, n);
			n = b->nr_pad;
		}
		r->batch_sites[i] = n;
		r->batch_us[i] = bench_poke_batch(b, n);
		if (r->batch_us[i] < 0)
			return -1;
		vmm_info("bench poke: batch of %u: %.1f us", n, r->batch_us[i]);
	}
	r->prepare_us = bench_poke_prepare(b);
	r->stw_us = bench_poke_stw(b);
	if (r->stw_us < 0)
		return -1;
	vmm_info("bench poke: stop-the-world %.1f us; probing the kick cost",
		 r->stw_us);
	/*
	 * The VMM counts kicks but not time out of guest mode, so the
	 * breakpoint figure is kicks acked per patch x the host's measured
	 * kick round trip (vmm_probe_host), plus the core syncs' IPIs x the
	 * exit round trip (an interrupt exit does not even reach user space,
	 * so that bounds it): an estimate, labelled as such.
	 * Under stop-the-world every vCPU is out for the whole pause.
	 */
	if (vmm_probe_host(&caps) == 0) {
		r->kick_us = caps.kick_us;
		r->exit_us = caps.exit_roundtrip_us;
	}
	/*
	 * No probe figure (the probe VMs failed or measured nothing): a sync
	 * is one kick and one acknowledgement per vCPU, so its median is the
	 * kick cost as this run saw it.
	 */
	if (!(r->kick_us > 0)) {
		vmm_info("bench poke: no kick cost from the host probe; using "
			 "the measured sync (%.1f us) per kick", r->sync_us);
		r->kick_us = r->sync_us;
	}
	return 0;
}

static void bench_poke_usage(FILE *f)
{
	fprintf(f, "usage: vmpoke bench poke [IMAGE] [--json] [--vcpus N]\n"
		CLI_TRAP_PATH_HELP);
}

int cmd_bench_poke(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "vcpus", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_config cfg = {
		.nr_vcpus = 2, .mem_mib = 64, .tasks = 1, .hz = 0,
		.scenario = VMPOKE_SCN_IDLE, .seed = 1, .quiet = true,
	};
	struct patcher_opts popts = { .inject = POKE_INJECT_NONE };
	struct bench b = { 0 };
	struct bench_result r;
	char img[4096];
	bool json = false;
	struct vmm_result res = { 0 };
	int c, code, err, ret = VMPOKE_EXIT_HOST;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'v':
			if (cli_parse_uint("bench poke", "--vcpus", optarg, 1,
					   VMPOKE_MAX_VCPUS, &cfg.nr_vcpus))
				return VMPOKE_EXIT_USAGE;
			break;
		case 'h':
			bench_poke_usage(stdout);
			return VMPOKE_EXIT_OK;
		default:
			return cli_getopt_error("bench poke", c, argv);
		}
	}
	cfg.image = cli_bench_image("bench poke", argc, argv, cfg.mem_mib, bench_poke_usage, img, sizeof(img));
	if (!cfg.image)
		return VMPOKE_EXIT_USAGE;

	b.vm = vmm_create(&cfg, &code);
	if (!b.vm)
		return code;
	b.p = patcher_create(b.vm, &popts);
	if (!b.p)
		goto out_vm;
	if (bench_poke_find_pad(&b, cfg.image))
		goto out;
	err = vmm_start_ready(b.vm, BENCH_READY_MS, &res);
	if (err && err != -ETIMEDOUT && err != -ESRCH)
		goto out;
	if (err) {
		if (err == -ESRCH && res.message[0])
			vmm_error("bench poke: %s: boot failed: %s", cfg.image,
				  res.message);
		else
			vmm_error("bench poke: %s: the guest did not report "
				  "READY within %d s", cfg.image,
				  BENCH_READY_MS / 1000);
		ret = VMPOKE_EXIT_GUEST;
		goto out;
	}
	if (bench_poke_run(&b, &r, cfg.nr_vcpus) == 0) {
		bench_poke_emit(&r, json);
		ret = VMPOKE_EXIT_OK;
	}
out:
	vmm_stop(b.vm);
	patcher_destroy(b.p);
out_vm:
	vmm_destroy(b.vm);
	bench_poke_free(&b);
	return ret;
}
