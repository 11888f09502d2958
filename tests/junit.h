/* SPDX-License-Identifier: MIT */
/*
 * junit.h - CUnit results as JUnit XML, so CI systems show one line per
 * test (`make check JUNIT=FILE`).
 *
 * One file collects several runs (the suites on the host's trap path, then
 * again with the path forced to debug-exit, perhaps inside the nested VM):
 * each run adds its suites to the file's <testsuites> root.  The XML is
 * built and parsed with libxml2, never by hand.
 */
#ifndef VMPOKE_TESTS_JUNIT_H
#define VMPOKE_TESTS_JUNIT_H

/*
 * Add the results of the CUnit run that just ended (the registry is still
 * alive) to path, creating it if absent.  label, when not NULL, is appended
 * to each suite's name as " [label]" so two runs of one suite stay apart.
 * 0, or -1 with a message on stderr naming path.
 */
int junit_add_run(const char *path, const char *label);

/* Append every <testsuite> of the JUnit file part to path (created if absent). */
int junit_merge(const char *path, const char *part);

#endif /* VMPOKE_TESTS_JUNIT_H */
