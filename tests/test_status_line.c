// SPDX-License-Identifier: MIT
/*
 * test_status_line.c - long runs show one status line on stderr, rewritten
 * about every second, only when stderr is a terminal: `run` with no end and
 * `torture`, each under script(1) (a terminal) and through a pipe (none).
 * (A campaign's run_for is in test_campaign_kvm.c.)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

/* Run args under a terminal and through a pipe; the status prefix must show only on the first. */
static void status_only_on_terminal(const char *args, const char *prefix)
{
	char cmd[2048], want[64], *out = NULL;

	snprintf(want, sizeof(want), "\r\033[K%s", prefix);
	snprintf(cmd, sizeof(cmd), "script -qec '%s %s' /dev/null", testlib_vmpoke(), args);
	testlib_run(cmd, &out);
	EXPECT_TRUE_MSG(out && strstr(out, want), "no status line on a terminal for '%s':\n%s",
			args, out);
	free(out);
	snprintf(cmd, sizeof(cmd), "%s %s", testlib_vmpoke(), args);
	testlib_run(cmd, &out);
	EXPECT_TRUE_MSG(out && !strstr(out, "\033[K"), "a status line without a terminal for "
			"'%s':\n%s", args, out);
	free(out);
}

static void test_status_run_no_end(void)
{
	char args[1024];

	if (!testlib_require_kvm())
		return;
	snprintf(args, sizeof(args), "run %s --quiet --timeout 3", testlib_image());
	status_only_on_terminal(args, "run: ");
}

static void test_status_torture(void)
{
	char args[1024];

	if (!testlib_require_kvm())
		return;
	snprintf(args, sizeof(args), "torture %s --seconds 3", testlib_image());
	status_only_on_terminal(args, "torture: ");
}

TEST_SUITE(status_line, "status_line", true,
	   TEST(test_status_run_no_end),
	   TEST(test_status_torture))
