// SPDX-License-Identifier: MIT
/*
 * main.c - the vmpoke command: dispatch to a sub-command.
 * Each sub-command parses its own options and returns an exit code
 * (enum vmpoke_exit); `vmpoke help CMD` is `vmpoke CMD --help`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "patcher.h"
#include "vmm.h"

#ifndef VMPOKE_VERSION
#define VMPOKE_VERSION "unknown"
#endif

static const char main_usage[] =
"Usage: vmpoke COMMAND [ARGS]\n"
"A small KVM VMM that runs its own SMP guest and patches the guest's code\n"
"from outside with the Linux text_poke_bp protocol.\n"
"\n"
"Commands:\n"
"  run IMAGE [options]      boot the guest and run a scenario\n"
"  syms IMAGE [GLOB]        list the image's symbols\n"
"  doctor [--json]          check /dev/kvm and measure this host\n"
"  bench sync [options]     cost of exits, sync and pause\n"
"  bench poke [options]     cost of live patching\n"
"  bench flip [options]     guest throughput while a static key flips\n"
"  bench probe [options]    cost of one INT3 probe hit\n"
"  torture [options]        patch every site kind under load and check\n"
"  campaign SCRIPT [IMAGE]  run a Lua campaign: probe and patch by symbol\n"
"  help [COMMAND]           this text, or COMMAND --help\n"
"\n"
"  --version, --help\n"
"  --trap-path P            auto, debug-exit or doorbell, for any command:\n"
"                           how a guest int3 reaches vmpoke (default\n"
"                           $VMPOKE_TRAP_PATH, else auto; see vmpoke doctor)\n"
"\n"
"Exit: 0 ok, 1 guest failed, 2 usage/input error, 3 host/KVM error, 4 signal.\n"
"See vmpoke(1).\n";

static const char bench_usage[] =
"Usage: vmpoke bench sync|poke|flip|probe [options]\n"
"  sync   exit round trip, vmm_sync and pause/resume latency\n"
"  poke   live-patch latency\n"
"  flip   guest throughput while a static key flips\n"
"  probe  cost of one INT3 probe hit\n"
"Try 'vmpoke bench sync --help', 'vmpoke bench poke --help' or\n"
"'vmpoke bench probe --help'.\n";

typedef int (*cmd_fn)(int argc, char **argv);

static int main_bench(int argc, char **argv);

static const struct {
	const char *name;
	cmd_fn fn;
} commands[] = {
	{ "run", cmd_run },
	{ "syms", cmd_syms },
	{ "doctor", cmd_doctor },
	{ "bench", main_bench },
	{ "torture", cmd_torture },
	{ "campaign", cmd_campaign },
};

static cmd_fn main_find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, name))
			return commands[i].fn;
	return NULL;
}

static int main_unknown(const char *what, const char *name, const char *hint)
{
	fprintf(stderr, "vmpoke: unknown %s '%s'\nTry '%s'.\n", what, name, hint);
	return VMPOKE_EXIT_USAGE;
}

/* argv[0] is "bench"; argv[1] the benchmark. */
static int main_bench(int argc, char **argv)
{
	if (argc < 2) {
		fputs(bench_usage, stderr);
		return VMPOKE_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(bench_usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "sync"))
		return cmd_bench_sync(argc - 1, argv + 1);
	if (!strcmp(argv[1], "poke"))
		return cmd_bench_poke(argc - 1, argv + 1);
	if (!strcmp(argv[1], "flip"))
		return cmd_bench_flip(argc - 1, argv + 1);
	if (!strcmp(argv[1], "probe"))
		return cmd_bench_probe(argc - 1, argv + 1);
	return main_unknown("benchmark", argv[1], "vmpoke bench --help");
}

/* `vmpoke help [CMD [SUB]]`: CMD's own --help. */
static int main_help(int argc, char **argv)
{
	char help[] = "--help";
	char *args[3];
	cmd_fn fn;

	if (argc < 2) {
		fputs(main_usage, stdout);
		return 0;
	}
	fn = main_find(argv[1]);
	if (!fn)
		return main_unknown("command", argv[1], "vmpoke help");
	args[0] = argv[1];
	if (fn == main_bench && argc > 2) {
		args[1] = argv[2];
		args[2] = help;
		return fn(3, args);
	}
	args[1] = help;
	args[2] = NULL;
	return fn(2, args);
}

int main(int argc, char **argv)
{
	cmd_fn fn;
	int ret = cli_take_trap_path(&argc, argv);

	if (ret)
		return ret;
	if (argc < 2) {
		fputs(main_usage, stderr);
		return VMPOKE_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(main_usage, stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("vmpoke %s\n", VMPOKE_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help"))
		return main_help(argc - 1, argv + 1);
	fn = main_find(argv[1]);
	if (!fn)
		return main_unknown("command", argv[1], "vmpoke --help");
	/* Read by every patcher the command creates: refuse a bad one up front. */
	if (poke_cpl0_parse(getenv("VMPOKE_CPL0_PATCH")) < 0) {
		vmm_error("VMPOKE_CPL0_PATCH=%s: expected auto, breakpoint or stop-the-world",
			  getenv("VMPOKE_CPL0_PATCH"));
		return VMPOKE_EXIT_USAGE;
	}
	return fn(argc - 1, argv + 1);
}
