/* SPDX-License-Identifier: MIT */
/*
 * testlib.h - how vmpoke's CUnit suites register and report.
 *
 * Each test file declares its suites with TEST_SUITE(); a constructor
 * adds them to one list, so adding a suite never means editing a shared
 * file.  Suites that need /dev/kvm say so: if KVM is unusable their tests
 * FAIL with a message naming the problem (never skip, never pass).
 *
 * Failure helpers print expected vs actual, as the KVM selftests do.
 */
#ifndef VMPOKE_TESTLIB_H
#define VMPOKE_TESTLIB_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <CUnit/CUnit.h>

struct test_case {
	const char *name;
	void (*fn)(void);
};

struct test_suite {
	const char *name;
	bool needs_kvm;
	const struct test_case *cases;	/* terminated by { NULL, NULL } */
	struct test_suite *next;
};

void testlib_register(struct test_suite *s);

#define TEST_SUITE(ident, sname, kvm, ...)					\
	static const struct test_case ident##_cases[] = { __VA_ARGS__, { NULL, NULL } }; \
	static struct test_suite ident##_suite = {				\
		.name = sname, .needs_kvm = kvm, .cases = ident##_cases };	\
	__attribute__((constructor)) static void ident##_register(void)	\
	{ testlib_register(&ident##_suite); }

#define TEST(fn)	{ #fn, fn }

/* NULL if /dev/kvm is usable, else a sentence saying why not. */
const char *testlib_kvm_problem(void);

/* Path of the built vmpoke binary and guest image (env VMPOKE, VMPOKE_IMAGE). */
const char *testlib_vmpoke(void);
const char *testlib_image(void);

/* Run a shell command, capture stdout+stderr (NUL-terminated, malloc'd) and exit status. */
int testlib_run(const char *cmd, char **output);

#define EXPECT_EQ_U64(exp, act) do {						\
	uint64_t e_ = (uint64_t)(exp), a_ = (uint64_t)(act);			\
	if (e_ != a_)								\
		fprintf(stderr, "\n  %s:%d: %s: expected %" PRIu64 " (0x%" PRIx64 \
			"), actual %" PRIu64 " (0x%" PRIx64 ")\n", __FILE__,	\
			__LINE__, #act, e_, e_, a_, a_);			\
	CU_ASSERT_EQUAL(e_, a_);						\
} while (0)

#define EXPECT_TRUE_MSG(cond, ...) do {						\
	bool c_ = (cond);							\
	if (!c_) {								\
		fprintf(stderr, "\n  %s:%d: %s: ", __FILE__, __LINE__, #cond);	\
		fprintf(stderr, __VA_ARGS__);					\
		fputc('\n', stderr);						\
	}									\
	CU_ASSERT_TRUE(c_);							\
} while (0)

/* Fail the current test loudly if KVM is unusable; returns false then. */
bool testlib_require_kvm(void);

#endif /* VMPOKE_TESTLIB_H */
