// SPDX-License-Identifier: MIT
/*
 * cmd_run.c - `vmpoke run IMAGE [options]`: boot the guest, wait for the
 * run to end, print a per-vCPU summary and exit with the outcome's code.
 *
 * --timeout always means failure (exit 1): it is how a run that does not
 * finish is ended, so the summary then shows each vCPU's RIP symbolized.
 * A run-forever (--iterations 0) without --timeout ends on SIGINT/SIGTERM
 * (exit 4).
 */
#include <getopt.h>
#include <inttypes.h>
#include <json.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "clock.h"
#include "commands.h"
#include "symtab.h"
#include "vmm.h"

#define RUN_MAX_TIMEOUT_S	(7u * 24 * 3600)

static const char run_usage[] =
"Usage: vmpoke run IMAGE [options]\n"
"Boot IMAGE (an ELF64 x86-64 vmpoke guest) and run a scenario.\n"
"\n"
"  --vcpus N          vCPUs, 1..64 (default 2)\n"
"  --mem MIB          guest RAM in MiB, 2..3072 (default 64)\n"
"  --tasks N          tasks per vCPU, 1..8 (default 2)\n"
"  --hz HZ            scheduler tick, 0 = none, max 5000 (default 1000)\n"
"  --scenario NAME    hot ud pf triple selfcheck int3 torture ping idle lab\n"
"                     emufail badstack\n"
"                     (default hot)\n"
"  --iterations N     loops per task, 0 = until stopped (default 0)\n"
"  --seed N           workload seed (default 1)\n"
"  --timeout SEC      end an unfinished run after SEC s; exit 1 (default none)\n"
CLI_TRAP_PATH_HELP
"  --quiet            do not echo the guest console\n"
"  --json FILE        also write the summary as JSON to FILE ('-' = stdout)\n"
"  -h, --help         this text\n"
"\n"
"Exit: 0 ok, 1 guest failed or timed out, 2 usage/input, 3 host/KVM, 4 signal.\n";

int run_parse_args(int argc, char **argv, struct run_opts *o)
{
	static const struct option longopts[] = {
		{ "vcpus", required_argument, NULL, 'v' },
		{ "mem", required_argument, NULL, 'm' },
		{ "tasks", required_argument, NULL, 't' },
		{ "hz", required_argument, NULL, 'z' },
		{ "scenario", required_argument, NULL, 's' },
		{ "iterations", required_argument, NULL, 'i' },
		{ "seed", required_argument, NULL, 'S' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vm_config *c = &o->cfg;
	int opt, ret = 0, v;

	memset(o, 0, sizeof(*o));
	c->nr_vcpus = 2;
	c->mem_mib = 64;
	c->tasks = 2;
	c->hz = 1000;
	c->scenario = VMPOKE_SCN_HOT;
	c->seed = 1;
	c->trap_path = VMM_TRAP_AUTO;	/* --trap-path: VMPOKE_TRAP_PATH (main.c) */

	optind = 0;	/* glibc: full re-initialisation, so tests can call us again */
	opterr = 0;
	while (!ret && (opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'v':
			ret = cli_parse_uint("run", "--vcpus", optarg, 1, VMPOKE_MAX_VCPUS,
					     &c->nr_vcpus);
			break;
		case 'm':
			ret = cli_parse_u64("run", "--mem", optarg, CLI_MIN_MEM_MIB,
					    CLI_MAX_MEM_MIB, &c->mem_mib);
			break;
		case 't':
			ret = cli_parse_uint("run", "--tasks", optarg, 1, VMPOKE_MAX_TASKS,
					     &c->tasks);
			break;
		case 'z':
			ret = cli_parse_uint("run", "--hz", optarg, 0, 5000, &c->hz);
			break;
		case 's':
			v = cli_scenario_parse(optarg);
			if (v < 0)
				ret = cli_usage_error("run", "--scenario: unknown scenario '%s' "
						      "(hot ud pf triple selfcheck int3 torture "
						      "ping idle lab emufail badstack)", optarg);
			else
				c->scenario = (enum vmpoke_scenario)v;
			break;
		case 'i':
			ret = cli_parse_u64("run", "--iterations", optarg, 0, UINT64_MAX,
					    &c->iterations);
			break;
		case 'S':
			ret = cli_parse_u64("run", "--seed", optarg, 0, UINT64_MAX, &c->seed);
			break;
		case 'T':
			ret = cli_parse_uint("run", "--timeout", optarg, 0, RUN_MAX_TIMEOUT_S,
					     &o->timeout_s);
			break;
		case 'q':
			c->quiet = true;
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'h':
			o->help = true;
			return 0;
		default:
			ret = cli_getopt_error("run", opt, argv);
		}
	}
	if (ret)
		return ret;
	if (optind >= argc)
		return cli_usage_error("run", "missing IMAGE");
	if (argc - optind > 1)
		return cli_usage_error("run", "unexpected argument '%s'", argv[optind + 1]);
	c->image = argv[optind];
	return 0;
}

/* --- signals ------------------------------------------------------------- */

static _Atomic(struct vm *) run_vm;
static volatile sig_atomic_t run_signalled;

static void cmd_run_on_signal(int sig)
{
	struct vm *vm = atomic_load(&run_vm);

	(void)sig;
	run_signalled = 1;
	if (vm)
		vmm_stop(vm);	/* async-signal-safe by contract */
}

static void cmd_run_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	/*
	 * No SA_RESETHAND: timeout(1) signals both the command and its
	 * process group, so one "stop" can arrive twice.
	 */
	sa.sa_handler = cmd_run_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* --- the guest's task table --------------------------------------------- */

/*
 * Sum each vCPU's task iterations from "vmpoke_tasks" (the validated
 * reader); a task naming a vCPU that does not exist is ignored.  0, or -1
 * with why set.
 */
static int cmd_run_task_iterations(struct vm *vm, unsigned int nr_vcpus, uint64_t *iters,
			       char *why, size_t whylen)
{
	struct vmpoke_task_table *tab = malloc(sizeof(*tab));

	memset(iters, 0, nr_vcpus * sizeof(*iters));
	if (!tab) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (vmm_tasks_read(vm, tab, why, whylen)) {
		free(tab);
		return -1;
	}
	for (uint32_t i = 0; i < tab->nr_tasks; i++) {
		const struct vmpoke_task *t = &tab->tasks[i];

		if (t->state != VMPOKE_TASK_UNUSED && t->vcpu < nr_vcpus)
			iters[t->vcpu] += t->iterations;
	}
	free(tab);
	return 0;
}

/* --- the status line of a run with no end --------------------------------- */

struct run_status {
	struct vm *vm;
	unsigned int nr_vcpus;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

/* About once a second until stopped: elapsed time and guest iterations. */
static void *cmd_run_status_main(void *arg)
{
	struct run_status *rs = arg;
	uint64_t iters[VMPOKE_MAX_VCPUS], total;
	struct timespec ts;
	unsigned int secs = 0;
	char why[256], line[128];

	pthread_mutex_lock(&rs->lock);
	while (!rs->stop) {
		clock_deadline(&ts, 1000 * CLOCK_NS_PER_MS);
		if (pthread_cond_timedwait(&rs->cond, &rs->lock, &ts) == 0 || rs->stop)
			continue;
		secs++;
		total = 0;
		if (!cmd_run_task_iterations(rs->vm, rs->nr_vcpus, iters, why, sizeof(why)))
			for (unsigned int i = 0; i < rs->nr_vcpus; i++)
				total += iters[i];
		snprintf(line, sizeof(line), "run: %us, %" PRIu64 " iterations (Ctrl-C ends it)",
			 secs, total);
		cli_status_line(line);
	}
	pthread_mutex_unlock(&rs->lock);
	return NULL;
}

static void cmd_run_status_stop(struct run_status *rs, pthread_t t)
{
	pthread_mutex_lock(&rs->lock);
	rs->stop = true;
	pthread_cond_signal(&rs->cond);
	pthread_mutex_unlock(&rs->lock);
	pthread_join(t, NULL);
	cli_status_clear();
}

/* --- reporting ------------------------------------------------------------ */

struct run_report {
	unsigned int nr_vcpus;
	uint64_t iters[VMPOKE_MAX_VCPUS];
	bool iters_ok;
	char iters_why[256];
	struct vmm_vcpu_stats st[VMPOKE_MAX_VCPUS];
	bool have_rip;
	char rip[VMPOKE_MAX_VCPUS][128];
	enum vmm_trap_path trap_path;	/* the one the VM used */
};

/* On timeout: stop the world and name where every vCPU is. */
static void cmd_run_collect_rips(struct vm *vm, struct run_report *r)
{
	if (vmm_pause(vm)) {
		fprintf(stderr, "vmpoke run: cannot pause the VM to read RIPs\n");
		return;
	}
	for (unsigned int i = 0; i < r->nr_vcpus; i++) {
		struct kvm_regs regs;

		if (vmm_vcpu_get_regs(vm, i, &regs))
			snprintf(r->rip[i], sizeof(r->rip[i]), "?");
		else
			vmm_symbolize(vm, regs.rip, r->rip[i], sizeof(r->rip[i]));
	}
	r->have_rip = true;
	vmm_resume(vm);
}

static void cmd_run_collect(struct vm *vm, enum vmm_outcome outcome, struct run_report *r)
{
	r->nr_vcpus = vmm_nr_vcpus(vm);
	r->trap_path = vmm_trap_path(vm);
	if (r->nr_vcpus > VMPOKE_MAX_VCPUS)
		r->nr_vcpus = VMPOKE_MAX_VCPUS;
	if (outcome == VMM_TIMEOUT)
		cmd_run_collect_rips(vm, r);
	r->iters_ok = !cmd_run_task_iterations(vm, r->nr_vcpus, r->iters, r->iters_why,
					   sizeof(r->iters_why));
	for (unsigned int i = 0; i < r->nr_vcpus; i++)
		vmm_vcpu_stats(vm, i, &r->st[i]);
}

static void cmd_run_print(const struct run_report *r, const struct vmm_result *res)
{
	uint64_t tot[4] = { 0 };

	printf("%4s %16s %12s %12s %10s%s\n", "vCPU", "iterations", "exits",
	       "syncs-acked", "traps", r->have_rip ? "  rip" : "");
	for (unsigned int i = 0; i < r->nr_vcpus; i++) {
		const struct vmm_vcpu_stats *s = &r->st[i];
		char it[32];

		if (r->iters_ok)
			snprintf(it, sizeof(it), "%" PRIu64, r->iters[i]);
		else
			snprintf(it, sizeof(it), "-");
		printf("%4u %16s %12" PRIu64 " %12" PRIu64 " %10" PRIu64 "%s%s%s\n", i, it,
		       s->exits, s->syncs_acked, s->traps, r->have_rip ? "  " : "",
		       r->have_rip ? r->rip[i] : "", s->online ? "" : " (offline)");
		tot[0] += r->iters[i];
		tot[1] += s->exits;
		tot[2] += s->syncs_acked;
		tot[3] += s->traps;
	}
	if (r->iters_ok)
		printf("%4s %16" PRIu64, "all", tot[0]);
	else
		printf("%4s %16s", "all", "-");
	printf(" %12" PRIu64 " %12" PRIu64 " %10" PRIu64 "\n", tot[1], tot[2], tot[3]);
	if (!r->iters_ok)
		printf("iterations unknown: %s\n", r->iters_why);
	printf("result: %s\n", res->message[0] ? res->message : cli_outcome_name(res->outcome));
}

static struct json_object *cmd_run_json(const struct run_opts *o, const struct run_report *r,
				    const struct vmm_result *res, int code)
{
	struct json_object *j = json_object_new_object();
	struct json_object *cfg = json_object_new_object();
	struct json_object *arr = json_object_new_array();

	json_object_object_add(cfg, "image", json_object_new_string(o->cfg.image));
	json_object_object_add(cfg, "vcpus", json_object_new_int64(o->cfg.nr_vcpus));
	json_object_object_add(cfg, "mem_mib", json_object_new_int64((int64_t)o->cfg.mem_mib));
	json_object_object_add(cfg, "tasks", json_object_new_int64(o->cfg.tasks));
	json_object_object_add(cfg, "hz", json_object_new_int64(o->cfg.hz));
	json_object_object_add(cfg, "scenario",
			       json_object_new_string(cli_scenario_name(o->cfg.scenario)));
	json_object_object_add(cfg, "iterations", json_object_new_uint64(o->cfg.iterations));
	json_object_object_add(cfg, "seed", json_object_new_uint64(o->cfg.seed));
	json_object_object_add(cfg, "timeout_s", json_object_new_int64(o->timeout_s));
	/* Asked for (auto unless forced) and, once the VM existed, used. */
	json_object_object_add(cfg, "trap_path", json_object_new_string(
		vmm_trap_path_name(o->cfg.trap_path != VMM_TRAP_AUTO ? o->cfg.trap_path :
				   (enum vmm_trap_path)vmm_trap_path_env())));
	json_object_object_add(j, "config", cfg);
	json_object_object_add(j, "trap_path", r ?
			       json_object_new_string(vmm_trap_path_name(r->trap_path)) : NULL);
	json_object_object_add(j, "outcome",
			       json_object_new_string(cli_outcome_name(res->outcome)));
	json_object_object_add(j, "exit_code", json_object_new_int(code));
	json_object_object_add(j, "message", json_object_new_string(res->message));
	json_object_object_add(j, "vcpu", json_object_new_int(res->vcpu));
	json_object_object_add(j, "result_code", json_object_new_uint64(res->result_code));
	for (unsigned int i = 0; r && i < r->nr_vcpus; i++) {
		struct json_object *v = json_object_new_object();

		json_object_object_add(v, "vcpu", json_object_new_int64(i));
		json_object_object_add(v, "iterations", r->iters_ok ?
				       json_object_new_uint64(r->iters[i]) : NULL);
		json_object_object_add(v, "exits", json_object_new_uint64(r->st[i].exits));
		json_object_object_add(v, "syncs_acked",
				       json_object_new_uint64(r->st[i].syncs_acked));
		/* The old name of syncs_acked, kept for existing readers. */
		json_object_object_add(v, "kicks_acked",
				       json_object_new_uint64(r->st[i].syncs_acked));
		json_object_object_add(v, "traps", json_object_new_uint64(r->st[i].traps));
		json_object_object_add(v, "online", json_object_new_boolean(r->st[i].online));
		if (r->have_rip)
			json_object_object_add(v, "rip", json_object_new_string(r->rip[i]));
		json_object_array_add(arr, v);
	}
	json_object_object_add(j, "vcpus", arr);
	return j;
}

static int cmd_run_write_json(const struct run_opts *o, const struct run_report *r,
			  const struct vmm_result *res, int code)
{
	struct json_object *j;
	int ret;

	if (!o->json)
		return code;
	j = cmd_run_json(o, r, res, code);
	ret = cli_json_write("run", o->json, j);
	json_object_put(j);
	/* The run's own failure is the more useful exit code. */
	return code ? code : ret;
}

int cmd_run(int argc, char **argv)
{
	static struct run_report rep;
	struct run_status rs = { .lock = PTHREAD_MUTEX_INITIALIZER };
	pthread_t status_thread;
	bool status = false;
	struct vmm_result res;
	struct run_opts o;
	enum vmm_outcome outcome;
	struct vm *vm;
	int code;

	clock_cond_init(&rs.cond);	/* the status line's deadline */

	code = run_parse_args(argc, argv, &o);
	if (code)
		return code;
	if (o.help) {
		fputs(run_usage, stdout);
		return 0;
	}
	code = cli_check_image("run", o.cfg.image, o.cfg.mem_mib);
	if (!code)
		code = cli_check_output("run", "--json", o.json);
	if (code)
		return code;

	memset(&res, 0, sizeof(res));
	res.vcpu = -1;
	cmd_run_install_signals();
	vm = vmm_create(&o.cfg, &code);
	if (!vm) {
		res.outcome = VMM_HOST_ERROR;
		snprintf(res.message, sizeof(res.message), "could not create the VM (see above)");
		return cmd_run_write_json(&o, NULL, &res, code ? code : VMPOKE_EXIT_HOST);
	}
	atomic_store(&run_vm, vm);
	if (run_signalled)
		vmm_stop(vm);
	if (vmm_start(vm)) {
		atomic_store(&run_vm, NULL);
		vmm_destroy(vm);
		res.outcome = VMM_HOST_ERROR;
		snprintf(res.message, sizeof(res.message), "could not start the vCPUs");
		fprintf(stderr, "vmpoke run: %s\n", res.message);
		return cmd_run_write_json(&o, NULL, &res, VMPOKE_EXIT_HOST);
	}
	if (!o.cfg.iterations && cli_status_wanted()) {
		rs.vm = vm;
		rs.nr_vcpus = o.cfg.nr_vcpus;
		status = !pthread_create(&status_thread, NULL, cmd_run_status_main, &rs);
	}
	outcome = vmm_wait(vm, o.timeout_s * 1000u, &res);
	if (status)
		cmd_run_status_stop(&rs, status_thread);
	res.outcome = outcome;
	memset(&rep, 0, sizeof(rep));
	cmd_run_collect(vm, outcome, &rep);
	vmm_stop(vm);
	atomic_store(&run_vm, NULL);
	vmm_destroy(vm);

	if (run_signalled || outcome == VMM_STOPPED)
		code = VMPOKE_EXIT_SIGNAL;
	else
		code = vmm_outcome_exit_code(outcome);
	cmd_run_print(&rep, &res);
	return cmd_run_write_json(&o, &rep, &res, code);
}
