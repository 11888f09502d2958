// SPDX-License-Identifier: MIT
/*
 * cmd_campaign.c - `vmpoke campaign SCRIPT.lua [IMAGE] [options]`: run a
 * Lua campaign against the guest (include/campaign.h, README.md).
 *
 * SIGINT/SIGTERM do not stop the guest at once: the campaign first undoes
 * every probe and patch on the running guest, then writes its report and
 * exits 4.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "campaign.h"
#include "cli.h"
#include "commands.h"
#include "vmm.h"

#define CAMPAIGN_MAX_TIMEOUT_S	(7u * 24 * 3600)

static const char campaign_usage[] =
"Usage: vmpoke campaign SCRIPT.lua [IMAGE] [options]\n"
"Run a Lua 5.4 campaign that probes and patches the guest by symbol.\n"
"The first use of `vm` boots IMAGE with the global table\n"
"campaign = { vcpus=, tasks=, scenario=, hz=, iterations= }; options override it.\n"
"\n"
"  --vcpus N          vCPUs, 1..64\n"
"  --tasks N          tasks per vCPU, 1..8\n"
"  --scenario NAME    guest scenario (default hot)\n"
"  --json FILE        write the report as JSON ('-' = stdout)\n"
"  --events FILE      NDJSON event stream\n"
"  --trace FILE       Chrome trace-event JSON (Perfetto, chrome://tracing)\n"
"  --timeout SEC      end the campaign after SEC s; exit 1\n"
"  --quiet            do not echo the guest console\n"
"  -h, --help         this text\n"
"\n"
"IMAGE defaults to images/guest.img, else ../images/guest.img beside the\n"
"executable, else $VMPOKE_DATADIR/guest.img.\n"
"Exit: 0 every expectation held and the guest stayed healthy, 1 an expectation\n"
"failed or the guest faulted, 2 script or usage error, 3 host error, 4 signal.\n";

int campaign_parse_args(int argc, char **argv, struct campaign_opts *o, bool *help)
{
	static const struct option longopts[] = {
		{ "vcpus", required_argument, NULL, 'v' },
		{ "tasks", required_argument, NULL, 't' },
		{ "scenario", required_argument, NULL, 's' },
		{ "json", required_argument, NULL, 'j' },
		{ "events", required_argument, NULL, 'e' },
		{ "trace", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt, ret = 0;

	memset(o, 0, sizeof(*o));
	o->scenario = -1;
	o->scenario_parse = cli_scenario_parse;
	o->sink = &campaign_files;
	o->progress = cli_status_line;
	o->progress_clear = cli_status_clear;
	*help = false;
	optind = 0;
	opterr = 0;
	while (!ret && (opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'v':
			ret = cli_parse_uint("campaign", "--vcpus", optarg, 1, VMPOKE_MAX_VCPUS,
					     &o->vcpus);
			break;
		case 't':
			ret = cli_parse_uint("campaign", "--tasks", optarg, 1, VMPOKE_MAX_TASKS,
					     &o->tasks);
			break;
		case 's':
			o->scenario = cli_scenario_parse(optarg);
			if (o->scenario < 0)
				ret = cli_usage_error("campaign", "--scenario: unknown scenario "
						      "'%s'", optarg);
			break;
		case 'j':
			o->json = optarg;
			break;
		case 'e':
			o->events = optarg;
			break;
		case 'r':
			o->trace = optarg;
			break;
		case 'T':
			ret = cli_parse_uint("campaign", "--timeout", optarg, 1,
					     CAMPAIGN_MAX_TIMEOUT_S, &o->timeout_s);
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'h':
			*help = true;
			return 0;
		default:
			ret = cli_getopt_error("campaign", opt, argv);
		}
	}
	if (ret)
		return ret;
	if (optind >= argc)
		return cli_usage_error("campaign", "missing SCRIPT.lua");
	o->script = argv[optind++];
	if (optind < argc)
		o->image = argv[optind++];
	if (optind < argc)
		return cli_usage_error("campaign", "unexpected argument '%s'", argv[optind]);
	return 0;
}

static void campaign_on_signal(int sig)
{
	campaign_signal(sig);
}

int cmd_campaign(int argc, char **argv)
{
	struct campaign_opts o;
	struct sigaction sa, old_int, old_term;
	char defimg[4096], command[1024];
	size_t n = 0;
	bool help;
	void *be;
	int r;

	r = campaign_parse_args(argc, argv, &o, &help);
	if (r)
		return r;
	if (help) {
		fputs(campaign_usage, stdout);
		return VMPOKE_EXIT_OK;
	}
	if (access(o.script, R_OK))
		return cli_usage_error("campaign", "cannot read script '%s'", o.script);
	if (!o.image)
		o.image = cli_default_image(defimg, sizeof(defimg));
	if (cli_check_image("campaign", o.image, 64) ||
	    cli_check_output("campaign", "--json", o.json) ||
	    cli_check_output("campaign", "--events", o.events) ||
	    cli_check_output("campaign", "--trace", o.trace))
		return VMPOKE_EXIT_USAGE;
	command[0] = 0;
	for (int i = -1; i < argc && n < sizeof(command); i++)
		n += (size_t)snprintf(command + n, sizeof(command) - n, "%s%s", i < 0 ? "" : " ",
				      i < 0 ? "vmpoke" : argv[i]);
	o.command = command;

	be = campaign_kvm_new();
	if (!be) {
		fprintf(stderr, "vmpoke campaign: out of memory\n");
		return VMPOKE_EXIT_HOST;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = campaign_on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, &old_int);
	sigaction(SIGTERM, &sa, &old_term);
	r = campaign_run(&o, &campaign_kvm_ops, be);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	return r;
}
