/* SPDX-License-Identifier: MIT */
/*
 * campaign_internal.h - the campaign core's pieces (see include/campaign.h):
 *
 *   campaign.c         lifetime, the interpreter hand-off, run_for, undo
 *   campaign_lua.c     the Lua API: vm, vmpoke, expect, probe objects
 *   campaign_where.c   "sym+off" parsing, symbolizing, globs (pure)
 *   campaign_encode.c  vmpoke.jmp/call/nop encoders (pure)
 *   campaign_out.c     events and trace, through the sink (hit sampling)
 *   campaign_report.c  the exit code and the summary table
 *   cli/campaign_files.c  the sink: --events, --trace, --json with json-c
 *   campaign_kvm.c     the real backend: KVM, patcher, probe engine
 */
#ifndef VMPOKE_CAMPAIGN_INTERNAL_H
#define VMPOKE_CAMPAIGN_INTERNAL_H

#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "campaign.h"

#define CAMPAIGN_DEFAULT_INSN_LIMIT	(10ull * 1000 * 1000)
#define CAMPAIGN_HOOK_EVERY		1000	/* Lua instructions per count hook */
#define CAMPAIGN_HIT_SAMPLE_PER_S	1000

struct campaign_probe {
	struct campaign *c;
	void *h;			/* backend handle; NULL if refused */
	char where[128];		/* as the script gave it */
	uint64_t addr;
	const char *kind;		/* what it is: "int3", "optimized" */
	const char *want_kind;		/* what the script asked: "auto", "optimized", "int3" */
	char kind_refused[CAMPAIGN_REASON_LEN];	/* why it stayed INT3, "" if it did not */
	char refused[CAMPAIGN_REASON_LEN];
	int handler_ref;		/* LUA_NOREF: count only */
	bool has_handler;		/* handler_ref is a function (for the backend) */
	uint64_t max_hits;
	atomic_bool remove_req;		/* p:remove() from a handler: deferred */
	atomic_bool handler_off;	/* the handler raised an error */
	bool removed;
	struct campaign_counts final;	/* counts at removal */
	uint8_t orig;			/* the byte under the probe before it */
	bool have_orig;
	uint64_t seq;			/* creation order among probes and batches */
};

struct campaign_batch {
	struct campaign_site *sites;
	size_t n;
	bool keep, applied, undone;
	uint64_t syncs;
	double us;
	size_t nr_refused;
	char error[CAMPAIGN_REASON_LEN];
	uint64_t seq;
};

/*
 * A static key (value: enabled) or static call (value: func) the script
 * changed: its first value, put back on exit, and the last value the script
 * set (kept through the undo, for the report).
 */
enum campaign_kind { CAMPAIGN_KIND_KEY, CAMPAIGN_KIND_CALL };

struct campaign_changed {
	enum campaign_kind kind;
	char name[64];
	uint64_t orig;
	uint64_t cur;			/* the script's last; the undo leaves it */
};

/* A vm:livepatch(): the backend's handle and what the report needs of it. */
struct campaign_livepatch {
	void *h;
	size_t n;
	char *old[KLP_MAX_FUNCS], *new[KLP_MAX_FUNCS];	/* as created */
	enum klp_state before_restore;	/* when the exit's undo began */
};

struct campaign_expect {
	char *message;
	bool ok;
	int line;
};

/* Who owns the Lua state right now. */
enum campaign_interp {
	INTERP_BUSY = 0,	/* the script (controller thread) */
	INTERP_IDLE,		/* the script waits in vm:run_for(): hits may take it */
	INTERP_HANDLER,		/* a probe handler on some vCPU thread */
};

struct campaign_out {
	pthread_mutex_t lock;		/* vCPU threads write hit events too */
	FILE *events, *trace;		/* the sink's */
	uint64_t window_s;		/* hit sampling: the current second */
	uint64_t window_hits;
	uint64_t hits_dropped;		/* not written: above the sampling rate */
};

struct campaign {
	const struct campaign_opts *o;
	const struct campaign_ops *ops;
	void *be;
	lua_State *L;
	lua_State *hL;			/* the thread probe handlers run on */
	const char *script_name;

	struct campaign_boot_cfg cfg;
	bool booted, boot_failed;
	bool boot_guest_fault;		/* the guest faulted before it was ready */
	int boot_code;			/* exit code if boot failed */

	struct campaign_probe **probes;
	size_t nr_probes, cap_probes;
	struct campaign_batch **batches;
	size_t nr_batches, cap_batches;
	struct campaign_expect *expects;
	size_t nr_expects, cap_expects;
	struct campaign_changed *changed;	/* keys and calls, in order */
	size_t nr_changed;
	struct campaign_livepatch *livepatches;	/* of vm:livepatch(), in order */
	size_t nr_livepatches;
	uint64_t seq;

	atomic_int interp;		/* enum campaign_interp */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool claiming;
	bool in_handler;		/* only the interpreter's owner reads it */
	uint64_t handler_insns, insn_limit;
	char handler_error[512];	/* first handler error, raised by run_for */
	atomic_bool handler_failed;
	atomic_bool service;		/* a handler asked for a deferred remove */

	uint64_t t0_ns;
	struct campaign_out out;
	struct campaign_guest_stats stats;	/* last sample */
	bool have_stats;

	bool script_error, host_error, timed_out, restored;
	char error[1024];
};

/* campaign.c */
uint64_t campaign_now_ns(void);
uint64_t campaign_t_us(struct campaign *c);
int campaign_boot(struct campaign *c, char *msg, size_t len);
void campaign_claim(struct campaign *c);
void campaign_release(struct campaign *c);
int campaign_run_for(struct campaign *c, double seconds, char *msg, size_t len);
int campaign_probe_remove(struct campaign *c, struct campaign_probe *cp, char *msg, size_t len);
void campaign_probe_refresh(struct campaign *c, struct campaign_probe *cp,
			    struct campaign_counts *cnt);
bool campaign_stopping(void);
bool campaign_signalled(void);
int campaign_add_probe(struct campaign *c, struct campaign_probe *cp);
int campaign_add_batch(struct campaign *c, struct campaign_batch *b);
/* A later batch, still applied, over [addr, addr + len)? */
bool campaign_covered_later(struct campaign *c, uint64_t addr, size_t len, uint64_t seq);
int campaign_add_expect(struct campaign *c, const char *msg, bool ok, int line);

/* campaign_kinds.c: vm:static_keys(), vm:static_key(name) */
int campaign_lua_static_keys(lua_State *L);
int campaign_lua_static_key(lua_State *L);
int campaign_lua_static_calls(lua_State *L);
int campaign_lua_static_call(lua_State *L);
/* {ok=, sites=, syncs=, us=, error=?} of a key flip or call update. */
void campaign_push_kind_result(lua_State *L, const struct campaign_patch_out *out,
			       size_t sites);
/*
 * The end of a kind's operation (a key flip, a call update, a livepatch
 * op): its trace slice from t0 (own fields and ok), its --events line of
 * type (own fields, ok, syncs, us, error) and the result above on the Lua
 * stack.  At most CAMPAIGN_KIND_KV own fields.
 */
#define CAMPAIGN_KIND_KV	8
void campaign_kind_done(lua_State *L, struct campaign *c, const char *type, const char *slice,
			uint64_t t0, const struct campaign_kv *own, size_t n,
			const struct campaign_patch_out *out, size_t sites);
/* A key or call object: userdata holding name, metatable mt with __index. */
void campaign_push_kind_object(lua_State *L, const char *name, const char *mt,
			       lua_CFunction index);
/* Record that the script set kind name from orig to cur. */
int campaign_track(struct campaign *c, enum campaign_kind kind, const char *name,
		   uint64_t orig, uint64_t cur);
/* Put every key and call back, newest first; false if one is not. */
bool campaign_kinds_undo(struct campaign *c);
/* What ch holds in the guest now (enabled 0/1, or the call's target); 0 or -1. */
int campaign_kind_now(struct campaign *c, const struct campaign_changed *ch, uint64_t *val);
/* campaign_scall.c: vm:static_calls(), vm:static_call(name) */
/* campaign_livepatch.c: vm:livepatch{...}; undo: disable each, false if one stays */
int campaign_lua_livepatch(lua_State *L);
bool campaign_livepatch_undo(struct campaign *c);
void campaign_livepatch_free(struct campaign *c);

/* campaign_lua.c */
struct campaign *campaign_lua_vm(lua_State *L);		/* `vm` of method, booted */
struct campaign *campaign_lua_booted(lua_State *L);	/* any method, booted */
void campaign_lua_not_in_handler(lua_State *L, struct campaign *c, const char *fn);
lua_State *campaign_lua_new(struct campaign *c);
enum campaign_verdict campaign_lua_handler(struct campaign *c, struct campaign_probe *cp,
					   struct campaign_hit *h);
void campaign_lua_hook(lua_State *L, lua_Debug *ar);

/* campaign_where.c */
/* "sym", "sym+0x1a", "sym+26", "0x401000" or "4198400"; msg names the bad part. */
int campaign_parse_where(const struct symtab *st, const char *s, uint64_t *addr,
			 char *msg, size_t len);
/* "sym+0x1a", "sym" at offset 0, "0x..." outside every symbol. */
void campaign_symbolize(const struct symtab *st, uint64_t addr, char *buf, size_t len);
/* Function and object symbols only (nm T t D d B b R r). */
bool campaign_sym_listed(char type);

/* campaign_encode.c */
int campaign_encode_rel32(uint8_t op, uint64_t from, uint64_t to, uint8_t out[5],
			  char *msg, size_t len);
int campaign_encode_nop(unsigned int n, uint8_t *out, char *msg, size_t len);
/* Capstone AT&T text of one instruction at addr; length or 0. */
size_t campaign_disasm_one(const uint8_t *code, size_t size, uint64_t addr,
			   char *text, size_t textlen);

/* campaign_out.c */
int campaign_out_open(struct campaign *c, char *msg, size_t len);
void campaign_out_close(struct campaign *c);
void campaign_event(struct campaign *c, const char *type, const struct campaign_kv *kv, size_t n);
void campaign_trace_threads(struct campaign *c, unsigned int nr_vcpus);
void campaign_trace_slice(struct campaign *c, const char *name, const char *cat,
			  uint64_t start_ns, uint64_t end_ns, const struct campaign_kv *kv, size_t n);
void campaign_trace_counter(struct campaign *c, const char *name, const struct campaign_kv *kv,
			    size_t n);
void campaign_out_hit(struct campaign *c, struct campaign_probe *cp, struct campaign_hit *h,
		      enum campaign_verdict v);
#define KVN(a)	(sizeof(a) / sizeof((a)[0]))

/* campaign_report.c */
int campaign_exit_code(struct campaign *c);
void campaign_summary(struct campaign *c, FILE *f);
bool campaign_guest_faulted(const struct campaign *c);

#endif /* VMPOKE_CAMPAIGN_INTERNAL_H */
