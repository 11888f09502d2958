// SPDX-License-Identifier: MIT
/*
 * test_cli.c - option parsing of run and bench sync, list and number
 * parsing, names and statistics: every bad-argument case, without KVM.
 */
#include <fcntl.h>
#include <json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../patcher/cli/cli.h"
#include "stats.h"
#include "testlib.h"

#define ARGV(...)	((char *[]){ __VA_ARGS__, NULL })
#define ARGC(...)	((int)(sizeof((char *[]){ __VA_ARGS__ }) / sizeof(char *)))

/*
 * Parsers print their errors; silence stderr around them (the messages
 * are checked end to end in test_cli_bad.c).
 */
static int stderr_off(void)
{
	int saved = dup(2), null = open("/dev/null", O_WRONLY);

	dup2(null, 2);
	close(null);
	return saved;
}

static void stderr_on(int saved)
{
	dup2(saved, 2);
	close(saved);
}

static int quiet_run(int argc, char **argv, struct run_opts *o)
{
	int saved = stderr_off(), ret = run_parse_args(argc, argv, o);

	stderr_on(saved);
	return ret;
}

static int quiet_bench(int argc, char **argv, struct bench_sync_opts *o)
{
	int saved = stderr_off(), ret = bench_sync_parse_args(argc, argv, o);

	stderr_on(saved);
	return ret;
}

#define RUN_OK(...) quiet_run(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), &o)
#define RUN_BAD(...) EXPECT_EQ_U64(VMPOKE_EXIT_USAGE, RUN_OK(__VA_ARGS__))

static void test_cli_run_defaults(void)
{
	struct run_opts o;

	EXPECT_EQ_FATAL(RUN_OK("run", "img"), 0);
	EXPECT_STREQ(o.cfg.image, "img");
	EXPECT_EQ_U64(2, o.cfg.nr_vcpus);
	EXPECT_EQ_U64(64, o.cfg.mem_mib);
	EXPECT_EQ_U64(2, o.cfg.tasks);
	EXPECT_EQ_U64(1000, o.cfg.hz);
	EXPECT_EQ_U64(VMPOKE_SCN_HOT, o.cfg.scenario);
	EXPECT_EQ_U64(0, o.cfg.iterations);
	EXPECT_EQ_U64(0, o.timeout_s);
	EXPECT_EQ_U64(VMM_TRAP_AUTO, o.cfg.trap_path);
	EXPECT_FALSE(o.cfg.quiet);
	EXPECT_NULL(o.json);
	EXPECT_FALSE(o.help);
}

static void test_cli_run_all_options(void)
{
	struct run_opts o;

	/* Options after the image, as the man page shows them. */
	EXPECT_EQ_FATAL(RUN_OK("run", "g.img", "--vcpus", "64", "--mem", "128",
				     "--tasks", "8", "--hz", "0", "--scenario", "lab",
				     "--iterations", "18446744073709551615", "--seed", "7",
				     "--timeout", "20", "--quiet",
				     "--json", "out.json"), 0);
	EXPECT_STREQ(o.cfg.image, "g.img");
	EXPECT_EQ_U64(64, o.cfg.nr_vcpus);
	EXPECT_EQ_U64(128, o.cfg.mem_mib);
	EXPECT_EQ_U64(8, o.cfg.tasks);
	EXPECT_EQ_U64(0, o.cfg.hz);
	EXPECT_EQ_U64(VMPOKE_SCN_LAB, o.cfg.scenario);
	EXPECT_EQ_U64(UINT64_MAX, o.cfg.iterations);
	EXPECT_EQ_U64(7, o.cfg.seed);
	EXPECT_EQ_U64(20, o.timeout_s);
	EXPECT_EQ_U64(VMM_TRAP_AUTO, o.cfg.trap_path);	/* main.c's option */
	EXPECT_TRUE(o.cfg.quiet);
	EXPECT_STREQ(o.json, "out.json");
	EXPECT_EQ(RUN_OK("run", "--vcpus=1", "x"), 0);
	EXPECT_EQ_U64(1, o.cfg.nr_vcpus);
	EXPECT_EQ(RUN_OK("run", "--help"), 0);
	EXPECT_TRUE(o.help);
}

static void test_cli_run_bad(void)
{
	struct run_opts o;

	RUN_BAD("run");
	RUN_BAD("run", "a", "b");
	RUN_BAD("run", "x", "--vcpus", "0");
	RUN_BAD("run", "x", "--vcpus", "65");
	RUN_BAD("run", "x", "--vcpus", "two");
	RUN_BAD("run", "x", "--vcpus", "");
	RUN_BAD("run", "x", "--vcpus", "2x");
	RUN_BAD("run", "x", "--vcpus", "-1");
	RUN_BAD("run", "x", "--vcpus", " 2");
	RUN_BAD("run", "x", "--vcpus");
	RUN_BAD("run", "x", "--mem", "1");
	RUN_BAD("run", "x", "--mem", "3073");
	RUN_BAD("run", "x", "--mem", "99999999999999999999999");
	RUN_BAD("run", "x", "--tasks", "0");
	RUN_BAD("run", "x", "--tasks", "9");
	RUN_BAD("run", "x", "--hz", "5001");
	RUN_BAD("run", "x", "--hz", "fast");
	RUN_BAD("run", "x", "--scenario", "nope");
	RUN_BAD("run", "x", "--scenario", "HOT");
	RUN_BAD("run", "x", "--iterations", "1e6");
	RUN_BAD("run", "x", "--timeout", "1.5");
	RUN_BAD("run", "x", "--trap-path", "int3");
	RUN_BAD("run", "x", "--bogus");
	RUN_BAD("run", "x", "-z");
}

#define BENCH(...) quiet_bench(ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), &b)
#define BENCH_BAD(...) EXPECT_EQ_U64(VMPOKE_EXIT_USAGE, BENCH(__VA_ARGS__))

static void test_cli_bench_sync_args(void)
{
	struct bench_sync_opts b;

	EXPECT_EQ_FATAL(BENCH("sync"), 0);
	EXPECT_EQ_U64(3, b.nr_counts);
	EXPECT_EQ_U64(4, b.vcpus[2]);
	EXPECT_EQ_U64(1000, b.rounds);
	EXPECT_NULL(b.image);
	EXPECT_EQ_FATAL(BENCH("sync", "--vcpus", "1,8", "--rounds", "50", "--json",
				    "my.img"), 0);
	EXPECT_EQ_U64(2, b.nr_counts);
	EXPECT_EQ_U64(8, b.vcpus[1]);
	EXPECT_EQ_U64(50, b.rounds);
	EXPECT_TRUE(b.json);
	EXPECT_FALSE(b.ab);
	EXPECT_STREQ(b.image, "my.img");
	EXPECT_EQ_FATAL(BENCH("sync", "--ab"), 0);
	EXPECT_TRUE(b.ab);
	BENCH_BAD("sync", "--vcpus", "1,,2");
	BENCH_BAD("sync", "--vcpus", ",1");
	BENCH_BAD("sync", "--vcpus", "1,");
	BENCH_BAD("sync", "--vcpus", "0");
	BENCH_BAD("sync", "--vcpus", "1,65");
	BENCH_BAD("sync", "--vcpus", "a");
	BENCH_BAD("sync", "--vcpus", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17");
	BENCH_BAD("sync", "--rounds", "0");
	BENCH_BAD("sync", "--rounds", "many");
	BENCH_BAD("sync", "a.img", "b.img");
	BENCH_BAD("sync", "--json=x");
}

static void test_cli_names(void)
{
	for (unsigned int i = 0; i < VMPOKE_SCN_MAX; i++)
		EXPECT_EQ_U64(i, cli_scenario_parse(cli_scenario_name(i)));
	EXPECT_EQ_U64(VMPOKE_SCN_TRIPLE, cli_scenario_parse("triple"));
	EXPECT_EQ(cli_scenario_parse("x"), -1);
	EXPECT_EQ(cli_scenario_parse(NULL), -1);
	EXPECT_STREQ(cli_scenario_name(VMPOKE_SCN_MAX), "?");
	for (unsigned int i = 0; i < 3; i++)
		EXPECT_EQ_U64(i, vmm_trap_path_parse(vmm_trap_path_name(i)));
	EXPECT_EQ(vmm_trap_path_parse("int3"), -1);
	EXPECT_EQ(vmm_trap_path_parse(NULL), -1);
	EXPECT_STREQ(vmm_trap_path_name(3), "?");
	EXPECT_STREQ(cli_outcome_name(VMM_TIMEOUT), "timeout");
	EXPECT_STREQ(cli_outcome_name(VMM_HOST_ERROR), "host_error");
}

static void test_stats(void)
{
	uint64_t v[100];
	struct stats st;

	/* 100..1 µs in reverse: median 50.5, p99 (nearest rank) 99. */
	for (unsigned int i = 0; i < 100; i++)
		v[i] = (100 - i) * 1000ull;
	stats_ns(v, 100, &st);
	EXPECT_NEAR(st.median_us, 50.5, 1e-9);
	EXPECT_NEAR(st.p99_us, 99.0, 1e-9);
	v[0] = 3000;
	stats_ns(v, 1, &st);
	EXPECT_NEAR(st.median_us, 3.0, 1e-9);
	EXPECT_NEAR(st.p99_us, 3.0, 1e-9);
	stats_ns(v, 0, &st);
	EXPECT_NEAR(st.median_us, 0.0, 1e-9);
}

static void test_cli_json_write(void)
{
	char path[] = "/tmp/vmpoke-json-XXXXXX", text[256] = "";
	struct json_object *j = json_object_new_object();
	int fd = mkstemp(path);
	ssize_t n;

	EXPECT_TRUE_FATAL(fd >= 0);
	json_object_object_add(j, "median", json_object_new_double(34.215000000000003));
	EXPECT_EQ(cli_json_write("test", path, j), 0);
	n = read(fd, text, sizeof(text) - 1);
	EXPECT_GT(n, 0);
	EXPECT_TRUE_MSG(strstr(text, "34.215") && !strstr(text, "34.2150000"), "%s", text);
	json_object_put(j);
	close(fd);
	unlink(path);
	/* An unwritable path is reported, not a crash. */
	j = json_object_new_object();
	fd = stderr_off();
	EXPECT_EQ(cli_json_write("test", "/nonexistent/x.json", j), VMPOKE_EXIT_HOST);
	stderr_on(fd);
	json_object_put(j);
}

/* cli_take_trap_path(argv) on a copy; the resulting argv joined by spaces. */
static int take(char *joined, size_t len, int argc, char **argv)
{
	int saved = stderr_off(), ret = cli_take_trap_path(&argc, argv);

	stderr_on(saved);
	joined[0] = '\0';
	for (int i = 1; i < argc && !ret; i++) {
		if (i > 1)
			strncat(joined, " ", len - strlen(joined) - 1);
		strncat(joined, argv[i], len - strlen(joined) - 1);
	}
	return ret;
}

#define TAKE(...) take(out, sizeof(out), ARGC(__VA_ARGS__), ARGV(__VA_ARGS__))

static const char *env_path(void)
{
	const char *e = getenv(VMM_TRAP_PATH_ENV);

	return e ? e : "(unset)";
}

/*
 * --trap-path is every command's option: main.c takes it out of argv
 * wherever it stands and forces it through VMPOKE_TRAP_PATH, which
 * vmm_create() honours for every VM whose config says auto.
 */
static void test_cli_trap_path(void)
{
	char *saved = getenv(VMM_TRAP_PATH_ENV) ? strdup(getenv(VMM_TRAP_PATH_ENV)) : NULL;
	char out[256];

	unsetenv(VMM_TRAP_PATH_ENV);
	EXPECT_EQ(TAKE("vmpoke", "run", "g.img", "--vcpus", "1"), 0);
	EXPECT_STREQ(out, "run g.img --vcpus 1");
	EXPECT_STREQ(env_path(), "(unset)");
	EXPECT_EQ_U64(VMM_TRAP_AUTO, vmm_trap_path_env());

	EXPECT_EQ(TAKE("vmpoke", "torture", "--trap-path", "doorbell", "g.img"), 0);
	EXPECT_STREQ(out, "torture g.img");
	EXPECT_STREQ(env_path(), "doorbell");
	EXPECT_EQ_U64(VMM_TRAP_DOORBELL, vmm_trap_path_env());

	/* Before the command, with '=', and the last one wins. */
	EXPECT_EQ(TAKE("vmpoke", "--trap-path=doorbell", "bench", "sync",
			     "--trap-path=debug-exit"), 0);
	EXPECT_STREQ(out, "bench sync");
	EXPECT_EQ_U64(VMM_TRAP_DEBUG_EXIT, vmm_trap_path_env());
	/* auto undoes the environment. */
	EXPECT_EQ(TAKE("vmpoke", "doctor", "--trap-path", "auto"), 0);
	EXPECT_EQ_U64(VMM_TRAP_AUTO, vmm_trap_path_env());
	/* After "--" it is an argument, not the option. */
	EXPECT_EQ(TAKE("vmpoke", "syms", "--", "--trap-path", "x"), 0);
	EXPECT_STREQ(out, "syms -- --trap-path x");
	EXPECT_EQ_U64(VMM_TRAP_AUTO, vmm_trap_path_env());

	EXPECT_EQ_U64(VMPOKE_EXIT_USAGE, TAKE("vmpoke", "run", "--trap-path", "int3"));
	EXPECT_EQ_U64(VMPOKE_EXIT_USAGE, TAKE("vmpoke", "run", "x", "--trap-path"));
	EXPECT_EQ_U64(VMPOKE_EXIT_USAGE, TAKE("vmpoke", "--trap-path=", "run"));
	/* A bad environment is named too, whatever the command. */
	setenv(VMM_TRAP_PATH_ENV, "magic", 1);
	EXPECT_EQ_U64(-1, vmm_trap_path_env());
	EXPECT_EQ_U64(VMPOKE_EXIT_USAGE, TAKE("vmpoke", "syms", "g.img"));
	/* ... unless the option replaces it. */
	EXPECT_EQ(TAKE("vmpoke", "syms", "g.img", "--trap-path", "doorbell"), 0);
	EXPECT_EQ_U64(VMM_TRAP_DOORBELL, vmm_trap_path_env());

	if (saved)
		setenv(VMM_TRAP_PATH_ENV, saved, 1);
	else
		unsetenv(VMM_TRAP_PATH_ENV);
	free(saved);
}

TEST_SUITE(cli, "cli_args", false,
	   TEST(test_cli_trap_path),
	   TEST(test_cli_run_defaults),
	   TEST(test_cli_run_all_options),
	   TEST(test_cli_run_bad),
	   TEST(test_cli_bench_sync_args),
	   TEST(test_cli_names),
	   TEST(test_stats),
	   TEST(test_cli_json_write))
