// SPDX-License-Identifier: MIT
/*
 * test_campaign_cli.c - `vmpoke campaign` without KVM: its arguments, and
 * the default image found beside the binary.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "campaign_check.h"
#include "testlib.h"

/* No KVM: the command's arguments, and the default image beside the binary. */
static void test_campaign_cli_args(void)
{
	char cmd[1024], *out = NULL;
	int rc;

	snprintf(cmd, sizeof(cmd), "%s campaign", testlib_vmpoke());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(2, rc);
	EXPECT_STR_HAS(out, "missing SCRIPT.lua");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s campaign /nonexistent.lua", testlib_vmpoke());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(2, rc);
	EXPECT_STR_HAS(out, "cannot read script '/nonexistent.lua'");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s campaign campaigns/demo.lua --vcpus 0", testlib_vmpoke());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(2, rc);
	EXPECT_STR_HAS(out, "--vcpus");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s campaign campaigns/demo.lua --scenario nosuch",
		 testlib_vmpoke());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(2, rc);
	EXPECT_STR_HAS(out, "unknown scenario 'nosuch'");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s campaign campaigns/demo.lua a b", testlib_vmpoke());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(2, rc);
	EXPECT_STR_HAS(out, "unexpected argument 'b'");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s campaign campaigns/demo.lua --json /nonexistent/r.json",
		 testlib_vmpoke());
	rc = testlib_run(cmd, &out);
	EXPECT_EQ_U64(2, rc);
	EXPECT_STR_HAS(out, "--json /nonexistent/r.json");
	free(out);
	snprintf(cmd, sizeof(cmd), "%s campaign --help", testlib_vmpoke());
	EXPECT_EQ_U64(0, testlib_run(cmd, NULL));
}

/* From "/", with no IMAGE: found as ../images/guest.img beside the binary. */
static void test_campaign_default_image(void)
{
	char exe[PATH_MAX], cmd[PATH_MAX + 256], *script, *out = NULL;
	int rc;

	if (!realpath(testlib_vmpoke(), exe)) {
		EXPECT_TRUE_MSG(false, "no vmpoke binary at %s", testlib_vmpoke());
		return;
	}
	script = campaign_check_script("expect(true, 'no vm used')\n");
	snprintf(cmd, sizeof(cmd), "cd / && VMPOKE_DATADIR=/nonexistent %s campaign %s", exe,
		 script);
	rc = testlib_run(cmd, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	free(out);
	unlink(script);
	free(script);
}

TEST_SUITE(campaign_cli, "campaign_cli", false,
	   TEST(test_campaign_cli_args),
	   TEST(test_campaign_default_image))
