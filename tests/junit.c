// SPDX-License-Identifier: MIT
/*
 * junit.c - see junit.h.  The JUnit schema used is the common subset CI
 * systems read: <testsuites tests failures> / <testsuite name tests
 * failures errors skipped> / <testcase classname name>, and one
 * <failure message type> per failed CUnit assertion, its text
 * "file:line: condition".
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <CUnit/CUnit.h>
#include <CUnit/TestRun.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include "junit.h"

static const xmlChar *X(const char *s)
{
	return (const xmlChar *)s;
}

static void set_uint(xmlNodePtr n, const char *attr, unsigned long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lu", v);
	xmlSetProp(n, X(attr), X(buf));
}

static unsigned long get_uint(xmlNodePtr n, const char *attr)
{
	xmlChar *v = xmlGetProp(n, X(attr));
	unsigned long r = v ? strtoul((const char *)v, NULL, 10) : 0;

	xmlFree(v);
	return r;
}

/* The existing file's document, or a new one with an empty <testsuites>. */
static xmlDocPtr junit_open(const char *path, xmlNodePtr *root)
{
	FILE *f = fopen(path, "r");
	xmlDocPtr doc;

	if (!f) {
		doc = xmlNewDoc(X("1.0"));
		*root = xmlNewNode(NULL, X("testsuites"));
		xmlDocSetRootElement(doc, *root);
		return doc;
	}
	fclose(f);
	doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOBLANKS);
	*root = doc ? xmlDocGetRootElement(doc) : NULL;
	if (!*root || xmlStrcmp((*root)->name, X("testsuites"))) {
		fprintf(stderr, "junit: %s exists and is not a JUnit <testsuites> "
			"file; not overwriting it\n", path);
		xmlFreeDoc(doc);
		return NULL;
	}
	return doc;
}

/* Recount the root's totals from its suites, then write path atomically. */
static int junit_save(xmlDocPtr doc, xmlNodePtr root, const char *path)
{
	unsigned long tests = 0, failures = 0;
	char *tmp;
	int r = -1;

	for (xmlNodePtr s = root->children; s; s = s->next) {
		if (s->type != XML_ELEMENT_NODE || xmlStrcmp(s->name, X("testsuite")))
			continue;
		tests += get_uint(s, "tests");
		failures += get_uint(s, "failures");
	}
	set_uint(root, "tests", tests);
	set_uint(root, "failures", failures);
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return -1;
	if (xmlSaveFormatFileEnc(tmp, doc, "UTF-8", 1) >= 0 && rename(tmp, path) == 0)
		r = 0;
	else
		fprintf(stderr, "junit: cannot write %s\n", path);
	free(tmp);
	return r;
}

static void add_failure(xmlNodePtr tc, const CU_FailureRecord *f)
{
	char *text;
	xmlNodePtr n;

	if (asprintf(&text, "%s:%u: %s", f->strFileName ? f->strFileName : "?",
		     f->uiLineNumber, f->strCondition ? f->strCondition : "") < 0)
		return;
	n = xmlNewChild(tc, NULL, X("failure"), NULL);
	xmlSetProp(n, X("message"), X(f->strCondition ? f->strCondition : ""));
	xmlSetProp(n, X("type"), X("assertion"));
	xmlNodeAddContent(n, X(text));
	free(text);
}

static void add_suite(xmlNodePtr root, CU_pSuite s, const char *label)
{
	xmlNodePtr ts = xmlNewChild(root, NULL, X("testsuite"), NULL);
	unsigned long tests = 0, failed = 0;
	char *name = NULL;

	if (!label || asprintf(&name, "%s [%s]", s->pName, label) < 0)
		name = strdup(s->pName);
	if (!name)
		abort();
	xmlSetProp(ts, X("name"), X(name));
	for (CU_pTest t = s->pTest; t; t = t->pNext) {
		xmlNodePtr tc = xmlNewChild(ts, NULL, X("testcase"), NULL);
		bool bad = false;

		xmlSetProp(tc, X("classname"), X(name));
		xmlSetProp(tc, X("name"), X(t->pName));
		for (CU_pFailureRecord f = CU_get_failure_list(); f; f = f->pNext)
			if (f->pTest == t) {
				add_failure(tc, f);
				bad = true;
			}
		tests++;
		failed += bad;
	}
	/* A failed suite initialisation has no test: report it on the suite. */
	for (CU_pFailureRecord f = CU_get_failure_list(); f; f = f->pNext)
		if (f->pSuite == s && !f->pTest) {
			xmlNodePtr tc = xmlNewChild(ts, NULL, X("testcase"), NULL);

			xmlSetProp(tc, X("classname"), X(name));
			xmlSetProp(tc, X("name"), X("(suite set-up)"));
			add_failure(tc, f);
			tests++;
			failed++;
		}
	set_uint(ts, "tests", tests);
	set_uint(ts, "failures", failed);
	set_uint(ts, "errors", 0);
	set_uint(ts, "skipped", 0);
	free(name);
}

int junit_add_run(const char *path, const char *label)
{
	CU_pTestRegistry reg = CU_get_registry();
	xmlNodePtr root;
	xmlDocPtr doc = junit_open(path, &root);
	int r;

	if (!doc)
		return -1;
	for (CU_pSuite s = reg ? reg->pSuite : NULL; s; s = s->pNext)
		add_suite(root, s, label);
	r = junit_save(doc, root, path);
	xmlFreeDoc(doc);
	return r;
}

int junit_merge(const char *path, const char *part)
{
	xmlDocPtr src = xmlReadFile(part, NULL, XML_PARSE_NONET | XML_PARSE_NOBLANKS);
	xmlNodePtr sroot = src ? xmlDocGetRootElement(src) : NULL;
	xmlNodePtr root;
	xmlDocPtr doc;
	int r;

	if (!sroot || xmlStrcmp(sroot->name, X("testsuites"))) {
		fprintf(stderr, "junit: %s: not a JUnit <testsuites> file\n", part);
		xmlFreeDoc(src);
		return -1;
	}
	doc = junit_open(path, &root);
	if (!doc) {
		xmlFreeDoc(src);
		return -1;
	}
	for (xmlNodePtr s = sroot->children; s; s = s->next)
		if (s->type == XML_ELEMENT_NODE && !xmlStrcmp(s->name, X("testsuite")))
			xmlAddChild(root, xmlDocCopyNode(s, doc, 1));
	r = junit_save(doc, root, path);
	xmlFreeDoc(doc);
	xmlFreeDoc(src);
	return r;
}
