// SPDX-License-Identifier: MIT
/*
 * cmd_torture.c - `vmpoke torture`: parse the arguments, run the torture
 * engine (patcher/torture.c) and report what it saw, as text or JSON.
 * Exit: 1 if a guest fault or check failure was detected, 3 on a host
 * error, 4 on a signal, else 0.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "cli.h"
#include "commands.h"
#include "../torture.h"

static volatile sig_atomic_t torture_signalled;

static void cmd_torture_on_signal(int sig)
{
	(void)sig;
	torture_signalled = 1;
}

static void cmd_torture_usage(FILE *f)
{
	fprintf(f, "usage: vmpoke torture IMAGE [--vcpus N] [--seconds S] "
		"[--min-events N] [--kinds LIST] [--hotplug]\n"
		"                     [--inject FAULT] [--json] [--tasks N] "
		"[--hz HZ] [--seed S]\n"
		"  LIST:  comma-separated nop5,nop2,call,jcc,multi,jump_label,\n"
		"         static_call,probe,optprobe,livepatch (default: the five site\n"
		"         kinds;\n"
		"         jump_label flips the image's static keys, static_call\n"
		"         retargets its static calls, probe places and removes INT3\n"
		"         probes on the lib_* functions, optprobe also optimizes and\n"
		"         unoptimizes them, livepatch replaces its lp_*\n"
		"         functions per task)\n"
		"  FAULT: no-int3, torn-write, no-shadow-check, no-sync, "
		"early-retire,\n"
		"         no-ghost, late-publish, no-stack-check (livepatch),\n"
		"         no-optimize-shadow (optprobe)\n"
		"  --min-events N: after S seconds go on (at most %d s more) until\n"
		"         every kind has made N events (patches, key flips, call\n"
		"         updates, probes placed, livepatch transitions)\n"
		CLI_TRAP_PATH_HELP, TORTURE_MIN_EVENTS_S);
}

static void cmd_torture_json(const struct torture_report *t, enum poke_inject inj)
{
	const struct poke_stats *st = &t->st;
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "patches", json_object_new_uint64(t->patches));
	json_object_object_add(o, "batches", json_object_new_uint64(t->batches));
	json_object_object_add(o, "key_flips", json_object_new_uint64(t->key_flips));
	json_object_object_add(o, "call_updates", json_object_new_uint64(t->call_updates));
	json_object_object_add(o, "probes_placed", json_object_new_uint64(t->probes.placed));
	json_object_object_add(o, "probes_removed", json_object_new_uint64(t->probes.removed));
	json_object_object_add(o, "probe_hits", json_object_new_uint64(t->probes.hits));
	json_object_object_add(o, "probe_missed", json_object_new_uint64(t->probes.missed));
	json_object_object_add(o, "probe_handler_calls",
			       json_object_new_uint64(t->probes.handler_calls));
	json_object_object_add(o, "probe_points", json_object_new_int(t->probes.points));
	json_object_object_add(o, "probe_refused", json_object_new_uint64(t->probes.refused));
	json_object_object_add(o, "probe_failures", json_object_new_int(t->probes.failures));
	json_object_object_add(o, "probes_optimized", json_object_new_uint64(t->probes.optimized));
	json_object_object_add(o, "probes_unoptimized",
			       json_object_new_uint64(t->probes.unoptimized));
	json_object_object_add(o, "probes_opt_refused",
			       json_object_new_uint64(t->probes.opt_refused));
	{
		const struct { const char *key; uint64_t v; } lp[] = {
			{ "livepatch_transitions", t->lp.transitions },
			{ "livepatch_reversals", t->lp.reversals },
			{ "livepatch_retries", t->lp.retries },
			{ "livepatch_switches", t->lp.switches },
			{ "livepatch_stragglers", t->lp.stragglers },
			{ "livepatch_planted", t->lp.planted },
		};

		for (size_t i = 0; i < sizeof(lp) / sizeof(lp[0]); i++)
			json_object_object_add(o, lp[i].key, json_object_new_uint64(lp[i].v));
	}
	/* Longer than --seconds only where --min-events kept it going. */
	json_object_object_add(o, "elapsed_s", json_object_new_double(t->elapsed));
	json_object_object_add(o, "syncs", json_object_new_uint64(st->syncs));
	/* Of those, the core syncs (membarrier); the rest were acknowledged. */
	json_object_object_add(o, "core_syncs", json_object_new_uint64(st->core_syncs));
	json_object_object_add(o, "sites", json_object_new_int(t->nr_sites));
	json_object_object_add(o, "trap_path",
			       json_object_new_string(vmm_trap_path_name(t->trap_path)));
	json_object_object_add(o, "trap_hits", json_object_new_uint64(st->trap_hits));
	json_object_object_add(o, "ghost_traps", json_object_new_uint64(st->ghost_traps));
	json_object_object_add(o, "foreign_traps", json_object_new_uint64(st->foreign_traps));
	json_object_object_add(o, "shadow_retries", json_object_new_uint64(st->shadow_retries));
	json_object_object_add(o, "shadow_aborts", json_object_new_uint64(st->shadow_aborts));
	json_object_object_add(o, "emu_faults", json_object_new_uint64(st->emu_faults));
	json_object_object_add(o, "guest_faults", json_object_new_uint64(t->guest_faults));
	json_object_object_add(o, "check_failures", json_object_new_uint64(t->check_failures));
	json_object_object_add(o, "detected", json_object_new_boolean(t->detected));
	json_object_object_add(o, "first_detection_s", t->first_detection >= 0 ?
			       json_object_new_double(t->first_detection) : NULL);
	json_object_object_add(o, "inject", inj != POKE_INJECT_NONE ?
			       json_object_new_string(torture_inject_name(inj)) : NULL);
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
	json_object_put(o);
}

static void cmd_torture_text(const struct torture_report *t, enum poke_inject inj)
{
	const struct poke_stats *st = &t->st;
	double elapsed = t->elapsed;

	printf("torture summary: %.1f s, %u sites, inject %s\n"
	       "  patches %" PRIu64 " (%.0f/s), batches %" PRIu64 ", syncs %" PRIu64
	       " (%" PRIu64 " core)\n"
	       "  trap_hits %" PRIu64 ", ghost_traps %" PRIu64
	       ", foreign_traps %" PRIu64 ", emu_faults %" PRIu64 "\n"
	       "  shadow_retries %" PRIu64 ", shadow_aborts %" PRIu64 "\n"
	       "  guest_faults %" PRIu64 ", check_failures %" PRIu64 "\n",
	       elapsed, t->nr_sites, torture_inject_name(inj), t->patches,
	       elapsed > 0 ? t->patches / elapsed : 0.0, t->batches, st->syncs, st->core_syncs,
	       st->trap_hits, st->ghost_traps, st->foreign_traps, st->emu_faults,
	       st->shadow_retries, st->shadow_aborts, t->guest_faults,
	       t->check_failures);
	if (t->key_flips)
		printf("  static key flips %" PRIu64 "\n", t->key_flips);
	if (t->call_updates)
		printf("  static call updates %" PRIu64 "\n", t->call_updates);
	if (t->probes.points)
		printf("  probes placed %" PRIu64 ", removed %" PRIu64 ", hits %" PRIu64
		       " (handler %" PRIu64 "), missed %" PRIu64 "\n"
		       "  probe points %u, refused %" PRIu64 ", probe failures %u\n",
		       t->probes.placed, t->probes.removed, t->probes.hits,
		       t->probes.handler_calls, t->probes.missed, t->probes.points,
		       t->probes.refused, t->probes.failures);
	if (t->lp.transitions || t->lp.retries)
		printf("  livepatch transitions %" PRIu64 " (%" PRIu64 " reversed), %" PRIu64
		       " retries, %" PRIu64 " task switches, %" PRIu64 " with a straggler "
		       "in a body\n", t->lp.transitions, t->lp.reversals, t->lp.retries,
		       t->lp.switches, t->lp.stragglers);
	if (t->detected)
		printf("  DETECTED after %.3f s\n", t->first_detection);
	else
		printf("  no failure seen\n");
}

static int cmd_torture_parse(int argc, char **argv, struct torture_opts *a)
{
	static const struct option opts[] = {
		{ "vcpus", required_argument, NULL, 'v' },
		{ "seconds", required_argument, NULL, 's' },
		{ "min-events", required_argument, NULL, 'm' },
		{ "kinds", required_argument, NULL, 'k' },
		{ "hotplug", no_argument, NULL, 'H' },
		{ "inject", required_argument, NULL, 'i' },
		{ "json", no_argument, NULL, 'j' },
		{ "tasks", required_argument, NULL, 't' },
		{ "hz", required_argument, NULL, 'z' },
		{ "seed", required_argument, NULL, 'S' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char msg[256];
	uint64_t seed;
	int c, inj;

	memset(a, 0, sizeof(*a));
	a->cfg.nr_vcpus = 2;
	a->cfg.tasks = 3;
	a->cfg.hz = 1000;
	a->cfg.mem_mib = 64;
	a->cfg.scenario = VMPOKE_SCN_TORTURE;
	a->cfg.seed = 1;
	a->cfg.quiet = true;
	a->seconds = 10;
	a->kinds = TORTURE_KINDS_ALL;

	optind = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'v':
			if (cli_parse_uint("torture", "--vcpus", optarg, 1,
					   VMPOKE_MAX_VCPUS, &a->cfg.nr_vcpus))
				return -1;
			break;
		case 's': {
			char *end;

			a->seconds = strtod(optarg, &end);
			if (end == optarg || *end || !(a->seconds > 0)) {
				vmm_error("torture: --seconds %s: expected a "
					  "positive number", optarg);
				return -1;
			}
			break;
		}
		case 'm':
			if (cli_parse_uint("torture", "--min-events", optarg, 0,
					   1000000, &a->min_events))
				return -1;
			break;
		case 'k':
			a->kinds = torture_parse_kinds(optarg, msg, sizeof(msg));
			if (!a->kinds) {
				vmm_error("torture: %s", msg);
				return -1;
			}
			break;
		case 'H':
			a->hotplug = true;
			break;
		case 'i':
			inj = torture_parse_inject(optarg);
			if (inj < 0) {
				vmm_error("torture: --inject %s: unknown fault "
					  "(no-int3, torn-write, no-shadow-check, "
					  "no-sync, early-retire)", optarg);
				return -1;
			}
			a->inject = (enum poke_inject)inj;
			break;
		case 'j':
			a->json = true;
			break;
		case 't':
			if (cli_parse_uint("torture", "--tasks", optarg, 1,
					   VMPOKE_MAX_TASKS, &a->cfg.tasks))
				return -1;
			break;
		case 'z':
			if (cli_parse_uint("torture", "--hz", optarg, 0, 5000,
					   &a->cfg.hz))
				return -1;
			break;
		case 'S':
			if (cli_parse_u64("torture", "--seed", optarg, 0,
					  UINT64_MAX, &seed))
				return -1;
			a->cfg.seed = seed;
			break;
		case 'h':
			cmd_torture_usage(stdout);
			return 1;
		default:
			cli_getopt_error("torture", c, argv);
			return -1;
		}
	}
	if (optind != argc - 1) {
		cmd_torture_usage(stderr);
		return -1;
	}
	a->cfg.image = argv[optind];
	/* TORTURE plus the sleeper, livepatch's straggler */
	if (a->kinds & TORTURE_KINDS_LP)
		a->cfg.scenario = VMPOKE_SCN_LIVEPATCH;
	if (a->inject == POKE_INJECT_NO_STACK_CHECK && !(a->kinds & TORTURE_KINDS_LP)) {
		vmm_error("torture: --inject no-stack-check needs --kinds livepatch");
		return -1;
	}
	if (a->hotplug && a->cfg.nr_vcpus < 2) {
		vmm_error("torture: --hotplug needs --vcpus >= 2 (never all offline)");
		return -1;
	}
	return cli_check_image("torture", a->cfg.image, a->cfg.mem_mib) ? -1 : 0;
}

static void cmd_torture_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = cmd_torture_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

int cmd_torture(int argc, char **argv)
{
	struct torture_opts a;
	struct torture_report rep;
	FILE *notes;
	int r = cmd_torture_parse(argc, argv, &a);

	if (r)
		return r > 0 ? VMPOKE_EXIT_OK : VMPOKE_EXIT_USAGE;
	a.interrupted = &torture_signalled;
	a.progress = cli_status_line;
	cmd_torture_signals();
	r = torture_run(&a, &rep);
	cli_status_clear();
	if (r)
		return r;
	if (a.json)
		cmd_torture_json(&rep, a.inject);
	else
		cmd_torture_text(&rep, a.inject);
	notes = a.json ? stderr : stdout;
	if (a.hotplug)
		fprintf(notes, "torture: %" PRIu64 " hotplug cycles\n",
			rep.hotplug_cycles);
	if (rep.refused)
		fprintf(notes, "torture: %u site transitions refused by the "
			"engine (see the messages above); those sites stayed "
			"put\n", rep.refused);
	if (rep.detected)
		return VMPOKE_EXIT_GUEST;
	if (rep.host_error)
		return VMPOKE_EXIT_HOST;
	if (torture_signalled)
		return VMPOKE_EXIT_SIGNAL;
	return VMPOKE_EXIT_OK;
}
