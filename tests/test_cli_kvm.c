// SPDX-License-Identifier: MIT
/*
 * test_cli_kvm.c - the vmpoke binary end to end on real KVM: run (happy
 * path, a failing guest, --timeout, SIGINT), doctor and bench sync, with
 * their JSON parsed by json-c.
 */
#include <elf.h>
#include <json.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testlib.h"
#include "vmm.h"

/* Run "vmpoke ARGS" (stderr kept apart when json_only); exit code and output. */
static int vmpoke(const char *args, bool json_only, char **out)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), json_only ? "{ %s %s 2>/dev/null; }" : "%s %s",
		 testlib_vmpoke(), args);
	return testlib_run(cmd, out);
}

static struct json_object *get(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (!o || !json_object_object_get_ex(o, key, &v))
		EXPECT_TRUE_MSG(false, "JSON has no key '%s'", key);
	return v;
}

static const char *get_str(struct json_object *o, const char *key)
{
	struct json_object *v = get(o, key);

	return v ? json_object_get_string(v) : "";
}

static char *tmp_json(void)
{
	char *p = strdup("/tmp/vmpoke-run-XXXXXX");
	int fd = mkstemp(p);

	if (fd >= 0)
		close(fd);
	return p;
}

static void test_cli_kvm_run_ok(void)
{
	struct json_object *j, *vcpus;
	char args[1024], *out = NULL, *path;
	uint64_t sum = 0;
	int rc;

	if (!testlib_require_kvm())
		return;
	path = tmp_json();
	snprintf(args, sizeof(args), "run %s --vcpus 2 --tasks 2 --iterations 20000 "
		 "--timeout 300 --quiet --json %s", testlib_image(), path);
	rc = vmpoke(args, false, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	EXPECT_NOT_NULL(strstr(out, "result:"));
	EXPECT_NOT_NULL(strstr(out, "syncs-acked"));
	j = json_object_from_file(path);
	EXPECT_TRUE_MSG(j != NULL, "%s is not JSON", path);
	EXPECT_STREQ(get_str(j, "outcome"), "done");
	EXPECT_EQ_U64(0, json_object_get_int(get(j, "exit_code")));
	vcpus = get(j, "vcpus");
	EXPECT_EQ_U64(2, vcpus ? json_object_array_length(vcpus) : 0);
	for (size_t i = 0; vcpus && i < json_object_array_length(vcpus); i++) {
		struct json_object *v = json_object_array_get_idx(vcpus, i);

		EXPECT_EQ_U64(i, json_object_get_int(get(v, "vcpu")));
		/* Each task ran its 20000 iterations, read from the guest's table. */
		EXPECT_EQ_U64(40000, json_object_get_uint64(get(v, "iterations")));
		sum += json_object_get_uint64(get(v, "exits"));
	}
	EXPECT_GT(sum, 0);
	json_object_put(j);
	unlink(path);
	free(path);
	free(out);
}

/* Guest console text reaches the terminal, prefixed by its vCPU. */
static void test_cli_kvm_run_console(void)
{
	char args[512], *out = NULL;
	int rc;

	if (!testlib_require_kvm())
		return;
	snprintf(args, sizeof(args), "run %s --vcpus 2 --tasks 1 --iterations 1000 "
		 "--timeout 300", testlib_image());
	rc = vmpoke(args, false, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	EXPECT_TRUE_MSG(strstr(out, "[vcpu0] guest online") != NULL, "no vcpu0 line:\n%s", out);
	EXPECT_TRUE_MSG(strstr(out, "[vcpu1] guest online") != NULL, "no vcpu1 line:\n%s", out);
	free(out);
}

/* A failing guest: exit 1, and --json is written anyway. */
static void test_cli_kvm_run_fault(void)
{
	struct json_object *j;
	char args[1024], *out = NULL, *path;
	int rc;

	if (!testlib_require_kvm())
		return;
	path = tmp_json();
	snprintf(args, sizeof(args), "run %s --vcpus 1 --scenario ud --timeout 300 --quiet "
		 "--json %s", testlib_image(), path);
	rc = vmpoke(args, false, &out);
	EXPECT_TRUE_MSG(rc == 1, "exit %d:\n%s", rc, out);
	j = json_object_from_file(path);
	EXPECT_TRUE_MSG(j != NULL, "%s is not JSON", path);
	EXPECT_STREQ(get_str(j, "outcome"), "guest_fault");
	EXPECT_EQ_U64(1, json_object_get_int(get(j, "exit_code")));
	json_object_put(j);
	unlink(path);
	free(path);
	free(out);
}

/* --timeout ends a run-forever as a failure and names each vCPU's RIP. */
static void test_cli_kvm_run_timeout(void)
{
	struct json_object *j, *vcpus;
	char args[1024], *out = NULL, *path;
	int rc;

	if (!testlib_require_kvm())
		return;
	path = tmp_json();
	snprintf(args, sizeof(args), "run %s --vcpus 2 --timeout 3 --quiet --json %s",
		 testlib_image(), path);
	rc = vmpoke(args, false, &out);
	EXPECT_TRUE_MSG(rc == 1, "exit %d:\n%s", rc, out);
	j = json_object_from_file(path);
	EXPECT_STREQ(get_str(j, "outcome"), "timeout");
	vcpus = get(j, "vcpus");
	for (size_t i = 0; vcpus && i < json_object_array_length(vcpus); i++)
		EXPECT_GT(strlen(get_str(json_object_array_get_idx(vcpus, i), "rip")), 0);
	json_object_put(j);
	unlink(path);
	free(path);
	free(out);
}

static void test_cli_kvm_run_sigint(void)
{
	char cmd[1024], *out = NULL;
	int rc;

	if (!testlib_require_kvm())
		return;
	/*
	 * timeout(1) signals vmpoke and its process group: the stop arrives
	 * twice, which a one-shot handler would not survive.
	 */
	snprintf(cmd, sizeof(cmd), "timeout --preserve-status -s INT 5 %s run %s --vcpus 2 "
		 "--quiet", testlib_vmpoke(), testlib_image());
	rc = testlib_run(cmd, &out);
	EXPECT_TRUE_MSG(rc == 4, "exit %d:\n%s", rc, out);
	EXPECT_NOT_NULL(strstr(out, "result:"));
	free(out);
}

static bool json_has_str(struct json_object *arr, const char *s)
{
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), s))
			return true;
	return false;
}

/*
 * doctor names the trap paths that work here and auto's choice (two text
 * lines, two JSON keys), and a forced path it cannot offer is an error.
 * The environment of the suite (VMPOKE_TRAP_PATH in make
 * check-debug-exit) is overridden: these cases force what they check.
 */
static void test_cli_kvm_doctor(void)
{
	struct json_object *j, *paths;
	char *out = NULL;
	bool dbg;
	int rc;

	if (!testlib_require_kvm())
		return;
	rc = vmpoke("doctor --trap-path auto", false, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	EXPECT_NOT_NULL(strstr(out, "\ntrap paths:"));
	EXPECT_NOT_NULL(strstr(out, "\ntrap path auto:"));
	EXPECT_NULL(strstr(out, "trap path forced:"));
	EXPECT_TRUE_MSG(strstr(out, "\ncpl0 int3:          yes\n") ||
			strstr(out, "\ncpl0 int3:          no"), "no cpl0 int3 line:\n%s", out);
	EXPECT_NOT_NULL(strstr(out, "\ncore sync:          "));
	free(out);
	rc = vmpoke("doctor --json --trap-path auto", true, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	j = json_tokener_parse(out);
	EXPECT_TRUE_MSG(j != NULL, "not JSON:\n%s", out);
	EXPECT_TRUE(json_object_get_boolean(get(j, "kvm_ok")));
	EXPECT_EQ_U64(12, json_object_get_int(get(j, "api_version")));
	paths = get(j, "trap_paths_available");
	EXPECT_TRUE(json_has_str(paths, "doorbell"));
	dbg = json_object_get_boolean(get(j, "debug_exit_on_int3"));
	EXPECT_EQ(dbg, json_has_str(paths, "debug-exit"));
	EXPECT_STREQ(get_str(j, "trap_path_auto"), vmm_trap_path_name(vmm_trap_path_auto(dbg)));
	EXPECT_STREQ(get_str(j, "trap_path"), get_str(j, "trap_path_auto"));
	EXPECT_FALSE(json_object_get_boolean(get(j, "trap_path_forced")));
	EXPECT_GT(json_object_get_double(get(j, "exit_roundtrip_us")), 0);
	EXPECT_TRUE(json_object_is_type(get(j, "sync_core"), json_type_boolean));
	/* The same answer as this process's own probe on the same path. */
	EXPECT_TRUE(json_object_is_type(get(j, "cpl0_int3"), json_type_boolean));
	EXPECT_EQ(json_object_get_boolean(get(j, "cpl0_int3")), vmm_cpl0_int3_trappable(!strcmp(get_str(j, "trap_path"), "debug-exit") ?
						VMM_TRAP_DEBUG_EXIT : VMM_TRAP_DOORBELL));
	json_object_put(j);
	free(out);

	/* Forced: the doorbell always exists, debug-exit only where it works. */
	rc = vmpoke("doctor --json --trap-path doorbell", true, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	j = json_tokener_parse(out);
	EXPECT_STREQ(get_str(j, "trap_path"), "doorbell");
	EXPECT_TRUE(json_object_get_boolean(get(j, "trap_path_forced")));
	json_object_put(j);
	free(out);
	rc = vmpoke("--trap-path debug-exit doctor", false, &out);
	EXPECT_TRUE_MSG(rc == (dbg ? 0 : 3), "exit %d (debug-exit %s here):\n%s", rc,
			dbg ? "available" : "unavailable", out);
	EXPECT_NOT_NULL(strstr(out, "trap path forced:   debug-exit"));
	free(out);
}

static void check_rows(struct json_object *arr)
{
	EXPECT_EQ_U64(2, arr ? json_object_array_length(arr) : 0);
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++) {
		struct json_object *r = json_object_array_get_idx(arr, i);

		EXPECT_EQ_U64(i + 1, json_object_get_int(get(r, "vcpus")));
		EXPECT_GT(json_object_get_double(get(r, "median_us")), 0);
		EXPECT_GE(json_object_get_double(get(r, "p99_us")), json_object_get_double(get(r, "median_us")));
		EXPECT_GT(json_object_get_double(get(r, "ratio")), 0);
	}
}

/* `vmpoke bench sync OPTS --json IMAGE`, parsed; NULL (and a failure) if not. */
static struct json_object *bench_sync_json(const char *opts)
{
	struct json_object *j;
	char args[600], *out = NULL;
	int rc;

	snprintf(args, sizeof(args), "bench sync %s --json %s", opts, testlib_image());
	rc = vmpoke(args, true, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	j = json_tokener_parse(out);
	EXPECT_TRUE_MSG(j != NULL, "not JSON:\n%s", out);
	free(out);
	return j;
}

static void test_cli_kvm_bench_sync(void)
{
	struct json_object *j, *rt, *core;

	if (!testlib_require_kvm())
		return;
	j = bench_sync_json("--vcpus 1,2 --rounds 50");
	rt = get(j, "exit_roundtrip_us");
	EXPECT_GT(json_object_get_double(get(rt, "median")), 0);
	EXPECT_GE(json_object_get_double(get(rt, "p99")), json_object_get_double(get(rt, "median")));
	check_rows(get(j, "sync"));
	check_rows(get(j, "pause_resume"));
	core = get(j, "core_sync");
	check_rows(core);
	for (size_t i = 0; core && i < json_object_array_length(core); i++) {
		struct json_object *r = json_object_array_get_idx(core, i), *e;

		EXPECT_TRUE(json_object_is_type(get(r, "membarrier"), json_type_boolean));
		/* null only where KVM keeps no binary statistics */
		EXPECT_TRUE(json_object_object_get_ex(r, "irq_exits_per_sync_per_vcpu", &e));
		EXPECT_TRUE(!e || json_object_get_double(e) >= 0);
	}
	json_object_put(j);
}

/*
 * bench sync --ab: the old sync (VMPOKE_SYNC_OLD) timed in the same VMs,
 * beside the new one, and how the new one waited.
 */
static void test_cli_kvm_bench_sync_ab(void)
{
	struct json_object *j, *rows, *r;

	if (!testlib_require_kvm())
		return;
	j = bench_sync_json("--vcpus 1,2 --rounds 20 --ab");
	rows = get(j, "sync");
	check_rows(rows);
	for (size_t i = 0; rows && i < json_object_array_length(rows); i++) {
		r = json_object_array_get_idx(rows, i);
		EXPECT_GT(json_object_get_double(get(r, "old_median_us")), 0);
		EXPECT_GE(json_object_get_double(get(r, "old_p99_us")),
			  json_object_get_double(get(r, "old_median_us")));
		EXPECT_GT(json_object_get_double(get(r, "old_ratio")), 0);
		EXPECT_TRUE(json_object_is_type(get(r, "fifo_lends"), json_type_int));
		EXPECT_TRUE(json_object_is_type(get(r, "priority"), json_type_string));
	}
	json_object_put(j);
}

/*
 * bench probe: every documented key is a number, the probe on lib_add's
 * first instruction took its 5 hits per iteration (one direct call, four
 * from lib_sum_calls), and the Lua handler ran (int3_lua_ns present).
 */
static void test_cli_kvm_bench_probe(void)
{
	static const char *const keys[] = {
		"baseline_iter_ns", "int3_ns", "int3_emulated_ns", "int3_stepped_ns",
		"int3_handler_ns", "int3_lua_ns", "int3_wall_ns", "int3_lua_wall_ns",
		"optimized_ns", "optimized_handler_ns", "ratio_int3_to_optimized",
		"optimized_iter_ns",
	};
	struct json_object *j, *v;
	char args[600], *out = NULL;
	double hpi;
	int rc;

	if (!testlib_require_kvm())
		return;
	snprintf(args, sizeof(args), "bench probe --seconds 1 --json %s", testlib_image());
	rc = vmpoke(args, true, &out);
	EXPECT_TRUE_MSG(rc == 0, "exit %d:\n%s", rc, out);
	j = json_tokener_parse(out);
	EXPECT_TRUE_MSG(j != NULL, "not JSON:\n%s", out);
	for (size_t i = 0; j && i < sizeof(keys) / sizeof(keys[0]); i++) {
		v = get(j, keys[i]);
		EXPECT_TRUE_MSG(v && json_object_is_type(v, json_type_double),
				"%s missing or not a number:\n%s", keys[i], out);
	}
	hpi = json_object_get_double(get(j, "int3_hits_per_iter"));
	EXPECT_TRUE_MSG(hpi > 4.9 && hpi < 5.1, "%.3f hits per iteration, want 5", hpi);
	/* the optimized probe counted every hit too, with no exit */
	hpi = json_object_get_double(get(j, "optimized_hits_per_iter"));
	EXPECT_TRUE_MSG(hpi > 4.9 && hpi < 5.1, "optimized: %.3f hits per iteration, want 5",
			hpi);
	EXPECT_GT(json_object_get_double(get(j, "baseline_iter_ns")), 0.0);
	json_object_put(j);
	free(out);
}

int test_elf_variant(const char *good, const char *dir, const char *name,
		     void (*fn)(unsigned char *b), size_t len, char *path, size_t pathlen);

/* Our guest with ud2 at its entry: with no IDT yet, a triple fault. */
static void mk_ud2_entry(unsigned char *b)
{
	Elf64_Ehdr *h = (Elf64_Ehdr *)b;
	Elf64_Phdr *ph = (Elf64_Phdr *)(b + h->e_phoff);

	for (int i = 0; i < h->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD && h->e_entry >= ph[i].p_vaddr &&
		    h->e_entry + 2 <= ph[i].p_vaddr + ph[i].p_filesz) {
			b[ph[i].p_offset + (h->e_entry - ph[i].p_vaddr)] = 0x0f;
			b[ph[i].p_offset + (h->e_entry - ph[i].p_vaddr) + 1] = 0x0b;
		}
}

/*
 * A guest that dies at once must end bench sync with its outcome, not spin
 * on a wait that fails at once for ever (`timeout` turns a hang into 124).
 */
static void test_cli_kvm_bench_dead_guest(void)
{
	char dir[] = "/tmp/vmpoke-dead-XXXXXX", path[300], args[700], *out = NULL;
	int rc;

	if (!testlib_require_kvm())
		return;
	EXPECT_NOT_NULL_FATAL(mkdtemp(dir));
	EXPECT_EQ_FATAL(test_elf_variant(testlib_image(), dir, "ud2.img",
					       mk_ud2_entry, 0, path, sizeof(path)), 0);
	snprintf(args, sizeof(args), "timeout 120 %s bench sync --vcpus 1 --rounds 5 %s",
		 testlib_vmpoke(), path);
	rc = testlib_run(args, &out);
	EXPECT_TRUE_MSG(rc == 1, "exit %d (want 1, the guest failed):\n%s", rc, out);
	EXPECT_TRUE_MSG(out && strstr(out, "triple fault"), "output:\n%s", out);
	free(out);
	unlink(path);
	rmdir(dir);
}

TEST_SUITE(cli_kvm, "cli_kvm", true,
	   TEST(test_cli_kvm_run_ok),
	   TEST(test_cli_kvm_run_console),
	   TEST(test_cli_kvm_run_fault),
	   TEST(test_cli_kvm_run_timeout),
	   TEST(test_cli_kvm_run_sigint),
	   TEST(test_cli_kvm_doctor),
	   TEST(test_cli_kvm_bench_sync), TEST(test_cli_kvm_bench_sync_ab),
	   TEST(test_cli_kvm_bench_probe),
	   TEST(test_cli_kvm_bench_dead_guest))
