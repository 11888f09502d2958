// SPDX-License-Identifier: MIT
/*
 * test_bench_flip.c - `vmpoke bench flip --json` produces the documented
 * keys with positive figures and the guest's checks held while the key
 * flipped.  No timing assertions: the figures depend on the host.
 */
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "testlib.h"

static double jnum(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	EXPECT_TRUE_MSG(json_object_object_get_ex(o, key, &v), "no key %s", key);
	EXPECT_TRUE_MSG(v && (json_object_is_type(v, json_type_double) ||
			      json_object_is_type(v, json_type_int)),
			"%s is not a number", key);
	return v ? json_object_get_double(v) : 0;
}

static void test_bench_flip_json(void)
{
	struct json_object *o = NULL, *us = NULL;
	char *cmd, *text = NULL, *line;
	int status;

	if (!testlib_require_kvm())
		return;
	if (asprintf(&cmd, "%s bench flip %s --json --seconds 1", testlib_vmpoke(),
		     testlib_image()) < 0)
		return;
	status = testlib_run(cmd, &text);
	free(cmd);
	for (line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, "{\"throughput_ratio\"", 19))
			o = json_tokener_parse(line);
	EXPECT_TRUE_MSG(o != NULL, "no JSON in output:\n%s", text ? text : "");
	free(text);
	EXPECT_EQ_U64(0, status);
	if (!o)
		return;
	EXPECT_GT(jnum(o, "throughput_ratio"), 0);
	EXPECT_GT(jnum(o, "flips_per_s"), 0);
	EXPECT_GT(jnum(o, "flip_hz"), 0);
	EXPECT_GT(jnum(o, "iterations_per_s"), 0);
	EXPECT_EQ(0.0, jnum(o, "check_failures"));
	EXPECT_TRUE_FATAL(json_object_object_get_ex(o, "flip_us", &us));
	EXPECT_GT(jnum(us, "1"), 0);
	EXPECT_GT(jnum(us, "16"), 0);
	EXPECT_GT(jnum(us, "256"), 0);
	json_object_put(o);
}

TEST_SUITE(bench_flip, "bench_flip", true, TEST(test_bench_flip_json))
