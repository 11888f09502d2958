// SPDX-License-Identifier: MIT
/*
 * cmd_bench_sync.c - `vmpoke bench sync`: what the patcher's building
 * blocks cost here, in one run:
 *   (1) the exit round trip: 1 vCPU in scenario ping, intervals between
 *       consecutive NOP hypercalls recorded by the vCPU thread;
 *   (2) vmm_sync() per vCPU count, guests idling at CPL3;
 *   (3) vmm_sync_core(), the sync between a patch's phases (membarrier),
 *       on the same VMs, with KVM's count of the vCPUs' interrupt exits
 *       over those rounds: the witness that it took them out of guest
 *       mode;
 *   (4) vmm_pause() + vmm_resume() pairs on the same VMs.
 * Each sync/pause median is also given as a ratio to the exit round trip,
 * the unit every other cost on this host is best compared with.
 */
#include <errno.h>
#include <getopt.h>
#include <json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "commands.h"
#include "cli.h"
#include "stats.h"
#include "vmm.h"

#define BENCH_BOOT_MS		60000u	/* CPL0 boot is emulated: be generous */
#define BENCH_MAX_ROUNDS	1000000u
/*
 * Untimed pause between rounds: right after a sync or resume the vCPUs are
 * still on their way back into KVM_RUN, and a back-to-back call would find
 * them outside guest mode and look cheaper than any real patch step.
 */
#define BENCH_GAP_NS		200000l

static const char bench_sync_usage[] =
"Usage: vmpoke bench sync [--vcpus 1,2,4] [--rounds N] [--ab] [--json] [IMAGE]\n"
"Measure the exit round trip (1 vCPU, scenario ping), then for each vCPU\n"
"count N vmm_sync() calls, N core syncs (vmm_sync_core(): membarrier,\n"
"what a patch does between its phases) and N pause+resume pairs\n"
"(scenario idle).\n"
"IMAGE defaults to images/guest.img, else ../images/guest.img beside the\n"
"executable, else $VMPOKE_DATADIR/guest.img.\n"
"\n"
"  --vcpus LIST   comma-separated vCPU counts, each 1..64 (default 1,2,4)\n"
"  --rounds N     samples per measurement, 1..1000000 (default 1000)\n"
"  --ab           also time the sync as it was before SCHED_FIFO\n"
"                 (VMPOKE_SYNC_OLD=1) in the same VMs, alternating rounds\n"
"  --json         print one JSON object instead of the table\n"
CLI_TRAP_PATH_HELP
"  -h, --help     this text\n";

int bench_sync_parse_args(int argc, char **argv, struct bench_sync_opts *o)
{
	static const struct option longopts[] = {
		{ "vcpus", required_argument, NULL, 'v' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "ab", no_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, ret = 0;

	memset(o, 0, sizeof(*o));
	o->vcpus[0] = 1;
	o->vcpus[1] = 2;
	o->vcpus[2] = 4;
	o->nr_counts = 3;
	o->rounds = 1000;
	optind = 0;
	opterr = 0;
	while (!ret && (opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'v':
			ret = cli_parse_list("bench sync", "--vcpus", optarg, 1, VMPOKE_MAX_VCPUS,
					     o->vcpus, CLI_MAX_LIST, &o->nr_counts);
			break;
		case 'r':
			ret = cli_parse_uint("bench sync", "--rounds", optarg, 1,
					     BENCH_MAX_ROUNDS, &o->rounds);
			break;
		case 'j':
			o->json = true;
			break;
		case 'a':
			o->ab = true;
			break;
		case 'h':
			o->help = true;
			return 0;
		default:
			ret = cli_getopt_error("bench sync", opt, argv);
		}
	}
	if (ret)
		return ret;
	if (argc - optind > 1)
		return cli_usage_error("bench sync", "unexpected argument '%s'",
				       argv[optind + 1]);
	o->image = optind < argc ? argv[optind] : NULL;
	return 0;
}

static void bench_sync_gap(void)
{
	struct timespec ts = { 0, BENCH_GAP_NS };

	nanosleep(&ts, NULL);
}

struct bench_row {
	unsigned int vcpus;
	struct stats sync, pause;
	struct stats old;		/* --ab: the old sync, same VM */
	struct stats core;		/* vmm_sync_core() */
	double core_irq_exits;		/* KVM's interrupt exits per core sync and vCPU, or -1 */
	struct vmm_sync_info info;	/* how the syncs waited */
};

static const char *const prio_names[] = {
	[VMM_SYNC_PRIO_NONE] = "none",
	[VMM_SYNC_PRIO_CONTROLLER] = "controller nice -10",
	[VMM_SYNC_PRIO_VCPUS_LOWER] = "vCPU threads nice +5",
	[VMM_SYNC_PRIO_FIFO] = "controller SCHED_FIFO",
};

static struct vm *bench_sync_boot(const char *image, unsigned int nr_vcpus,
			     enum vmpoke_scenario scn, int *code)
{
	struct vm_config cfg = {
		.image = image, .nr_vcpus = nr_vcpus, .mem_mib = 64, .tasks = 1,
		.hz = 0, .scenario = scn, .iterations = 0, .seed = 1,
		.trap_path = VMM_TRAP_AUTO, .quiet = true,
	};

	return vmm_create(&cfg, code);
}

/*
 * Why a VM that should be busy went silent (err from the wait): its
 * outcome if it ended (-ESRCH: vmm_wait returns at once, pausing nothing).
 */
static void bench_sync_why(struct vm *vm, int err, const char *what)
{
	struct vmm_result res = { 0 };

	if (err == -ESRCH && vmm_wait(vm, 0, &res) != VMM_TIMEOUT && res.message[0])
		fprintf(stderr, "vmpoke bench sync: %s: %s\n", what, res.message);
	else
		fprintf(stderr, "vmpoke bench sync: %s: timed out\n", what);
}

/* (1) median/p99 of the intervals between NOP hypercalls on vCPU 0. */
static int bench_sync_roundtrip(const char *image, unsigned int rounds, struct stats *st)
{
	uint64_t *buf = calloc(rounds, sizeof(*buf));
	struct vm *vm;
	int code = VMPOKE_EXIT_HOST;

	if (!buf)
		return VMPOKE_EXIT_HOST;
	vm = bench_sync_boot(image, 1, VMPOKE_SCN_PING, &code);
	if (!vm) {
		free(buf);
		return code ? code : VMPOKE_EXIT_HOST;
	}
	vmm_record_hcall_intervals(vm, 0, VMPOKE_HC_NOP, buf, rounds);
	code = 0;
	if (vmm_start(vm)) {
		code = VMPOKE_EXIT_HOST;
		goto out;
	}
	/* Wait on the hypercall counter (a condvar), never by polling. */
	while (vmm_recorded_intervals(vm, 0) < rounds) {
		uint64_t missing = rounds - vmm_recorded_intervals(vm, 0);

		/*
		 * Any failure ends the bench: -ESRCH (the run ended - a guest
		 * fault, a triple fault, DONE) comes back at once every time,
		 * so retrying it would spin for ever.
		 */
		int err = vmm_wait_hcall(vm, VMPOKE_HC_NOP,
					 vmm_hcall_count(vm, VMPOKE_HC_NOP) + missing,
					 BENCH_BOOT_MS);

		if (err) {
			bench_sync_why(vm, err, "scenario ping");
			code = VMPOKE_EXIT_GUEST;
			goto out;
		}
	}
	stats_ns(buf, rounds, st);
out:
	vmm_stop(vm);
	vmm_destroy(vm);
	free(buf);
	return code;
}

/*
 * One timed sync (vmm_sync or vmm_sync_core, named name) into *ns, after
 * the untimed gap; false if it failed.
 */
static bool bench_sync_timed(struct vm *vm, int (*sync)(struct vm *vm), const char *name,
			     uint64_t *ns)
{
	uint64_t t0;

	bench_sync_gap();
	t0 = clock_now_ns();
	if (sync(vm)) {
		fprintf(stderr, "vmpoke bench sync: %s failed with %u vCPUs\n", name,
			vmm_nr_vcpus(vm));
		return false;
	}
	*ns = clock_now_ns() - t0;
	return true;
}

static bool bench_sync_one(struct vm *vm, uint64_t *ns)
{
	return bench_sync_timed(vm, vmm_sync, "vmm_sync", ns);
}

/* The old sync (vmm_sync_set_old()) timed into *ns. */
static bool bench_sync_old(struct vm *vm, uint64_t *ns)
{
	bool ok;

	vmm_sync_set_old(vm, true);
	ok = bench_sync_one(vm, ns);
	vmm_sync_set_old(vm, false);
	return ok;
}

/*
 * (2): rounds syncs into buf; with ab each round also times the old sync
 * into old, first in odd rounds and second in even ones, so that neither
 * always follows the other.  Then one untimed new sync, so that
 * vmm_sync_info() tells how the new one waited.
 */
static bool bench_sync_rounds(struct vm *vm, unsigned int rounds, bool ab, uint64_t *buf,
			      uint64_t *old)
{
	uint64_t spare;

	for (unsigned int i = 0; i < rounds; i++) {
		if (ab && (i & 1) && !bench_sync_old(vm, &old[i]))
			return false;
		if (!bench_sync_one(vm, &buf[i]))
			return false;
		if (ab && !(i & 1) && !bench_sync_old(vm, &old[i]))
			return false;
	}
	return bench_sync_one(vm, &spare);
}

/* Sum of KVM's interrupt-exit counts over the vCPUs; false if KVM has none. */
static bool bench_sync_irq_exits(struct vm *vm, uint64_t *sum)
{
	struct vmm_vcpu_stats st;

	*sum = 0;
	for (unsigned int i = 0; i < vmm_nr_vcpus(vm); i++) {
		vmm_vcpu_stats(vm, i, &st);
		if (!st.kvm_stats)
			return false;
		*sum += st.irq_exits;
	}
	return true;
}

/*
 * (3): rounds core syncs into buf.  The exits KVM counted over them
 * include the host's own interrupts (its timer tick), so the figure is
 * an upper bound of what the syncs caused; a vCPU preempted when a sync
 * came needed no IPI and took none, so it can also be below 1.
 */
static bool bench_sync_core_rounds(struct vm *vm, unsigned int rounds, uint64_t *buf,
				   double *exits_per_sync)
{
	uint64_t e0, e1;
	bool have = bench_sync_irq_exits(vm, &e0);

	for (unsigned int i = 0; i < rounds; i++)
		if (!bench_sync_timed(vm, vmm_sync_core, "vmm_sync_core", &buf[i]))
			return false;
	*exits_per_sync = have && bench_sync_irq_exits(vm, &e1) ?
			  (double)(e1 - e0) / rounds / vmm_nr_vcpus(vm) : -1;
	return true;
}

/* (2), (3) and (4) for one vCPU count. */
static int bench_sync_pause(const char *image, unsigned int nr_vcpus, unsigned int rounds,
			    bool ab, struct bench_row *row)
{
	uint64_t *buf = calloc(rounds, sizeof(*buf)), *old = calloc(rounds, sizeof(*old));
	struct vm *vm;
	int code = VMPOKE_EXIT_HOST, err;

	row->vcpus = nr_vcpus;
	if (!buf || !old) {
		free(buf);
		free(old);
		return VMPOKE_EXIT_HOST;
	}
	vm = bench_sync_boot(image, nr_vcpus, VMPOKE_SCN_IDLE, &code);
	if (!vm) {
		free(buf);
		free(old);
		return code ? code : VMPOKE_EXIT_HOST;
	}
	/* Every vCPU reports READY once its tasks run at CPL3. */
	err = vmm_start_ready(vm, BENCH_BOOT_MS, NULL);
	code = err == -ETIMEDOUT || err == -ESRCH ? VMPOKE_EXIT_GUEST :
	       err ? VMPOKE_EXIT_HOST : 0;
	if (code == VMPOKE_EXIT_GUEST)
		bench_sync_why(vm, err, "scenario idle boot");
	if (code)
		goto out;
	if (!bench_sync_rounds(vm, rounds, ab, buf, old)) {
		code = VMPOKE_EXIT_GUEST;
		goto out;
	}
	stats_ns(buf, rounds, &row->sync);
	if (ab)
		stats_ns(old, rounds, &row->old);
	vmm_sync_info(vm, &row->info);
	if (!bench_sync_core_rounds(vm, rounds, buf, &row->core_irq_exits)) {
		code = VMPOKE_EXIT_GUEST;
		goto out;
	}
	stats_ns(buf, rounds, &row->core);
	for (unsigned int i = 0; i < rounds; i++) {
		uint64_t t0;

		bench_sync_gap();
		t0 = clock_now_ns();
		if (vmm_pause(vm)) {
			fprintf(stderr, "vmpoke bench sync: vmm_pause failed with %u vCPUs\n",
				nr_vcpus);
			code = VMPOKE_EXIT_GUEST;
			goto out;
		}
		vmm_resume(vm);
		buf[i] = clock_now_ns() - t0;
	}
	stats_ns(buf, rounds, &row->pause);
out:
	vmm_stop(vm);
	vmm_destroy(vm);
	free(buf);
	free(old);
	return code;
}

static double bench_sync_ratio(double x, double unit)
{
	return unit > 0 ? x / unit : 0;
}

static struct json_object *bench_sync_row_json(unsigned int vcpus, const struct stats *s,
					  double unit, const struct vmm_sync_info *info,
					  const struct stats *old)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "vcpus", json_object_new_int64(vcpus));
	if (info) {
		json_object_object_add(o, "spin", json_object_new_boolean(info->spin));
		json_object_object_add(o, "spins", json_object_new_uint64(info->spins));
		json_object_object_add(o, "spin_finished", json_object_new_uint64(info->spin_hits));
		json_object_object_add(o, "priority",
				       json_object_new_string(prio_names[info->prio]));
		json_object_object_add(o, "fifo_lends", json_object_new_uint64(info->lends));
	}
	if (old) {
		json_object_object_add(o, "old_median_us", json_object_new_double(old->median_us));
		json_object_object_add(o, "old_p99_us", json_object_new_double(old->p99_us));
		json_object_object_add(o, "old_ratio",
				       json_object_new_double(bench_sync_ratio(old->median_us, unit)));
	}
	json_object_object_add(o, "median_us", json_object_new_double(s->median_us));
	json_object_object_add(o, "p99_us", json_object_new_double(s->p99_us));
	json_object_object_add(o, "ratio", json_object_new_double(bench_sync_ratio(s->median_us, unit)));
	return o;
}

static int bench_sync_print_json(const struct stats *rt, const struct bench_row *rows, size_t n,
				 bool ab)
{
	struct json_object *j = json_object_new_object();
	struct json_object *rto = json_object_new_object();
	struct json_object *sync = json_object_new_array();
	struct json_object *pause = json_object_new_array();
	struct json_object *core = json_object_new_array();
	int ret;

	json_object_object_add(rto, "median", json_object_new_double(rt->median_us));
	json_object_object_add(rto, "p99", json_object_new_double(rt->p99_us));
	json_object_object_add(j, "exit_roundtrip_us", rto);
	for (size_t i = 0; i < n; i++) {
		struct json_object *c;

		json_object_array_add(sync, bench_sync_row_json(rows[i].vcpus, &rows[i].sync,
							   rt->median_us, &rows[i].info,
							   ab ? &rows[i].old : NULL));
		json_object_array_add(pause, bench_sync_row_json(rows[i].vcpus, &rows[i].pause,
							    rt->median_us, NULL, NULL));
		c = bench_sync_row_json(rows[i].vcpus, &rows[i].core, rt->median_us, NULL, NULL);
		json_object_object_add(c, "membarrier", json_object_new_boolean(rows[i].info.core));
		json_object_object_add(c, "irq_exits_per_sync_per_vcpu",
				       rows[i].core_irq_exits >= 0 ?
				       json_object_new_double(rows[i].core_irq_exits) : NULL);
		json_object_array_add(core, c);
	}
	json_object_object_add(j, "host_cpus",
			       json_object_new_int64(n ? rows[0].info.host_cpus : 0));
	json_object_object_add(j, "sync", sync);
	json_object_object_add(j, "core_sync", core);
	json_object_object_add(j, "pause_resume", pause);
	ret = cli_json_write("bench sync", "-", j);
	json_object_put(j);
	return ret;
}

static void bench_sync_print_table(const struct stats *rt, unsigned int rounds,
			      const struct bench_row *rows, size_t n, bool ab)
{
	printf("exit round trip: median %.2f us, p99 %.2f us (%u samples)\n\n",
	       rt->median_us, rt->p99_us, rounds);
	printf("%5s  %11s %11s %7s  %11s %11s %7s\n", "vCPUs", "sync med", "sync p99",
	       "ratio", "pause med", "pause p99", "ratio");
	for (size_t i = 0; i < n; i++)
		printf("%5u  %9.2fus %9.2fus %6.1fx  %9.2fus %9.2fus %6.1fx\n", rows[i].vcpus,
		       rows[i].sync.median_us, rows[i].sync.p99_us,
		       bench_sync_ratio(rows[i].sync.median_us, rt->median_us),
		       rows[i].pause.median_us, rows[i].pause.p99_us,
		       bench_sync_ratio(rows[i].pause.median_us, rt->median_us));
	if (!n)
		return;
	printf("\ncore sync (vmm_sync_core(), %s), what a patch does between its phases:\n",
	       rows[0].info.core ? "membarrier SYNC_CORE" :
	       "not available here: the acknowledged sync");
	printf("%5s  %11s %11s %7s  %s\n", "vCPUs", "core med", "core p99", "ratio",
	       "KVM irq exits per sync and vCPU");
	for (size_t i = 0; i < n; i++) {
		printf("%5u  %9.2fus %9.2fus %6.1fx  ", rows[i].vcpus, rows[i].core.median_us,
		       rows[i].core.p99_us,
		       bench_sync_ratio(rows[i].core.median_us, rt->median_us));
		if (rows[i].core_irq_exits >= 0)
			printf("%.2f\n", rows[i].core_irq_exits);
		else
			printf("(KVM has no binary stats here)\n");
	}
	if (ab) {
		printf("\nthe old sync (VMPOKE_SYNC_OLD=1), alternating rounds in the same VMs:\n");
		for (size_t i = 0; i < n; i++)
			printf("%5u  %9.2fus %9.2fus %6.1fx  (new %6.1fx)\n", rows[i].vcpus,
			       rows[i].old.median_us, rows[i].old.p99_us,
			       bench_sync_ratio(rows[i].old.median_us, rt->median_us),
			       bench_sync_ratio(rows[i].sync.median_us, rt->median_us));
	}
	printf("\nhost cores: %u; how syncs waited:\n", rows[0].info.host_cpus);
	for (size_t i = 0; i < n; i++)
		printf("  %u vCPU%s: %s, priority %s, %llu late vCPUs lent SCHED_FIFO\n",
		       rows[i].vcpus, rows[i].vcpus == 1 ? "" : "s",
		       rows[i].info.spin ? "adaptive spin, then futex" :
		       rows[i].info.prio == VMM_SYNC_PRIO_FIFO ? "futex" :
		       "futex, last acker hands its core over",
		       prio_names[rows[i].info.prio], (unsigned long long)rows[i].info.lends);
}

int cmd_bench_sync(int argc, char **argv)
{
	struct bench_row rows[CLI_MAX_LIST];
	struct bench_sync_opts o;
	struct stats rt;
	char defimg[4096];
	const char *image;
	int code;

	code = bench_sync_parse_args(argc, argv, &o);
	if (code)
		return code;
	if (o.help) {
		fputs(bench_sync_usage, stdout);
		return 0;
	}
	image = o.image ? o.image : cli_default_image(defimg, sizeof(defimg));
	code = cli_check_image("bench sync", image, 64);
	if (code)
		return code;

	code = bench_sync_roundtrip(image, o.rounds, &rt);
	for (size_t i = 0; !code && i < o.nr_counts; i++)
		code = bench_sync_pause(image, o.vcpus[i], o.rounds, o.ab, &rows[i]);
	if (code)
		return code;
	if (o.json)
		return bench_sync_print_json(&rt, rows, o.nr_counts, o.ab);
	bench_sync_print_table(&rt, o.rounds, rows, o.nr_counts, o.ab);
	return 0;
}
