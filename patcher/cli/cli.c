// SPDX-License-Identifier: MIT
/*
 * cli.c - number, list and name parsing, image pre-checks and JSON output
 * for the vmpoke sub-commands.  See cli.h.
 */
#include <errno.h>
#include <getopt.h>
#include <json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "elf_load.h"

#ifndef VMPOKE_DATADIR
#define VMPOKE_DATADIR "/usr/local/share/vmpoke"
#endif

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vmpoke %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'vmpoke %s --help'.\n", cmd);
	return VMPOKE_EXIT_USAGE;
}

int cli_getopt_error(const char *cmd, int opt, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	if (opt == ':')
		return cli_usage_error(cmd, "option '%s' needs a value", arg);
	/* A long option is named whole; a short one by its letter. */
	if (!strncmp(arg, "--", 2) || !optopt)
		return cli_usage_error(cmd, "unknown option '%s'", arg);
	return cli_usage_error(cmd, "unknown option '-%c'", optopt);
}

int cli_parse_u64(const char *cmd, const char *opt, const char *s,
		  uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	/* strtoull accepts "-1" and leading blanks: refuse both. */
	if (!s || !*s || *s < '0' || *s > '9')
		return cli_usage_error(cmd, "%s: '%s' is not a number", opt, s ? s : "");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return cli_usage_error(cmd, "%s: '%s' is not a number", opt, s);
	if (errno == ERANGE || v < min || v > max)
		return cli_usage_error(cmd, "%s: %s is out of range [%llu, %llu]", opt, s,
				       (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

int cli_parse_uint(const char *cmd, const char *opt, const char *s,
		   unsigned int min, unsigned int max, unsigned int *out)
{
	uint64_t v;
	int ret = cli_parse_u64(cmd, opt, s, min, max, &v);

	if (!ret)
		*out = (unsigned int)v;
	return ret;
}

int cli_parse_list(const char *cmd, const char *opt, const char *s,
		   unsigned int min, unsigned int max, unsigned int *out,
		   size_t cap, size_t *n)
{
	char *copy, *tok, *save = NULL;
	int ret = 0;

	if (!s || !*s)
		return cli_usage_error(cmd, "%s: empty list", opt);
	copy = strdup(s);
	if (!copy)
		return cli_usage_error(cmd, "%s: out of memory", opt);
	*n = 0;
	/* strtok_r would skip empty items; "1,,2" is a typo worth reporting. */
	if (s[0] == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,")) {
		free(copy);
		return cli_usage_error(cmd, "%s: empty item in '%s'", opt, s);
	}
	for (tok = strtok_r(copy, ",", &save); tok && !ret;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*n >= cap) {
			ret = cli_usage_error(cmd, "%s: more than %zu items in '%s'",
					      opt, cap, s);
			break;
		}
		ret = cli_parse_uint(cmd, opt, tok, min, max, &out[*n]);
		if (!ret)
			(*n)++;
	}
	free(copy);
	return ret;
}

static const char *const scenario_names[VMPOKE_SCN_MAX] = {
	[VMPOKE_SCN_HOT] = "hot",	[VMPOKE_SCN_UD] = "ud",
	[VMPOKE_SCN_PF] = "pf",		[VMPOKE_SCN_TRIPLE] = "triple",
	[VMPOKE_SCN_SELFCHECK] = "selfcheck", [VMPOKE_SCN_INT3] = "int3",
	[VMPOKE_SCN_TORTURE] = "torture", [VMPOKE_SCN_PING] = "ping",
	[VMPOKE_SCN_IDLE] = "idle",	[VMPOKE_SCN_LAB] = "lab",
	[VMPOKE_SCN_EMUFAIL] = "emufail",
	[VMPOKE_SCN_BADSTACK] = "badstack", [VMPOKE_SCN_CPL0] = "cpl0",
	[VMPOKE_SCN_LIVEPATCH] = "livepatch",
};

static int cli_name_index(const char *const *names, unsigned int n, const char *s)
{
	for (unsigned int i = 0; s && i < n; i++)
		if (names[i] && !strcmp(names[i], s))
			return (int)i;
	return -1;
}

int cli_scenario_parse(const char *s)
{
	return cli_name_index(scenario_names, VMPOKE_SCN_MAX, s);
}

const char *cli_scenario_name(unsigned int scn)
{
	return scn < VMPOKE_SCN_MAX ? scenario_names[scn] : "?";
}

/* cmd is NULL before the command name (vmpoke --trap-path P CMD ...). */
static int trap_path_bad(const char *cmd, const char *what, const char *v)
{
	char msg[160];

	if (v)
		snprintf(msg, sizeof(msg), "%s: unknown trap path '%.64s' (auto, "
			 "debug-exit or doorbell)", what, v);
	else
		snprintf(msg, sizeof(msg), "option '%s' needs a value", what);
	if (cmd)
		return cli_usage_error(cmd, "%s", msg);
	fprintf(stderr, "vmpoke: %s\nTry 'vmpoke --help'.\n", msg);
	return VMPOKE_EXIT_USAGE;
}

int cli_take_trap_path(int *argc, char **argv)
{
	const char *cmd = *argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
	const char *env = getenv(VMM_TRAP_PATH_ENV), *val = NULL;
	int out = 1;

	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--")) {
			while (i < *argc)
				argv[out++] = argv[i++];
			break;
		}
		if (!strncmp(a, "--trap-path=", 12)) {
			val = a + 12;
		} else if (!strcmp(a, "--trap-path")) {
			if (++i >= *argc)
				return trap_path_bad(cmd, "--trap-path", NULL);
			val = argv[i];
		} else {
			argv[out++] = argv[i];
			continue;
		}
		if (vmm_trap_path_parse(val) < 0)
			return trap_path_bad(cmd, "--trap-path", val);
	}
	*argc = out;
	argv[out] = NULL;
	if (val)
		return setenv(VMM_TRAP_PATH_ENV, val, 1) ? VMPOKE_EXIT_HOST : 0;
	if (env && *env && vmm_trap_path_parse(env) < 0)
		return trap_path_bad(cmd, VMM_TRAP_PATH_ENV, env);
	return 0;
}

const char *cli_outcome_name(enum vmm_outcome o)
{
	static const char *const names[] = {
		[VMM_RUNNING] = "running",
		[VMM_DONE] = "done",
		[VMM_GUEST_FAULT] = "guest_fault",
		[VMM_GUEST_CHECK] = "guest_check",
		[VMM_GUEST_SELFCHECK] = "guest_selfcheck",
		[VMM_TRIPLE_FAULT] = "triple_fault",
		[VMM_INTERNAL_ERROR] = "internal_error",
		[VMM_UNEXPECTED_EXIT] = "unexpected_exit",
		[VMM_TIMEOUT] = "timeout",
		[VMM_STOPPED] = "stopped",
		[VMM_HOST_ERROR] = "host_error",
	};

	return (unsigned int)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

int cli_check_image(const char *cmd, const char *path, uint64_t mem_mib)
{
	struct elf_image img;
	char err[512];

	/* ram == NULL: every check elf_load makes, without copying. */
	if (elf_load(path, NULL, mem_mib << 20, VMPOKE_LOW_RESERVED_END, &img,
		     err, sizeof(err))) {
		fprintf(stderr, "vmpoke %s: %s\n", cmd, err);
		return VMPOKE_EXIT_USAGE;
	}
	return 0;
}

int cli_check_output(const char *cmd, const char *opt, const char *path)
{
	FILE *f;

	if (!path || !strcmp(path, "-"))
		return 0;
	f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "vmpoke %s: %s %s: %s\n", cmd, opt, path, strerror(errno));
		return VMPOKE_EXIT_USAGE;
	}
	fclose(f);
	return 0;
}

bool cli_status_wanted(void)
{
	return isatty(STDERR_FILENO);
}

void cli_status_line(const char *text)
{
	char line[256];

	if (!cli_status_wanted())
		return;
	/* one line: cut at the terminal's usual width rather than wrap */
	snprintf(line, sizeof(line), "%.79s", text);
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
}

void cli_status_clear(void)
{
	if (cli_status_wanted()) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
}

const char *cli_default_image(char *buf, size_t len)
{
	const char *dir = getenv("VMPOKE_DATADIR");
	char exe[4096], *slash;
	ssize_t n;

	if (!access("images/guest.img", R_OK)) {
		snprintf(buf, len, "images/guest.img");
		return buf;
	}
	/* beside the executable: build/vmpoke -> build/../images/guest.img */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			if ((size_t)snprintf(buf, len, "%s/../images/guest.img", exe) < len &&
			    !access(buf, R_OK))
				return buf;
		}
	}
	snprintf(buf, len, "%s/guest.img", dir && *dir ? dir : VMPOKE_DATADIR);
	return buf;
}

const char *cli_bench_image(const char *cmd, int argc, char **argv, uint64_t mem_mib,
			    void (*usage)(FILE *f), char *buf, size_t len)
{
	const char *image;

	if (argc - optind > 1) {
		usage(stderr);
		return NULL;
	}
	image = optind < argc ? argv[optind] : cli_default_image(buf, len);
	return cli_check_image(cmd, image, mem_mib) ? NULL : image;
}

int cli_json_write(const char *cmd, const char *path, struct json_object *obj)
{
	const char *text;
	FILE *f;

	/* Microseconds to the nanosecond: the digits beyond are noise. */
	json_c_set_serialization_double_format("%.3f", JSON_C_OPTION_GLOBAL);
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
					      JSON_C_TO_STRING_NOSLASHESCAPE);
	f = strcmp(path, "-") ? fopen(path, "w") : stdout;

	if (!f) {
		fprintf(stderr, "vmpoke %s: --json %s: %s\n", cmd, path, strerror(errno));
		return VMPOKE_EXIT_HOST;
	}
	fprintf(f, "%s\n", text);
	if (f == stdout ? fflush(f) : fclose(f)) {
		fprintf(stderr, "vmpoke %s: --json %s: %s\n", cmd, path, strerror(errno));
		return VMPOKE_EXIT_HOST;
	}
	return 0;
}
