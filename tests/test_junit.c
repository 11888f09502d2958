// SPDX-License-Identifier: MIT
/*
 * test_junit.c - `vmpoke-tests --junit FILE` writes JUnit XML that a CI
 * system can read: well-formed, one <testcase> per CUnit test, a failed
 * test's <failure> carrying its message.
 *
 * The test runs this very binary on a fixture suite with two passing tests
 * and one failing one (registered only when VMPOKE_JUNIT_FIXTURE=1, so the
 * real run never sees it), then parses the result with libxml2 and XPath.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "testlib.h"

#define FIXTURE_ENV	"VMPOKE_JUNIT_FIXTURE"

static void fixture_pass_a(void)
{
	CU_PASS("fine");
}

static void fixture_pass_b(void)
{
	EXPECT_EQ(2, 1 + 1);
}

static void fixture_fail(void)
{
	EXPECT_EQ(1 + 1, 3);	/* the message the XML must carry */
}

static const struct test_case fixture_cases[] = {
	TEST(fixture_pass_a), TEST(fixture_fail), TEST(fixture_pass_b), { NULL, NULL },
};
static struct test_suite fixture_suite = {
	.name = "junit_fixture", .needs_kvm = false, .cases = fixture_cases,
};

__attribute__((constructor)) static void fixture_register(void)
{
	const char *e = getenv(FIXTURE_ENV);

	if (e && !strcmp(e, "1"))
		testlib_register(&fixture_suite);
}

/* Value of an XPath expression as a number (count(), etc.). */
static double xp_num(xmlXPathContextPtr ctx, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
	double v = o ? xmlXPathCastToNumber(o) : -1;

	xmlXPathFreeObject(o);
	return v;
}

/* Value of an XPath expression as a string (malloc'd, never NULL). */
static char *xp_str(xmlXPathContextPtr ctx, const char *expr)
{
	xmlXPathObjectPtr o = xmlXPathEvalExpression((const xmlChar *)expr, ctx);
	xmlChar *v = o ? xmlXPathCastToString(o) : NULL;
	char *r = strdup(v ? (const char *)v : "");

	xmlFree(v);
	xmlXPathFreeObject(o);
	return r;
}

/* Run the fixture into path; vmpoke-tests' exit status, its output in *out. */
static int run_fixture(const char *path, const char *trap_env, char **out)
{
	char exe[4096], *cmd;
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	int st;

	EXPECT_TRUE_FATAL(n > 0);
	exe[n] = '\0';
	EXPECT_TRUE_FATAL(asprintf(&cmd, "%s=1 VMPOKE_TRAP_PATH=%s '%s' --junit '%s' "
				 "junit_fixture", FIXTURE_ENV, trap_env, exe, path) > 0);
	st = testlib_run(cmd, out);
	EXPECT_TRUE_MSG(strstr(*out, "fixture_fail") != NULL, "fixture output: %s", *out);
	free(cmd);
	return st;
}

static void test_junit_xml(void)
{
	char path[] = "/tmp/vmpoke-junit-XXXXXX";
	int fd = mkstemp(path);
	xmlXPathContextPtr ctx;
	xmlDocPtr doc;
	char *msg, *text, *out;

	EXPECT_TRUE_FATAL(fd >= 0);
	close(fd);
	unlink(path);		/* the run creates it */

	/* One failing test: the run fails, and says so in the XML. */
	EXPECT_EQ_U64(1, run_fixture(path, "", &out));
	free(out);
	/* A second run, path forced, adds its suite under another name. */
	EXPECT_EQ_U64(1, run_fixture(path, "doorbell", &out));
	free(out);

	doc = xmlReadFile(path, NULL, XML_PARSE_NONET);
	EXPECT_TRUE_MSG(doc != NULL, "%s is not well-formed XML", path);
	if (!doc) {
		unlink(path);
		return;
	}
	ctx = xmlXPathNewContext(doc);
	EXPECT_NOT_NULL_FATAL(ctx);
	EXPECT_EQ(1, xp_num(ctx, "count(/testsuites)"));
	EXPECT_EQ(2, xp_num(ctx, "count(/testsuites/testsuite)"));
	EXPECT_EQ(6, xp_num(ctx, "/testsuites/@tests"));
	EXPECT_EQ(2, xp_num(ctx, "/testsuites/@failures"));
	EXPECT_EQ(1, xp_num(ctx, "count(/testsuites/testsuite[@name='junit_fixture'])"));
	EXPECT_EQ(1, xp_num(ctx, "count(/testsuites/testsuite"
				  "[@name='junit_fixture [trap path doorbell]'])"));
	/* One testcase per CUnit test, by name, in each suite. */
	EXPECT_EQ(3, xp_num(ctx, "count(//testsuite[1]/testcase)"));
	EXPECT_EQ(3, xp_num(ctx, "//testsuite[1]/@tests"));
	EXPECT_EQ(1, xp_num(ctx, "//testsuite[1]/@failures"));
	EXPECT_EQ(2, xp_num(ctx, "count(//testcase[@name='fixture_pass_a'])"));
	EXPECT_EQ(2, xp_num(ctx, "count(//testcase[@name='fixture_pass_b'])"));
	EXPECT_EQ(0, xp_num(ctx, "count(//testcase[@name='fixture_pass_a']/failure)"));
	EXPECT_EQ(2, xp_num(ctx, "count(//testcase[@name='fixture_fail']/failure)"));
	/* The failure carries CUnit's message and where it failed. */
	msg = xp_str(ctx, "//testsuite[1]/testcase[@name='fixture_fail']/failure/@message");
	text = xp_str(ctx, "//testsuite[1]/testcase[@name='fixture_fail']/failure");
	EXPECT_TRUE_MSG(strstr(msg, "1 + 1") && strstr(msg, "3"), "message '%s'", msg);
	EXPECT_TRUE_MSG(strstr(text, "test_junit.c:") != NULL, "failure text '%s'", text);
	free(msg);
	free(text);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	unlink(path);
}

/* A file that is not JUnit is refused, not overwritten. */
static void test_junit_refuses_other_files(void)
{
	char path[] = "/tmp/vmpoke-junit-XXXXXX";
	int fd = mkstemp(path);
	char buf[64] = "", *out;

	EXPECT_TRUE_FATAL(fd >= 0);
	EXPECT_EQ(6, write(fd, "hello\n", 6));
	close(fd);
	EXPECT_NE(0, run_fixture(path, "", &out));
	EXPECT_TRUE_MSG(strstr(out, "is not a JUnit") != NULL, "output: %s", out);
	free(out);
	fd = open(path, O_RDONLY);
	EXPECT_EQ(6, read(fd, buf, sizeof(buf)));
	close(fd);
	EXPECT_STREQ("hello\n", buf);
	unlink(path);
}

TEST_SUITE(junit, "junit_xml", false,
	   TEST(test_junit_xml), TEST(test_junit_refuses_other_files))
