// SPDX-License-Identifier: MIT
/*
 * test_bench_poke.c - `vmpoke bench poke --json` produces the documented
 * shape with positive figures.  No timing assertions: the figures depend
 * on the host (see docs for what was measured where).
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

static void test_bench_poke_json(void)
{
	static const int sizes[] = { 16, 256, 4096 };
	struct json_object *o = NULL, *arr, *out;
	char *cmd, *text = NULL, *line;
	int status;

	if (!testlib_require_kvm())
		return;
	if (asprintf(&cmd, "%s bench poke %s --json", testlib_vmpoke(),
		     testlib_image()) < 0)
		return;
	status = testlib_run(cmd, &text);
	free(cmd);
	for (line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
		if (!strncmp(line, "{\"sync_us\"", 10))
			o = json_tokener_parse(line);
	EXPECT_TRUE_MSG(o != NULL, "no JSON in output:\n%s", text ? text : "");
	free(text);
	EXPECT_EQ_U64(0, status);
	if (!o)
		return;
	/* sync_us, ack_sync_us, single_site_us, batch, vcpu_out_us, stop_the_world_us */
	EXPECT_EQ_U64(6, json_object_object_length(o));
	EXPECT_GT(jnum(o, "sync_us"), 0);
	EXPECT_GT(jnum(o, "ack_sync_us"), 0);
	EXPECT_GT(jnum(o, "single_site_us"), 0);
	EXPECT_GT(jnum(o, "stop_the_world_us"), 0);
	EXPECT_TRUE_FATAL(json_object_object_get_ex(o, "batch", &arr));
	EXPECT_EQ_FATAL(json_object_array_length(arr), 3);
	for (size_t i = 0; i < 3; i++) {
		struct json_object *e = json_object_array_get_idx(arr, i);

		EXPECT_EQ(jnum(e, "sites"), sizes[i]);
		EXPECT_GT(jnum(e, "us"), 0);
		EXPECT_GT(jnum(e, "ratio_to_single"), 0);
		EXPECT_EQ(json_object_object_length(e), 3);
	}
	EXPECT_TRUE_FATAL(json_object_object_get_ex(o, "vcpu_out_us", &out));
	EXPECT_GE(jnum(out, "breakpoint"), 0);
	EXPECT_GT(jnum(out, "stop_the_world"), 0);
	json_object_put(o);
}

TEST_SUITE(bench_poke, "bench_poke", true, TEST(test_bench_poke_json))
