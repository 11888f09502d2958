/* SPDX-License-Identifier: MIT */
/*
 * campaign.h - `vmpoke campaign`: Lua 5.4 scripts that probe and patch a
 * running guest by symbol (the API is in README.md and vmpoke(1)).
 *
 * Two halves meet here:
 *
 *   the campaign core (patcher/campaign*.c): the Lua state, every Lua
 *   function's argument handling, expectations, the report, the events
 *   and trace files, the interpreter hand-off to probe handlers, and
 *   undoing everything on exit;
 *
 *   a backend (struct campaign_ops): what the core needs from a VM.  The
 *   real one (campaign_kvm.c) boots the guest on /dev/kvm and drives the
 *   patcher and the probe engine.  A test or fuzzer can plug in a fake
 *   with no KVM at all: tests/test_campaign_lua.c has one, and the
 *   libFuzzer target fuzz_campaign drives the Lua API's argument
 *   handling through it.
 *
 * A fake backend's contract, in short:
 *   - every op runs on the thread that called campaign_run() (the
 *     controller), except that a backend delivers probe hits by calling
 *     campaign_probe_hit() from any thread (the real one: vCPU threads),
 *     and it may do so from inside ops->run() on the controller thread;
 *   - boot is called once, lazily, on the first use of `vm`; every other
 *     op only after it succeeded;
 *   - ops return 0 or a negative errno and fill msg on failure; a patch
 *     refusal is not a failure: it is reported in struct campaign_patch_out;
 *     boot's -EINVAL/-ENOENT mean bad input (exit 2), -EPIPE that the
 *     guest itself failed while booting (exit 1), anything else the host;
 *   - probe handles are opaque to the core; the backend keeps a handle
 *     valid (for counts) until ops->destroy.
 *
 * The interpreter is single-threaded.  A hit is given the interpreter only
 * while the script is idle inside vm:run_for(); otherwise (the script is
 * running, or waiting in vm:patch()/vm:probe()/p:remove() for a sync, or
 * another handler holds it) campaign_probe_hit() returns CAMPAIGN_MISSED at
 * once and the original instruction runs.  No vCPU ever waits for a
 * controller that waits for it: seed 003's deadlock (docs/design.md) cannot
 * be built.
 */
#ifndef VMPOKE_CAMPAIGN_H
#define VMPOKE_CAMPAIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "livepatch.h"
#include "probe.h"
#include "vmpoke_abi.h"

#define CAMPAIGN_MAX_SITE	16	/* = POKE_MAX_LEN */
#define CAMPAIGN_REASON_LEN	192

struct symtab;
struct campaign;
struct campaign_probe;

/* The guest as `campaign = {...}` and the command line describe it. */
struct campaign_boot_cfg {
	struct campaign *campaign;	/* for campaign_phase_done() */
	const char *image;
	unsigned int vcpus, tasks, hz;
	uint64_t iterations;		/* per task, 0 = until stopped */
	enum vmpoke_scenario scenario;
	bool quiet;			/* no guest console echo */
};

/* One site of a vm:patch() batch. */
struct campaign_site {
	uint64_t at;
	uint8_t len;
	uint8_t new_bytes[CAMPAIGN_MAX_SITE];
	bool has_old;
	uint8_t old[CAMPAIGN_MAX_SITE];	/* in: expected (has_old); out: replaced */
	uint8_t emulate_len;		/* 0: emulate new_bytes */
	uint8_t emulate[CAMPAIGN_MAX_SITE];
	char refused[CAMPAIGN_REASON_LEN];	/* out: why not, "" if accepted */
};

struct campaign_patch_out {
	bool ok;			/* every site carries its new bytes */
	uint64_t syncs;
	double us;
	char error[CAMPAIGN_REASON_LEN];	/* protocol failure (all sites) */
};

struct campaign_counts {
	uint64_t hits, missed;
	uint64_t per_vcpu[VMPOKE_MAX_VCPUS];
	bool removed;			/* e.g. by max_hits */
};

struct campaign_task_stats {
	unsigned int vcpu, task;
	uint64_t iterations, check_failures;
};

struct campaign_guest_stats {
	uint64_t iterations, check_failures, guest_faults;
	unsigned int nr_tasks;
	struct campaign_task_stats tasks[VMPOKE_MAX_VCPUS * VMPOKE_MAX_TASKS];
	bool ended;			/* the guest run is over */
	bool healthy;			/* no fault, triple fault, internal error */
	char outcome[512];		/* how it ended, one line */
};

/* One hit, as the handler sees it; regs may be modified. */
struct campaign_hit {
	unsigned int vcpu;
	int task;
	struct kvm_regs *regs;
};

enum campaign_verdict {
	CAMPAIGN_RESUME = 0,	/* run the original instruction */
	CAMPAIGN_SKIP,		/* resume at regs->rip, skipping it */
	CAMPAIGN_MISSED,	/* count as missed, run the original */
};

/* The probe engine's verdict for a campaign's (the two enums say the same). */
enum probe_verdict campaign_probe_verdict(enum campaign_verdict v);

/* Timing of one protocol phase, for the trace (nested under vm:patch). */
struct campaign_phase {
	const char *name;	/* static string */
	uint64_t start_ns, end_ns;	/* CLOCK_MONOTONIC */
	unsigned int depth;	/* 0 = the batch */
};

/* A static key (jump label) of the guest, for vm:static_keys(). */
struct campaign_static_key {
	char name[64];
	bool enabled;
	size_t sites;
};

/* A static call of the guest, for vm:static_calls(). */
struct campaign_static_call {
	char name[64];
	uint64_t current;		/* 0 = NULL */
	size_t sites, nr_targets;
	uint64_t targets[16];
};

struct campaign_ops {
	int (*boot)(void *be, const struct campaign_boot_cfg *cfg, char *msg, size_t len);
	const struct symtab *(*symtab)(void *be);
	int (*read)(void *be, uint64_t addr, void *buf, size_t len);
	/*
	 * Apply one batch.  Refused sites get .refused filled and nothing is
	 * applied; out->ok says whether the batch is in place.  Phases may be
	 * reported through campaign_phase_done().
	 */
	int (*patch)(void *be, struct campaign_site *sites, size_t n,
		     struct campaign_patch_out *out);
	/* Put back what patch() replaced (sites as patch() returned them). */
	int (*unpatch)(void *be, struct campaign_site *sites, size_t n,
		       struct campaign_patch_out *out);
	/*
	 * Place a probe; hits go to campaign_probe_hit(c, cp, ...).  NULL and
	 * reason ("not_insn_boundary", ...) if refused.  *kind: "int3", ...
	 */
	void *(*probe_add)(void *be, uint64_t addr, uint64_t max_hits,
			   struct campaign_probe *cp, const char **kind,
			   char *reason, size_t len);
	int (*probe_remove)(void *be, void *h, char *msg, size_t len);
	void (*probe_counts)(void *be, void *h, struct campaign_counts *c);
	void (*probe_reap)(void *be);		/* remove probes at max_hits */
	/* Let the guest run for up to ms; return early once it has ended. */
	void (*run)(void *be, unsigned int ms);
	int (*stats)(void *be, struct campaign_guest_stats *st);
	void (*destroy)(void *be);		/* stop the guest, free */
	/*
	 * Optional (NULL: the backend has none).  static_keys: every key of the
	 * image's __jump_table, by name, with its state now (*keys malloc'd).
	 * static_key_set: static_key_enable()/disable() of one key in one
	 * batch; -ENOENT for an unknown name, a refusal ("unexpected op at
	 * ...") is out->ok = false with out->error.  *changed: false if the key
	 * already had that state; *sites: sites rewritten.
	 */
	int (*static_keys)(void *be, struct campaign_static_key **keys, size_t *n,
			   char *msg, size_t len);
	int (*static_key_set)(void *be, const char *name, bool enable, bool *changed,
			      size_t *sites, struct campaign_patch_out *out);
	/*
	 * Optional.  static_calls: every __SCT__ trampoline with its key's
	 * function, targets and sites (*calls malloc'd).  static_call_update:
	 * static_call_update(name, target) (0 = NULL) in one batch; -ENOENT
	 * for an unknown name; a refusal is out->ok = false with out->error;
	 * *sites rewritten, *stw of them stop-the-world.
	 */
	int (*static_calls)(void *be, struct campaign_static_call **calls, size_t *n,
			    char *msg, size_t len);
	int (*static_call_update)(void *be, const char *name, uint64_t target, size_t *sites,
				  size_t *stw, struct campaign_patch_out *out);
	/*
	 * Optional: livepatch (include/livepatch.h).  livepatch_new validates
	 * a patch (retry_ms 0: the default) and hands back its handle;
	 * livepatch_op runs 'e'nable, 'd'isable or 'f'orce, a refusal being
	 * out->ok = false with out->error; livepatch_info reads its state.
	 * The backend's run() retries the transition in progress.
	 */
	int (*livepatch_new)(void *be, const struct klp_func_spec *f, size_t n,
			     unsigned int retry_ms, void **h, char *msg, size_t len);
	int (*livepatch_op)(void *be, void *h, char op, struct campaign_patch_out *out);
	void (*livepatch_info)(void *be, void *h, struct klp_info *info);
};

/*
 * What a campaign writes (events, trace, report) goes through a sink, so the
 * engine needs no JSON library: the command's sink (patcher/cli/
 * campaign_files.c) writes the files with json-c.  Fields are key/value
 * lists; the sink is called with the campaign's output lock held.
 */
enum campaign_kv_type { CAMPAIGN_KV_STR, CAMPAIGN_KV_U64, CAMPAIGN_KV_I64, CAMPAIGN_KV_BOOL,
			CAMPAIGN_KV_DBL };

struct campaign_kv {
	const char *key;
	enum campaign_kv_type type;
	union {
		const char *s;
		uint64_t u;
		int64_t i;
		bool b;
		double d;
	};
};

#define KV_S(k, v)	{ .key = (k), .type = CAMPAIGN_KV_STR, .s = (v) }
#define KV_U(k, v)	{ .key = (k), .type = CAMPAIGN_KV_U64, .u = (v) }
#define KV_I(k, v)	{ .key = (k), .type = CAMPAIGN_KV_I64, .i = (v) }
#define KV_B(k, v)	{ .key = (k), .type = CAMPAIGN_KV_BOOL, .b = (v) }
#define KV_D(k, v)	{ .key = (k), .type = CAMPAIGN_KV_DBL, .d = (v) }

struct campaign_sink_ops {
	int (*open)(struct campaign *c, char *msg, size_t len);
	/* one line of --events: t_us, type, then kv */
	void (*event)(struct campaign *c, uint64_t t_us, const char *type,
		      const struct campaign_kv *kv, size_t n);
	/*
	 * One trace event: ph 'X' (a slice, dur_us), 'i' (a thread instant),
	 * 'C' (a counter, kv the series), 'M' (thread name in name).
	 * tid 0 is the controller, 1 + N vCPU N.
	 */
	void (*trace)(struct campaign *c, char ph, const char *name, const char *cat, int tid,
		      double ts_us, double dur_us, const struct campaign_kv *kv, size_t n);
	/* --json, after everything was undone; 0 or -1 */
	int (*report)(struct campaign *c, int exit_code);
	void (*close)(struct campaign *c);
};

/* The command's sink: --events, --trace and --json files, with json-c. */
extern const struct campaign_sink_ops campaign_files;

struct campaign_opts {
	const char *script;		/* path */
	const char *image;		/* NULL: the default */
	/* CLI overrides; 0 / -1 = not given */
	unsigned int vcpus, tasks;
	int scenario;
	const char *json, *events, *trace;
	unsigned int timeout_s;		/* 0 = none */
	bool quiet;
	/* Lua instructions a handler may run per hit (0: default) */
	uint64_t handler_insn_limit;
	const char *command;		/* the command line, for the report */
	int (*scenario_parse)(const char *name);	/* campaign.scenario; -1 if unknown */
	const struct campaign_sink_ops *sink;		/* NULL: write nothing */
	/* vm:run_for() longer than a few seconds: a status line about every second */
	void (*progress)(const char *line);
	void (*progress_clear)(void);
};

/*
 * Run a campaign script against a backend.  Returns the exit code
 * (enum vmpoke_exit); every probe and patch is undone, and the report
 * written, before it returns.
 */
int campaign_run(const struct campaign_opts *o, const struct campaign_ops *ops, void *be);

/* Called by a backend for every hit of a probe, on any thread. */
enum campaign_verdict campaign_probe_hit(struct campaign_probe *cp, struct campaign_hit *h);

/* Backend: one protocol phase finished (trace and events). */
void campaign_phase_done(struct campaign *c, const struct campaign_phase *ph);

/* Async-signal-safe: stop the campaign (SIGINT/SIGTERM). */
void campaign_signal(int sig);

/* `vmpoke campaign` arguments (cmd_campaign.c); 0 or VMPOKE_EXIT_USAGE. */
int campaign_parse_args(int argc, char **argv, struct campaign_opts *o, bool *help);

/*
 * `vmpoke bench probe`'s int3_lua_ns: a Lua handler (handler is Lua source
 * that returns a function, e.g. "return function(ctx) end") run per hit
 * exactly as a campaign runs one (campaign_bench.c).
 */
struct campaign_bench;
struct campaign_bench *campaign_bench_new(const char *handler, char *msg, size_t len);
enum campaign_verdict campaign_bench_hit(struct campaign_bench *b, struct campaign_hit *h);
bool campaign_bench_failed(struct campaign_bench *b, char *msg, size_t len);
void campaign_bench_free(struct campaign_bench *b);

/* The real backend (campaign_kvm.c). */
extern const struct campaign_ops campaign_kvm_ops;
void *campaign_kvm_new(void);

#endif /* VMPOKE_CAMPAIGN_H */
