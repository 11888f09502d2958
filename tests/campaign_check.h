/* SPDX-License-Identifier: MIT */
/*
 * campaign_check.h - checks on what a campaign wrote, shared by the unit
 * tests (fake backend) and the KVM tests: the --json report's keys, the
 * events file's lines, and the trace against the Chrome trace-event
 * format's rules (Perfetto's trace_processor is not installable here).
 */
#ifndef VMPOKE_CAMPAIGN_CHECK_H
#define VMPOKE_CAMPAIGN_CHECK_H

#include <json.h>
#include <stdbool.h>
#include <stddef.h>

/*
 * /tmp/vmpoke-PID-name: per test process, so suites run at the same time
 * (other worktrees, CI) never share a report, trace or events file.
 */
const char *campaign_check_tmp(const char *name);

/* Write a script to a new /tmp/...lua file; its path (malloc'd). */
char *campaign_check_script(const char *lua);

/* Run a Lua script (text) through the fake backend; returns the exit code. */
struct fake_be;
int campaign_check_run_fake(const char *lua, const char *json_path, const char *trace_path,
			    const char *events_path, struct fake_be **fake);
/* The same with --timeout. */
int campaign_check_run_fake_timeout(const char *lua, const char *json_path,
				    const char *trace_path, const char *events_path,
				    unsigned int timeout_s, struct fake_be **fake);
/* The same on a fake the caller made (and frees); -1 if f is NULL. */
int campaign_check_run_on(struct fake_be *f, const char *lua, const char *json_path,
			  const char *trace_path, const char *events_path, unsigned int timeout_s);

/* 0, or -1 with why: the report has exactly the top-level keys. */
int campaign_check_report(json_object *r, char *why, size_t len);
/* r[key][i], or NULL. */
json_object *campaign_check_at(json_object *r, const char *key, size_t i);
/* 0 if got equals the JSON text want (keys, values, types); else -1 and why. */
int campaign_check_json(json_object *got, const char *want, char *why, size_t len);
/* Every expectation in the report held, and there were at least min. */
int campaign_check_expectations(json_object *r, size_t min, char *why, size_t len);
/* Trace-event JSON: container, fields per phase, X slices nest per tid. */
int campaign_check_trace(const char *path, char *why, size_t len);
/* The trace has an event of phase ph named name. */
bool campaign_check_trace_has(const char *path, const char *ph, const char *name);
/* NDJSON: every line an object with t_us and a known type. */
int campaign_check_events(const char *path, char *why, size_t len);

#endif /* VMPOKE_CAMPAIGN_CHECK_H */
