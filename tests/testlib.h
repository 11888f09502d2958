/* SPDX-License-Identifier: MIT */
/*
 * testlib.h - how vmpoke's CUnit suites register and report.
 *
 * Each test file declares its suites with TEST_SUITE(); a constructor
 * adds them to one list, so adding a suite never means editing a shared
 * file.  Suites that need /dev/kvm say so: if KVM is unusable their tests
 * FAIL with a message naming the problem (never skip, never pass).  The
 * runner enforces the declaration: every test of a needs_kvm suite must
 * call testlib_require_kvm() (else it fails), and a test that calls it
 * from a suite not declared needs_kvm fails too.
 *
 * Failure helpers (EXPECT_*) print both values, as the KVM selftests'
 * TEST_ASSERT_EQ does; raw CU_ASSERTs print only the expression.
 */
#ifndef VMPOKE_TESTLIB_H
#define VMPOKE_TESTLIB_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <CUnit/CUnit.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

struct test_suite {
	const char *name;
	bool needs_kvm;
	const struct test_case *cases;	/* terminated by { NULL, NULL } */
	/*
	 * NULL, or what this host cannot do that the suite needs (a sentence),
	 * e.g. trap a CPL0 INT3 on kvm_pvm.  Such a suite is not registered,
	 * so it is neither run nor counted as passed, and the runner says
	 * loudly which suites did not run and why.  VMPOKE_TESTS_MUST_RUN=1
	 * makes that a failure (the nested sub-run of make check sets it).
	 */
	const char *(*unavailable)(void);
	const char *not_run_why;	/* set by the runner */
	struct test_suite *next;
};

void testlib_register(struct test_suite *s);

#define TEST_SUITE(ident, sname, kvm, ...)					\
	static const struct test_case ident##_cases[] = { __VA_ARGS__, { NULL, NULL } }; \
	static struct test_suite ident##_suite = {				\
		.name = sname, .needs_kvm = kvm, .cases = ident##_cases };	\
	__attribute__((constructor)) static void ident##_register(void)	\
	{ testlib_register(&ident##_suite); }

/* A KVM suite that runs only where unavailable() returns NULL. */
#define TEST_SUITE_IF(ident, sname, unavail, ...)				\
	static const struct test_case ident##_cases[] = { __VA_ARGS__, { NULL, NULL } }; \
	static struct test_suite ident##_suite = {				\
		.name = sname, .needs_kvm = true, .cases = ident##_cases,	\
		.unavailable = unavail };					\
	__attribute__((constructor)) static void ident##_register(void)	\
	{ testlib_register(&ident##_suite); }

#define TEST(fn)	{ #fn, fn }

/* NULL if /dev/kvm is usable, else a sentence saying why not. */
const char *testlib_kvm_problem(void);

/* Path of the built vmpoke binary and guest image (env VMPOKE, VMPOKE_IMAGE). */
const char *testlib_vmpoke(void);
const char *testlib_image(void);

/*
 * The end of a KVM test's run: no guest check failure or fault reported,
 * then the patcher (if any) destroyed - its probes and sites removed -
 * and the VM stopped and destroyed.  Nothing if vm is NULL.
 */
struct vm;
struct patcher;
void testlib_vm_end(struct vm *vm, struct patcher *p);

/* A copy of st with the symbol `from` named `to` (tests of name clashes). */
struct symtab;
struct symtab *testlib_syms_renamed(const struct symtab *st, const char *from, const char *to);

/* Run a shell command, capture stdout+stderr (NUL-terminated, malloc'd) and exit status. */
int testlib_run(const char *cmd, char **output);

/*
 * EXPECT_*: CUnit assertions that print the values when they fail, as the
 * KVM selftests' TEST_ASSERT_EQ does: "file:line: a == b failed: a is
 * 3 (0x3), b is 4 (0x4)".  The verdict is C's own comparison of the two
 * operands, as CU_ASSERT_EQUAL's is; the values are printed as signed and
 * hex.  The _FATAL forms end the test on failure.
 */
void testlib_report_cmp(const char *file, int line, const char *a_txt, const char *op,
			const char *b_txt, bool is_float, long long a_s,
			unsigned long long a_u, double a_d, long long b_s,
			unsigned long long b_u, double b_d);
void testlib_report_str(const char *file, int line, const char *a_txt, const char *op,
			const char *b_txt, const char *a, const char *b);

#define EXPECT_CMP_(a, op, b, fatal, a_txt, b_txt) do {			\
	/* Both in the type C compares them in, each evaluated once. */	\
	__typeof__((a) + (b)) a_ = (a), b_ = (b);				\
	bool ok_ = a_ op b_;							\
	if (!ok_)								\
		testlib_report_cmp(__FILE__, __LINE__, a_txt, #op, b_txt,	\
				   _Generic(a_, float: true, double: true,	\
					    long double: true, default: false), \
				   (long long)a_, (unsigned long long)a_,	\
				   (double)a_, (long long)b_,			\
				   (unsigned long long)b_, (double)b_);	\
	CU_assertImplementation(ok_, __LINE__, a_txt " " #op " " b_txt, __FILE__, \
				"", fatal);					\
} while (0)

#define EXPECT_EQ(a, b)		EXPECT_CMP_(a, ==, b, CU_FALSE, #a, #b)
#define EXPECT_NE(a, b)		EXPECT_CMP_(a, !=, b, CU_FALSE, #a, #b)
#define EXPECT_LT(a, b)		EXPECT_CMP_(a, <, b, CU_FALSE, #a, #b)
#define EXPECT_LE(a, b)		EXPECT_CMP_(a, <=, b, CU_FALSE, #a, #b)
#define EXPECT_GT(a, b)		EXPECT_CMP_(a, >, b, CU_FALSE, #a, #b)
#define EXPECT_GE(a, b)		EXPECT_CMP_(a, >=, b, CU_FALSE, #a, #b)
#define EXPECT_EQ_FATAL(a, b)	EXPECT_CMP_(a, ==, b, CU_TRUE, #a, #b)
#define EXPECT_NE_FATAL(a, b)	EXPECT_CMP_(a, !=, b, CU_TRUE, #a, #b)

/* Truth values: "x is 0" says which of several conditions failed. */
#define EXPECT_TRUE(x)		EXPECT_CMP_(!!(x), ==, 1, CU_FALSE, #x, "true")
#define EXPECT_FALSE(x)		EXPECT_CMP_(!!(x), ==, 0, CU_FALSE, #x, "false")
#define EXPECT_TRUE_FATAL(x)	EXPECT_CMP_(!!(x), ==, 1, CU_TRUE, #x, "true")

/* Pointers, as addresses. */
#define EXPECT_PTR_EQ(a, b)	EXPECT_CMP_((uintptr_t)(a), ==, (uintptr_t)(b), CU_FALSE, #a, #b)
#define EXPECT_PTR_NE(a, b)	EXPECT_CMP_((uintptr_t)(a), !=, (uintptr_t)(b), CU_FALSE, #a, #b)
#define EXPECT_NULL(p)		EXPECT_CMP_((uintptr_t)(p), ==, (uintptr_t)0, CU_FALSE, #p, "NULL")
#define EXPECT_NOT_NULL(p)	EXPECT_CMP_((uintptr_t)(p), !=, (uintptr_t)0, CU_FALSE, #p, "NULL")
#define EXPECT_NOT_NULL_FATAL(p) EXPECT_CMP_((uintptr_t)(p), !=, (uintptr_t)0, CU_TRUE, #p, "NULL")

/* Floating point: a and b within tol of each other. */
#define EXPECT_NEAR(a, b, tol) do {						\
	double a_ = (a), b_ = (b);						\
	bool ok_ = a_ - b_ <= (tol) && b_ - a_ <= (tol);			\
	if (!ok_)								\
		fprintf(stderr, "\n  %s:%d: %s ~ %s failed: %s is %g, %s is %g " \
			"(tolerance %g)\n", __FILE__, __LINE__, #a, #b, #a, a_, \
			#b, b_, (double)(tol));					\
	CU_assertImplementation(ok_, __LINE__, #a " ~ " #b, __FILE__, "", CU_FALSE); \
} while (0)

/* Strings (NULL prints as "(null)" and equals only NULL). */
#define EXPECT_STR_CMP_(a, b, want_eq, has) do {				\
	const char *a_ = (a), *b_ = (b);					\
	bool ok_ = has ? (a_ && b_ && strstr(a_, b_)) :				\
		   ((a_ && b_) ? !strcmp(a_, b_) : a_ == b_) == (want_eq);	\
	if (!ok_)								\
		testlib_report_str(__FILE__, __LINE__, #a,			\
				   has ? "contains" : (want_eq) ? "==" : "!=",	\
				   #b, a_, b_);					\
	CU_assertImplementation(ok_, __LINE__, #a " vs " #b, __FILE__, "", CU_FALSE); \
} while (0)
#define EXPECT_STREQ(a, b)	EXPECT_STR_CMP_(a, b, true, false)
#define EXPECT_STRNE(a, b)	EXPECT_STR_CMP_(a, b, false, false)
/* hay contains needle */
#define EXPECT_STR_HAS(hay, needle) EXPECT_STR_CMP_(hay, needle, true, true)

/* A condition with no two values to show: the message says what was seen. */
#define EXPECT_TRUE_MSG(cond, ...) do {						\
	bool c_ = (cond);							\
	if (!c_) {								\
		fprintf(stderr, "\n  %s:%d: %s: ", __FILE__, __LINE__, #cond);	\
		fprintf(stderr, __VA_ARGS__);					\
		fputc('\n', stderr);						\
	}									\
	CU_assertImplementation(c_, __LINE__, #cond, __FILE__, "", CU_FALSE);	\
} while (0)

/* Kept for the existing call sites: EXPECT_EQ with (expected, actual). */
#define EXPECT_EQ_U64(exp, act)	EXPECT_CMP_((uint64_t)(exp), ==, (uint64_t)(act), CU_FALSE, \
					    #exp, #act)

/* Fail the current test loudly if KVM is unusable; returns false then. */
bool testlib_require_kvm(void);

#endif /* VMPOKE_TESTLIB_H */
