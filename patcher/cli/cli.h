/* SPDX-License-Identifier: MIT */
/*
 * cli.h - option parsing and output helpers shared by every vmpoke
 * sub-command (patcher/cli/cmd_*.c).  Everything here is pure so
 * tests/test_cli.c checks every bad-argument case without KVM.
 */
#ifndef VMPOKE_CLI_H
#define VMPOKE_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm.h"

struct json_object;

#define CLI_MAX_MEM_MIB		3072u	/* RAM must end below the MMIO doorbell */
#define CLI_MIN_MEM_MIB		2u	/* page tables, boot info, the image base */
#define CLI_MAX_LIST		16u

/* "vmpoke CMD: <msg>" and a --help hint on stderr; returns VMPOKE_EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The message for getopt_long's '?' or ':' (optstring must start with
 * ':'), naming the offending argument; returns VMPOKE_EXIT_USAGE.
 */
int cli_getopt_error(const char *cmd, int opt, char **argv);

/*
 * Parse a decimal number in [min, max] for option opt of command cmd;
 * 0, or VMPOKE_EXIT_USAGE after a message naming the option and the text.
 */
int cli_parse_u64(const char *cmd, const char *opt, const char *s,
		  uint64_t min, uint64_t max, uint64_t *out);
int cli_parse_uint(const char *cmd, const char *opt, const char *s,
		   unsigned int min, unsigned int max, unsigned int *out);
/* "1,2,4": at most cap numbers, each in [min, max]. */
int cli_parse_list(const char *cmd, const char *opt, const char *s,
		   unsigned int min, unsigned int max, unsigned int *out,
		   size_t cap, size_t *n);

/* Scenario names as the CLI spells them; -1 if unknown. */
int cli_scenario_parse(const char *s);
const char *cli_scenario_name(unsigned int scn);
const char *cli_outcome_name(enum vmm_outcome o);

/*
 * --trap-path, an option of every command: take every "--trap-path P" and
 * "--trap-path=P" out of argv[1..*argc) (up to a "--") and put the last P
 * into VMPOKE_TRAP_PATH, which every VM the process (and its children)
 * creates honours (vmm.h).  So a later --trap-path beats an earlier one and
 * the environment, and `--trap-path auto` undoes the environment.  Also
 * checks VMPOKE_TRAP_PATH itself.  0, or VMPOKE_EXIT_USAGE after a message
 * naming the bad value.
 */
int cli_take_trap_path(int *argc, char **argv);
#define CLI_TRAP_PATH_HELP \
"  --trap-path P      auto, debug-exit or doorbell: how a guest int3 reaches\n" \
"                     vmpoke (every command; default $VMPOKE_TRAP_PATH, else auto)\n"

/*
 * Check that path is a loadable image for mem_mib MiB of RAM, before any
 * KVM work, so input errors never depend on the host.  0 or
 * VMPOKE_EXIT_USAGE (message printed).
 */
int cli_check_image(const char *cmd, const char *path, uint64_t mem_mib);

/*
 * An output file named on the command line can be created (checked before
 * any KVM work, so the report is not lost at the end); "-" is stdout.
 * 0, or VMPOKE_EXIT_USAGE after a message naming the option and the path.
 */
int cli_check_output(const char *cmd, const char *opt, const char *path);

/*
 * Long runs (run with no end, torture, a campaign's run_for): one status
 * line on stderr, rewritten in place, only when stderr is a terminal.
 * cli_status_line() takes the text; cli_status_clear() wipes the line.
 */
bool cli_status_wanted(void);
void cli_status_line(const char *text);
void cli_status_clear(void);

/*
 * images/guest.img if it exists, else ../images/guest.img beside the
 * executable (so build/vmpoke works from any directory), else
 * $VMPOKE_DATADIR/guest.img.
 */
const char *cli_default_image(char *buf, size_t len);

/*
 * The bench commands' one optional IMAGE operand, after getopt: at most one
 * operand (else usage on stderr), the default image when there is none, and
 * cli_check_image() on it.  The path (argv[optind] or buf) or NULL after the
 * message; the caller then exits VMPOKE_EXIT_USAGE.
 */
const char *cli_bench_image(const char *cmd, int argc, char **argv, uint64_t mem_mib,
			    void (*usage)(FILE *f), char *buf, size_t len);

/* Write obj to path ("-" = stdout), pretty-printed; 0 or VMPOKE_EXIT_HOST. */
int cli_json_write(const char *cmd, const char *path, struct json_object *obj);

/* `vmpoke run` options (parsed by cmd_run.c, tested in test_cli.c). */
struct run_opts {
	struct vm_config cfg;
	unsigned int timeout_s;		/* 0 = none */
	const char *json;		/* NULL = no JSON */
	bool help;
};
/* Defaults, then argv; 0 or VMPOKE_EXIT_USAGE (message printed). */
int run_parse_args(int argc, char **argv, struct run_opts *o);

/* `vmpoke bench sync` options (cmd_bench_sync.c). */
struct bench_sync_opts {
	unsigned int vcpus[CLI_MAX_LIST];
	size_t nr_counts;
	unsigned int rounds;
	bool json;
	bool ab;			/* --ab: the old sync too, alternating rounds */
	bool help;
	const char *image;		/* NULL = cli_default_image() */
};
int bench_sync_parse_args(int argc, char **argv, struct bench_sync_opts *o);

#endif /* VMPOKE_CLI_H */
