// SPDX-License-Identifier: MIT
/*
 * cmd_syms.c - `vmpoke syms IMAGE [GLOB]`: the image's symbols as vmpoke
 * sees them (address order, nm letters), so a patch site or a symbolized
 * RIP can be checked without KVM.
 */
#include <fnmatch.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>

#include "commands.h"
#include "cli.h"
#include "symtab.h"

static const char syms_usage[] =
"Usage: vmpoke syms IMAGE [GLOB]\n"
"List IMAGE's symbols in address order: address, size (decimal), nm-style\n"
"type letter and name.  GLOB (fnmatch(3), quote it) keeps matching names.\n"
"\n"
CLI_TRAP_PATH_HELP
"  -h, --help   this text\n";

int cmd_syms(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *glob = NULL;
	struct symtab *st;
	char err[512];
	size_t shown = 0;
	int opt;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (opt != 'h')
			return cli_getopt_error("syms", opt, argv);
		fputs(syms_usage, stdout);
		return 0;
	}
	if (optind >= argc)
		return cli_usage_error("syms", "missing IMAGE");
	if (argc - optind > 2)
		return cli_usage_error("syms", "unexpected argument '%s'", argv[optind + 2]);
	if (argc - optind == 2)
		glob = argv[optind + 1];

	st = symtab_load(argv[optind], err, sizeof(err));
	if (!st) {
		fprintf(stderr, "vmpoke syms: %s\n", err);
		return VMPOKE_EXIT_USAGE;
	}
	for (size_t i = 0; i < symtab_count(st); i++) {
		const struct sym *s = symtab_at(st, i);

		if (glob && fnmatch(glob, s->name, 0))
			continue;
		printf("%016" PRIx64 " %8" PRIu64 " %c %s\n", s->addr, s->size, s->type, s->name);
		shown++;
	}
	if (!shown && glob)
		fprintf(stderr, "vmpoke syms: no symbol in %s matches '%s'\n", argv[optind], glob);
	symtab_free(st);
	return 0;
}
