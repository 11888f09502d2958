// SPDX-License-Identifier: MIT
/*
 * cmd_bench_probe.c - `vmpoke bench probe`: what one INT3 probe hit costs
 * the guest, measured as the guest's extra time per hit against an
 * unprobed run in the same process (issue 8).
 *
 * One vCPU, one task, no timer: the HOT task loops over the sites and the
 * lib_* functions and counts its iterations in vmpoke_tasks.  Each phase
 * runs the guest for --seconds with one probe armed (or none) and reads
 * how many iterations it made and how many hits the probe took:
 *
 *   cost per hit = (ns per iteration probed - ns per iteration unprobed)
 *                  / hits per iteration
 *
 * Time is the process's CPU time (CLOCK_PROCESS_CPUTIME_ID): the vCPU
 * thread's, guest mode included, since the controller thread sleeps.
 * Wall time is reported too, but on a shared host every exit is a chance
 * for the scheduler to run someone else, and wall time then measures the
 * host's load, not vmpoke (12 runnable threads on 2 cores: ~0.3 ms per
 * hit by wall clock).  The baseline runs first and last, and their mean
 * is the reference, so slow drift of the host does not land on one phase.
 * Phases:
 *   int3_ns            lib_add's first instruction, no handler (out of
 *                      line, boosted: one exit per hit)
 *   int3_emulated_ns   an instruction the VMM emulates (lib_add's RET)
 *   int3_stepped_ns    an out-of-line copy that ends in INT3 (a shift in
 *                      lib_checksum's loop: two exits per hit)
 *   int3_handler_ns    as int3_ns with an empty C handler (registers and
 *                      the task id handed over)
 *   int3_lua_ns        as int3_ns with an empty Lua handler, run exactly as
 *                      a campaign runs one (campaign_bench.c)
 *   optimized_ns       lib_add's probe optimized (issue 9): a JMP to a
 *                      detour that counts per vCPU in guest memory, no exit
 *   optimized_handler_ns  the same with an empty C handler: the detour
 *                      rings VMPOKE_HC_PROBE, one MMIO exit, no #BP
 * and ratio_int3_to_optimized = int3_ns / optimized_ns, same run.  The
 * optimized cost is a few ns in an iteration of several hundred, so it
 * is the figure most exposed to the host's noise: *_iter_ns gives the
 * raw iteration times beside the baseline's.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <json-c/json.h>

#include "campaign.h"
#include "cli.h"
#include "commands.h"
#include "probe.h"
#include "symtab.h"
#include "vmm.h"

#define BENCH_READY_MS		120000
#define BENCH_WARMUP_NS		100000000ull	/* 0.1 s with the probe armed first */
#define BENCH_LUA_HANDLER	"return function(ctx) end"

struct pbench {
	struct vm *vm;
	struct patcher *p;
	uint64_t iters_at;		/* &vmpoke_tasks.tasks[0].iterations */
	uint64_t ns;			/* per phase */
	struct campaign_bench *lua;
};

/* One phase's result. */
struct phase {
	double iter_ns;			/* CPU ns per guest iteration */
	double iter_wall_ns;		/* wall ns per guest iteration */
	double hits_per_iter;
	uint64_t hits, missed;
	const char *exec;		/* how the probed instruction ran */
	char where[96];
};

static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };

	while (nanosleep(&ts, &ts))
		;
}

static int read_iters(struct pbench *b, uint64_t *v)
{
	return vmm_gva_read(b->vm, b->iters_at, v, sizeof(*v));
}

static enum probe_verdict empty_handler(struct probe_hit_ctx *ctx, void *opaque)
{
	(void)ctx;
	(void)opaque;
	return PROBE_RESUME;
}

static enum probe_verdict lua_handler(struct probe_hit_ctx *ctx, void *opaque)
{
	struct campaign_hit h = { ctx->vcpu, ctx->task, ctx->regs };

	return campaign_probe_verdict(campaign_bench_hit(opaque, &h));
}

/*
 * The first instruction of fn (from offset `from` on) that a probe runs
 * the way `exec` names: probe_add() refuses non-boundaries, so walking the
 * bytes finds the instructions.  The probe stays armed; NULL if none.
 */
static struct probe *probe_find(struct pbench *b, const char *fn, uint64_t from,
				const char *exec, const struct probe_opts *o)
{
	const struct sym *s = symtab_find(vmm_symtab(b->vm), fn);
	const char *reason;
	struct probe *pr;
	char msg[256];
	enum probe_kind want = o->kind == PROBE_KIND_INT3 ? PROBE_KIND_INT3 :
			       PROBE_KIND_OPTIMIZED;

	for (uint64_t off = from; s && off < s->size; off++) {
		pr = probe_add(b->p, s->addr + off, o, &reason, msg, sizeof(msg));
		if (!pr)
			continue;
		if (!strcmp(probe_exec_of(pr), exec) && probe_kind_of(pr) == want)
			return pr;
		if (probe_remove(pr, msg, sizeof(msg))) {
			vmm_error("bench probe: %s", msg);
			return NULL;
		}
	}
	vmm_error("bench probe: no %s%s instruction found in %s",
		  want == PROBE_KIND_OPTIMIZED ? "optimizable " : "", exec, fn);
	return NULL;
}

/* Run one phase with pr armed (or none); the probe is removed after. */
static int run_phase(struct pbench *b, struct probe *pr, struct phase *ph)
{
	struct probe_counts c0, c1;
	uint64_t i0, i1, t0, t1, c0ns, c1ns;
	char msg[256];
	int ret = -1;

	memset(ph, 0, sizeof(*ph));
	if (pr) {
		ph->exec = probe_exec_of(pr);
		symtab_format(vmm_symtab(b->vm), probe_addr(pr), ph->where, sizeof(ph->where));
		sleep_ns(BENCH_WARMUP_NS);
		probe_counts(pr, &c0);
	}
	t0 = clock_ns(CLOCK_MONOTONIC);
	c0ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	if (read_iters(b, &i0))
		goto out;
	sleep_ns(b->ns);
	if (read_iters(b, &i1))
		goto out;
	c1ns = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	t1 = clock_ns(CLOCK_MONOTONIC);
	if (pr)
		probe_counts(pr, &c1);
	if (i1 <= i0) {
		vmm_error("bench probe: the guest made no progress in %.1f s",
			  (double)b->ns / 1e9);
		goto out;
	}
	ph->iter_ns = (double)(c1ns - c0ns) / (double)(i1 - i0);
	ph->iter_wall_ns = (double)(t1 - t0) / (double)(i1 - i0);
	if (pr) {
		ph->hits = c1.hits - c0.hits;
		ph->missed = c1.missed - c0.missed;
		ph->hits_per_iter = (double)ph->hits / (double)(i1 - i0);
	}
	ret = 0;
out:
	if (pr && probe_remove(pr, msg, sizeof(msg))) {
		vmm_error("bench probe: %s", msg);
		ret = -1;
	}
	return ret;
}

static double per_hit(double iter_ns, const struct phase *ph, double base)
{
	return ph->hits_per_iter > 0 ? (iter_ns - base) / ph->hits_per_iter : 0;
}

struct variant {
	const char *key;
	const char *fn;
	const char *exec;
	probe_handler_t handler;
	bool lua;
	enum probe_kind kind;
};

/* Every phase after the first baseline; the last baseline closes the run. */
static const struct variant variants[] = {
	{ "int3_ns", "lib_add", "boosted", NULL, false, PROBE_KIND_INT3 },
	{ "int3_emulated_ns", "lib_add", "emulated", NULL, false, PROBE_KIND_INT3 },
	{ "int3_stepped_ns", "lib_checksum", "stepped", NULL, false, PROBE_KIND_INT3 },
	{ "int3_handler_ns", "lib_add", "boosted", empty_handler, false, PROBE_KIND_INT3 },
	{ "int3_lua_ns", "lib_add", "boosted", lua_handler, true, PROBE_KIND_INT3 },
	{ "optimized_ns", "lib_add", "boosted", NULL, false, PROBE_KIND_OPTIMIZED },
	{ "optimized_handler_ns", "lib_add", "boosted", empty_handler, false,
	  PROBE_KIND_OPTIMIZED },
};
#define V_INT3		0	/* variants[] index of int3_ns */
#define V_OPTIMIZED	5	/* ... of optimized_ns */
#define NR_VARIANTS	(sizeof(variants) / sizeof(variants[0]))

static int bench_run(struct pbench *b, bool json, const char *image)
{
	struct phase base[2], ph[NR_VARIANTS];
	struct json_object *o;
	double ref, ref_wall, opt_ns, ratio;
	unsigned int i;
	char key[64];
	char msg[256];

	if (run_phase(b, NULL, &base[0]))
		return -1;
	for (i = 0; i < NR_VARIANTS; i++) {
		const struct variant *v = &variants[i];
		struct probe_opts po = { .handler = v->handler, .kind = v->kind };
		struct probe *pr;

		if (v->lua) {
			b->lua = campaign_bench_new(BENCH_LUA_HANDLER, msg, sizeof(msg));
			if (!b->lua) {
				vmm_error("bench probe: %s", msg);
				return -1;
			}
			po.opaque = b->lua;
		}
		pr = probe_find(b, v->fn, 0, v->exec, &po);
		if (!pr || run_phase(b, pr, &ph[i]))
			return -1;
		if (b->lua && campaign_bench_failed(b->lua, msg, sizeof(msg))) {
			vmm_error("bench probe: the Lua handler failed: %s", msg);
			return -1;
		}
	}
	if (run_phase(b, NULL, &base[1]))
		return -1;
	ref = (base[0].iter_ns + base[1].iter_ns) / 2;
	ref_wall = (base[0].iter_wall_ns + base[1].iter_wall_ns) / 2;
	opt_ns = per_hit(ph[V_OPTIMIZED].iter_ns, &ph[V_OPTIMIZED], ref);
	ratio = opt_ns > 0 ? per_hit(ph[V_INT3].iter_ns, &ph[V_INT3], ref) / opt_ns : 0;

	if (!json) {
		printf("bench probe: %s, 1 vCPU, trap path %s, registers by %s\n", image,
		       vmm_trap_path_name(vmm_trap_path(b->vm)),
		       vmm_has_sync_regs(b->vm) ? "sync_regs" : "KVM_GET_REGS");
		printf("  baseline                %10.1f ns per iteration (first %.1f, last %.1f)\n",
		       ref, base[0].iter_ns, base[1].iter_ns);
		for (i = 0; i < NR_VARIANTS; i++)
			printf("  %-22s  %10.1f ns per hit, %.1f by wall clock  (%s at %s, "
			       "%.2f hits/iteration)\n", variants[i].key,
			       per_hit(ph[i].iter_ns, &ph[i], ref),
			       per_hit(ph[i].iter_wall_ns, &ph[i], ref_wall), ph[i].exec,
			       ph[i].where, ph[i].hits_per_iter);
		printf("  ratio int3/optimized    %10.1f  (same run; iteration %.1f ns "
		       "unprobed, %.1f optimized)\n", ratio, ref, ph[V_OPTIMIZED].iter_ns);
		printf("  (CPU time of the process; wall time is the host's load too)\n");
		return 0;
	}
	o = json_object_new_object();
	json_object_object_add(o, "baseline_iter_ns", json_object_new_double(ref));
	for (i = 0; i < NR_VARIANTS; i++)
		json_object_object_add(o, variants[i].key,
				       json_object_new_double(per_hit(ph[i].iter_ns, &ph[i], ref)));
	json_object_object_add(o, "baseline_iter_wall_ns", json_object_new_double(ref_wall));
	for (i = 0; i < NR_VARIANTS; i++) {
		snprintf(key, sizeof(key), "%.*s_wall_ns",
			 (int)(strlen(variants[i].key) - 3), variants[i].key);
		json_object_object_add(o, key, json_object_new_double(
			per_hit(ph[i].iter_wall_ns, &ph[i], ref_wall)));
	}
	json_object_object_add(o, "baseline_iter_ns_first", json_object_new_double(base[0].iter_ns));
	json_object_object_add(o, "baseline_iter_ns_last", json_object_new_double(base[1].iter_ns));
	json_object_object_add(o, "int3_hits_per_iter", json_object_new_double(ph[0].hits_per_iter));
	/* 0 when the optimized cost drowned in the noise (<= 0): no ratio then */
	json_object_object_add(o, "ratio_int3_to_optimized", json_object_new_double(ratio));
	json_object_object_add(o, "optimized_iter_ns",
			       json_object_new_double(ph[V_OPTIMIZED].iter_ns));
	json_object_object_add(o, "optimized_hits_per_iter",
			       json_object_new_double(ph[V_OPTIMIZED].hits_per_iter));
	json_object_object_add(o, "seconds_per_phase", json_object_new_double((double)b->ns / 1e9));
	json_object_object_add(o, "trap_path",
			       json_object_new_string(vmm_trap_path_name(vmm_trap_path(b->vm))));
	json_object_object_add(o, "sync_regs", json_object_new_boolean(vmm_has_sync_regs(b->vm)));
	json_object_object_add(o, "image", json_object_new_string(image));
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY));
	json_object_put(o);
	return 0;
}

static void usage(FILE *f)
{
	fputs("Usage: vmpoke bench probe [IMAGE] [--seconds S] [--json]\n"
	      "The cost of one INT3 probe hit: the guest's extra time per hit against\n"
	      "an unprobed run in the same process (1 vCPU, 1 task, no timer).\n"
	      "  --seconds S  guest time per phase (default 1; 9 phases)\n"
	      "  --json       {\"baseline_iter_ns\", \"int3_ns\", \"int3_lua_ns\",\n"
	      "               \"optimized_ns\", \"optimized_handler_ns\",\n"
	      "               \"ratio_int3_to_optimized\", ...}\n"
	      "Times are CPU time of the process (the vCPU thread's, guest mode\n"
	      "included); *_wall_ns keys give wall-clock figures.\n"
	      "VMPOKE_NO_SYNC_REGS=1 reads registers with KVM_GET_REGS per hit instead\n"
	      "of KVM_CAP_SYNC_REGS, to compare the two.\n", f);
}

int cmd_bench_probe(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "seconds", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_config cfg = {
		.nr_vcpus = 1, .mem_mib = 64, .tasks = 1, .hz = 0,
		.scenario = VMPOKE_SCN_HOT, .seed = 1, .quiet = true,
	};
	const struct sym *tasks;
	struct pbench b = { .ns = 1000000000ull };
	unsigned int secs = 1;
	char img[4096];
	bool json = false;
	int c, code, ret = VMPOKE_EXIT_HOST;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 's':
			if (cli_parse_uint("bench probe", "--seconds", optarg, 1, 60, &secs))
				return VMPOKE_EXIT_USAGE;
			b.ns = secs * 1000000000ull;
			break;
		case 'h':
			usage(stdout);
			return VMPOKE_EXIT_OK;
		default:
			return cli_getopt_error("bench probe", c, argv);
		}
	}
	cfg.image = cli_bench_image("bench probe", argc, argv, cfg.mem_mib, usage, img, sizeof(img));
	if (!cfg.image)
		return VMPOKE_EXIT_USAGE;
	b.vm = vmm_create(&cfg, &code);
	if (!b.vm)
		return code;
	tasks = symtab_find(vmm_symtab(b.vm), VMPOKE_SYM_TASKS);
	if (!tasks || !symtab_find(vmm_symtab(b.vm), "lib_add")) {
		vmm_error("bench probe: %s: no %s or lib_add symbol", cfg.image,
			  VMPOKE_SYM_TASKS);
		vmm_destroy(b.vm);
		return VMPOKE_EXIT_USAGE;
	}
	b.iters_at = tasks->addr + offsetof(struct vmpoke_task_table, tasks) +
		     offsetof(struct vmpoke_task, iterations);
	b.p = patcher_create(b.vm, NULL);
	if (!b.p)
		goto out_vm;
	if (vmm_start(b.vm))
		goto out;
	if (vmm_wait_hcall(b.vm, VMPOKE_HC_READY, 1, BENCH_READY_MS)) {
		vmm_error("bench probe: %s: the guest did not report READY", cfg.image);
		ret = VMPOKE_EXIT_GUEST;
		goto out;
	}
	if (!bench_run(&b, json, cfg.image))
		ret = VMPOKE_EXIT_OK;
	if (vmm_hcall_count(b.vm, VMPOKE_HC_CHECK_FAIL) || vmm_hcall_count(b.vm, VMPOKE_HC_FAULT)) {
		vmm_error("bench probe: the guest reported a check failure or fault");
		ret = VMPOKE_EXIT_GUEST;
	}
out:
	patcher_destroy(b.p);
	vmm_stop(b.vm);
out_vm:
	vmm_destroy(b.vm);
	campaign_bench_free(b.lua);
	return ret;
}
