// SPDX-License-Identifier: MIT
/*
 * testlib.c - the CUnit runner and shared helpers.  See testlib.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <CUnit/Basic.h>

#include "junit.h"
#include "patcher.h"
#include "symtab.h"
#include "testlib.h"
#include "vmm.h"

static struct test_suite *suites;

/*
 * The KVM declaration, enforced: a suite registered with needs_kvm runs each
 * test between testlib_setup and testlib_teardown, and a test that never
 * called testlib_require_kvm() fails there.  The other way round, a test
 * that calls it from a suite not declared needs_kvm fails too, so the
 * declaration (which drives the "KVM unusable" banner) cannot drift.
 */
static bool testlib_kvm_required;

/* The registration of the suite CUnit is running now; NULL outside a run. */
static const struct test_suite *testlib_cur_suite(void)
{
	CU_pSuite cs = CU_get_current_suite();

	for (const struct test_suite *s = suites; cs && s; s = s->next)
		if (!strcmp(s->name, cs->pName))
			return s;
	return NULL;
}

static void testlib_setup(void)
{
	testlib_kvm_required = false;
}

static void testlib_teardown(void)
{
	const struct test_suite *s = testlib_cur_suite();

	if (s && s->needs_kvm && !testlib_kvm_required) {
		fprintf(stderr, "\n  suite %s needs KVM, but this test never called "
			"testlib_require_kvm()\n", s->name);
		CU_FAIL("a KVM suite's test must call testlib_require_kvm()");
	}
}

void testlib_register(struct test_suite *s)
{
	/* Constructors run in link order; keep registration order. */
	struct test_suite **pp = &suites;

	while (*pp)
		pp = &(*pp)->next;
	*pp = s;
}

void testlib_report_cmp(const char *file, int line, const char *a_txt, const char *op,
			const char *b_txt, bool is_float, long long a_s,
			unsigned long long a_u, double a_d, long long b_s,
			unsigned long long b_u, double b_d)
{
	fprintf(stderr, "\n  %s:%d: %s %s %s failed:\n", file, line, a_txt, op, b_txt);
	if (is_float)
		fprintf(stderr, "\t%s is %g\n\t%s is %g\n", a_txt, a_d, b_txt, b_d);
	else
		fprintf(stderr, "\t%s is %lld (0x%llx)\n\t%s is %lld (0x%llx)\n",
			a_txt, a_s, a_u, b_txt, b_s, b_u);
}

void testlib_report_str(const char *file, int line, const char *a_txt, const char *op,
			const char *b_txt, const char *a, const char *b)
{
	fprintf(stderr, "\n  %s:%d: %s %s %s failed:\n\t%s is \"%s\"\n"
		"\t%s is \"%s\"\n", file, line, a_txt, op, b_txt, a_txt,
		a ? a : "(null)", b_txt, b ? b : "(null)");
}

const char *testlib_kvm_problem(void)
{
	static char why[256];
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, sizeof(why), "/dev/kvm: %s (KVM tests cannot run "
			 "on this machine; they are counted as FAILED)", strerror(errno));
		return why;
	}
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		close(fd);
		snprintf(why, sizeof(why), "/dev/kvm: API version is not %d",
			 KVM_API_VERSION);
		return why;
	}
	close(fd);
	return NULL;
}

bool testlib_require_kvm(void)
{
	const struct test_suite *s = testlib_cur_suite();
	const char *why = testlib_kvm_problem();

	testlib_kvm_required = true;
	if (s && !s->needs_kvm) {
		fprintf(stderr, "\n  suite %s is not declared needs_kvm (TEST_SUITE's "
			"third argument), but this test requires KVM\n", s->name);
		CU_FAIL("a test that needs KVM must be in a suite declared needs_kvm");
	}
	if (!why)
		return true;
	fprintf(stderr, "\n  KVM UNAVAILABLE: %s\n", why);
	CU_FAIL_FATAL("KVM unavailable");
	return false;
}

const char *testlib_vmpoke(void)
{
	const char *p = getenv("VMPOKE");

	return p ? p : "build/vmpoke";
}

const char *testlib_image(void)
{
	const char *p = getenv("VMPOKE_IMAGE");

	return p ? p : "images/guest.img";
}

void testlib_vm_end(struct vm *vm, struct patcher *p)
{
	struct vmm_result res;

	if (!vm)
		return;
	EXPECT_EQ_U64(0, vmm_hcall_count(vm, VMPOKE_HC_CHECK_FAIL));
	EXPECT_EQ_U64(0, vmm_hcall_count(vm, VMPOKE_HC_FAULT));
	if (p)
		patcher_destroy(p);
	vmm_stop(vm);
	vmm_wait(vm, 120000, &res);
	vmm_destroy(vm);
}

struct symtab *testlib_syms_renamed(const struct symtab *st, const char *from, const char *to)
{
	size_t n = symtab_count(st);
	struct sym *s = calloc(n ? n : 1, sizeof(*s));
	struct symtab *out;

	EXPECT_NOT_NULL_FATAL(s);
	for (size_t i = 0; i < n; i++) {
		s[i] = *symtab_at(st, i);
		if (!strcmp(s[i].name, from))
			s[i].name = to;
	}
	out = symtab_from_array(s, n);
	free(s);
	return out;
}

int testlib_run(const char *cmd, char **output)
{
	char *full, *buf = NULL;
	size_t len = 0, cap = 0;
	char chunk[4096];
	size_t n;
	FILE *f;
	int st;

	if (asprintf(&full, "%s 2>&1", cmd) < 0)
		return -1;
	f = popen(full, "r");
	free(full);
	if (!f)
		return -1;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			buf = realloc(buf, cap);
			if (!buf)
				abort();
		}
		memcpy(buf + len, chunk, n);
		len += n;
	}
	if (!buf)
		buf = calloc(1, 1);
	else
		buf[len] = '\0';
	st = pclose(f);
	if (output)
		*output = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Loud, after the summary: these tests were neither run nor passed. */
static void testlib_not_run(unsigned int n)
{
	const struct test_suite *s;

	if (!n)
		return;
	fprintf(stderr, "\n*** NOT RUN on this host (not counted as passed):\n");
	for (s = suites; s; s = s->next) {
		unsigned int k = 0;

		if (!s->not_run_why)
			continue;
		while (s->cases[k].name)
			k++;
		fprintf(stderr, "***   suite %s (%u test%s): %s\n", s->name, k,
			k == 1 ? "" : "s", s->not_run_why);
	}
}

/* Does the suite name contain one of the comma-separated substrings? */
static bool suite_selected(const char *name, const char *filters)
{
	char *copy, *tok, *save;
	bool hit = false;

	if (!filters || !*filters)
		return true;
	copy = strdup(filters);
	if (!copy)
		abort();
	for (tok = strtok_r(copy, ",", &save); tok && !hit; tok = strtok_r(NULL, ",", &save))
		hit = strstr(name, tok) != NULL;
	free(copy);
	return hit;
}

static int usage(void)
{
	fprintf(stderr, "usage: vmpoke-tests [--junit FILE] [SUBSTRING[,SUBSTRING...]]\n"
		"       vmpoke-tests --junit FILE --junit-merge PART\n"
		"       vmpoke-tests --list-not-run [SUBSTRING[,...]]\n"
		"Runs the suites whose name contains one of the substrings (all by\n"
		"default).  --junit adds their results to FILE as JUnit XML;\n"
		"--junit-merge adds PART's suites to FILE and runs nothing;\n"
		"--list-not-run names the selected suites this host cannot run.\n"
		"VMPOKE_TRAP_PATH forces the trap path of every VM (auto, debug-exit,\n"
		"doorbell).\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *only = NULL, *junit = NULL, *merge = NULL;
	const char *kvm_why = testlib_kvm_problem();
	unsigned int kvm_suites = 0, not_run = 0;
	struct test_suite *s;
	bool list_not_run = false;
	int failed, path = vmm_trap_path_env();

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--junit") && i + 1 < argc)
			junit = argv[++i];
		else if (!strcmp(argv[i], "--junit-merge") && i + 1 < argc)
			merge = argv[++i];
		else if (!strcmp(argv[i], "--list-not-run"))
			list_not_run = true;
		else if (argv[i][0] == '-' || only)
			return usage();
		else
			only = argv[i];
	}
	if (merge)
		return junit && !only && !junit_merge(junit, merge) ? 0 : usage();
	if (path < 0) {
		fprintf(stderr, "vmpoke-tests: %s=%s: unknown trap path (auto, "
			"debug-exit or doorbell)\n", VMM_TRAP_PATH_ENV,
			getenv(VMM_TRAP_PATH_ENV));
		return 2;
	}
	/* For make check: the names of the suites this host cannot run. */
	if (list_not_run) {
		for (s = suites; s; s = s->next)
			if (suite_selected(s->name, only) && !kvm_why && s->unavailable &&
			    s->unavailable())
				printf("%s\n", s->name);
		return 0;
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 3;
	for (s = suites; s; s = s->next) {
		CU_pSuite cs;

		if (!suite_selected(s->name, only))
			continue;
		if (!kvm_why && s->unavailable && (s->not_run_why = s->unavailable())) {
			not_run++;
			continue;
		}
		cs = CU_add_suite_with_setup_and_teardown(s->name, NULL, NULL,
							  testlib_setup, testlib_teardown);
		if (!cs)
			return 3;
		kvm_suites += s->needs_kvm;
		for (const struct test_case *t = s->cases; t->name; t++)
			CU_add_test(cs, t->name, t->fn);
	}
	if (kvm_why && kvm_suites)
		fprintf(stderr, "\n*** %s\n*** %u suite(s) need KVM; their tests "
			"will FAIL.\n\n", kvm_why, kvm_suites);
	if (path != VMM_TRAP_AUTO)
		fprintf(stderr, "*** trap path forced to %s (%s)\n",
			vmm_trap_path_name(path), VMM_TRAP_PATH_ENV);
	testlib_not_run(not_run);
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
	if (kvm_why && kvm_suites)
		fprintf(stderr, "\n*** KVM was unusable: %s\n", kvm_why);
	testlib_not_run(not_run);
	if (junit) {
		char label[64];

		snprintf(label, sizeof(label), "trap path %s", vmm_trap_path_name(path));
		if (junit_add_run(junit, path != VMM_TRAP_AUTO ? label : NULL))
			failed++;
	}
	CU_cleanup_registry();
	if (not_run && getenv("VMPOKE_TESTS_MUST_RUN")) {
		fprintf(stderr, "*** VMPOKE_TESTS_MUST_RUN is set: %u suite(s) not run is a "
			"failure\n", not_run);
		return 1;
	}
	return failed ? 1 : 0;
}
