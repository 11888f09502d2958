// SPDX-License-Identifier: MIT
/*
 * test_fuzz_replay.c - every seed in tests/fuzz/corpus/<target>/ and every
 * crash once found in tests/fuzz/regress/<target>/, fed through the same
 * entry function libFuzzer calls, in the normal build.  A regression that
 * comes back aborts the test binary (fuzz_fail) or trips a CUnit check.
 * VMPOKE_FUZZ_DIR overrides tests/fuzz (run from the source tree).
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"
#include "fuzz/fuzz.h"

static const char *fuzz_dir(void)
{
	const char *d = getenv("VMPOKE_FUZZ_DIR");

	return d ? d : "tests/fuzz";
}

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (!fseek(f, 0, SEEK_END) && (n = ftell(f)) >= 0 && !fseek(f, 0, SEEK_SET) &&
	    (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) == (size_t)n)
		*len = (size_t)n;
	else {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	return buf;
}

/* Feed every regular file of dir/<kind>/<target>/; returns how many, -1 on error. */
static int replay(const char *kind, const char *target,
		  int (*one)(const uint8_t *, size_t))
{
	char dir[512], path[1024];
	struct dirent *de;
	int n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s/%s", fuzz_dir(), kind, target);
	d = opendir(dir);
	if (!d)
		return -1;
	while ((de = readdir(d))) {
		uint8_t *buf;
		size_t len = 0;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		buf = slurp(path, &len);
		EXPECT_TRUE_MSG(buf != NULL, "cannot read %s", path);
		if (!buf)
			continue;
		EXPECT_EQ(one(buf, len), 0);
		free(buf);
		n++;
	}
	closedir(d);
	return n;
}

static void replay_target(const char *target, int (*one)(const uint8_t *, size_t))
{
	int seeds = replay("corpus", target, one);

	/* No seeds means the suite ran from the wrong place: not a pass. */
	EXPECT_TRUE_MSG(seeds > 0, "no seeds in %s/corpus/%s (run from the source tree "
			"or set VMPOKE_FUZZ_DIR)", fuzz_dir(), target);
	/* A target without a crash found yet has no regress directory. */
	replay("regress", target, one);
}

static void test_fuzz_replay_elf(void)
{
	replay_target("fuzz_elf", fuzz_elf_one);
}

static void test_fuzz_replay_decode(void)
{
	replay_target("fuzz_decode", fuzz_decode_one);
}

static void test_fuzz_replay_guest_tables(void)
{
	replay_target("fuzz_guest_tables", fuzz_guest_tables_one);
}

static void test_fuzz_replay_campaign(void)
{
	int out = dup(STDOUT_FILENO), null = open("/dev/null", O_WRONLY);

	/* Each campaign prints its summary on stdout: keep the test log short. */
	fflush(stdout);
	if (out >= 0 && null >= 0)
		dup2(null, STDOUT_FILENO);
	replay_target("fuzz_campaign", fuzz_campaign_one);
	fflush(stdout);
	if (out >= 0)
		dup2(out, STDOUT_FILENO);
	if (out >= 0)
		close(out);
	if (null >= 0)
		close(null);
}

TEST_SUITE(fuzz_replay, "fuzz replay", false,
	   TEST(test_fuzz_replay_elf),
	   TEST(test_fuzz_replay_decode),
	   TEST(test_fuzz_replay_guest_tables),
	   TEST(test_fuzz_replay_campaign))
