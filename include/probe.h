/* SPDX-License-Identifier: MIT */
/*
 * probe.h - INT3 probes on guest code (kprobes, from outside the guest).
 *
 * A probe is a persistent trap entry beside the batch table: published
 * before its INT3 is written, its head stays INT3 until removal, and arming
 * and disarming go through the patch protocol (poke_arm()/poke_disarm()).
 * On a hit the handler runs on the vCPU's own thread, then the original
 * instruction runs without its bytes ever being put back: control flow is
 * emulated from the decoded original (kprobes' prepare_emulation() set),
 * everything else runs out of line in a slot of the VMM-owned region of
 * the guest ABI (VMPOKE_XOL_GPA), RIP-relative operands re-encoded by
 * patcher/relocate.c.  See docs/probes.md.
 *
 * Threads: probe_add/remove/reap run on a controller thread (they sync);
 * the handler runs on vCPU threads, inside the trap hook.
 */
#ifndef VMPOKE_PROBE_H
#define VMPOKE_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "patcher.h"
#include "vmpoke_abi.h"

enum probe_kind { PROBE_KIND_INT3 = 0, PROBE_KIND_OPTIMIZED, PROBE_KIND_AUTO };

enum probe_verdict {
	PROBE_RESUME = 0,	/* run the original instruction (emulated or out of line) */
	PROBE_SKIP,		/* resume at ctx->regs->rip without running it (kprobes pre_handler returning 1) */
	PROBE_MISSED,		/* the handler could not run now: count as missed, run the original */
};

struct probe;

struct probe_hit_ctx {
	struct probe *probe;
	unsigned int vcpu;
	int task;			/* guest task id, -1 if not known */
	struct kvm_regs *regs;		/* at the probe address; the handler may modify them */
};

/* Runs on the vCPU thread inside the trap hook: it must not sync, pause, or call probe_add/remove. */
typedef enum probe_verdict (*probe_handler_t)(struct probe_hit_ctx *ctx, void *opaque);

struct probe_opts {
	probe_handler_t handler;	/* NULL: count only */
	void *opaque;
	uint64_t max_hits;		/* 0: unlimited; after max_hits the probe stops firing and is removed by the controller at its next probe_reap()/probe_* call */
	/*
	 * INT3; OPTIMIZED or AUTO (the same): an INT3 probe first, then a
	 * JMP to a counting detour where the site allows (no exit per hit);
	 * where not, it stays INT3 and probe_opt_refusal() names the rule.
	 */
	enum probe_kind kind;
};

struct probe_counts { uint64_t hits, missed; uint64_t per_vcpu[VMPOKE_MAX_VCPUS]; };

/*
 * NULL on refusal: *reason = a name from ONE list of refusal reasons
 * (probe_reasons[] below), msg = "WHERE: reason: detail".
 */
struct probe *probe_add(struct patcher *p, uint64_t addr, const struct probe_opts *o,
			const char **reason, char *msg, size_t msglen);
int probe_remove(struct probe *pr, char *msg, size_t msglen);	/* controller thread only */
void probe_reap(struct patcher *p);				/* removes probes that reached max_hits */
void probe_counts(const struct probe *pr, struct probe_counts *c);
uint64_t probe_addr(const struct probe *pr);
enum probe_kind probe_kind_of(const struct probe *pr);
bool probe_removed(const struct probe *pr);
/*
 * How the probe runs the instruction it replaced: "emulated" (in the VMM,
 * one exit per hit), "boosted" (out of line, the slot jumps back: one
 * exit) or "stepped" (out of line, the slot ends in an INT3: two exits).
 */
const char *probe_exec_of(const struct probe *pr);
/*
 * Why a probe asked to be optimized stayed INT3: a probe_reasons[] name,
 * "jump_into_range@+0x3" for that rule; "" if it was optimized (or asked
 * for INT3).
 */
const char *probe_opt_refusal(const struct probe *pr);
/*
 * Optimize an INT3 probe now / turn an optimized one back into an armed
 * INT3 probe (controller thread; 0, or -1 with a message).  A detour is
 * freed only when no context is inside it; its counts are kept.
 */
int probe_optimize(struct probe *pr, const char **reason, char *msg, size_t msglen);
int probe_unoptimize(struct probe *pr, char *msg, size_t msglen);

/*
 * The one list of refusal reasons (probes, and the relocator under them),
 * NULL-terminated.  Each name is a C identifier-like word a script can
 * match on.
 */
extern const char *const probe_reasons[];

#endif /* VMPOKE_PROBE_H */
