/* SPDX-License-Identifier: MIT */
/*
 * probe_internal.h - the pieces of the INT3 probe engine:
 *
 *   probe_insn.c  how a probe runs the instruction it replaced (pure)
 *   relocate.c    one instruction moved to another address (pure)
 *   xol.c         the VMM-owned slot region (ABI: __xol_start..__xol_end)
 *   probe.c       probe_add/remove/reap and the hit path in the trap hook
 *   shadow.c      the busy-range check a slot must pass before reuse
 */
#ifndef VMPOKE_PROBE_INTERNAL_H
#define VMPOKE_PROBE_INTERNAL_H

#include "patcher_internal.h"
#include "probe.h"

#define PROBE_SLOT_SIZE		32	/* 15-byte insn + JMP rel32, rounded up */

/* --- probe_insn.c ------------------------------------------------------- */

enum probe_exec {
	PROBE_EXEC_EMULATE = 0,		/* emu, in the VMM */
	PROBE_EXEC_SLOT,		/* out of line, in an XOL slot */
};

struct probe_insn {
	uint8_t len;
	uint8_t bytes[16];		/* the original instruction */
	enum probe_exec exec;
	struct poke_emu emu;		/* PROBE_EXEC_EMULATE */
	bool boost;			/* slot ends in JMP back (else INT3) */
	bool rip_relative;
	char text[192];			/* "mnemonic operands", for messages */
};

/*
 * Decode the instruction at bytes[0..avail) (address addr) and decide how
 * a probe runs it.  0, or -1 with *reason from probe_reasons[] and detail
 * naming the instruction.
 */
int probe_insn_decode(const uint8_t *bytes, size_t avail, uint64_t addr,
		      struct probe_insn *pi, const char **reason,
		      char *detail, size_t dlen);

/*
 * The slot bytes for pi at `slot`: relocated copy, then JMP back (boost)
 * or INT3 at out + *ret_at.  0, or -1 with *reason.
 */
int probe_insn_slot(const struct probe_insn *pi, uint64_t addr, uint64_t slot,
		    uint8_t *out, size_t outcap, size_t *outlen, size_t *ret_at,
		    const char **reason);

/* --- xol.c -------------------------------------------------------------- */

enum xol_state { XOL_FREE = 0, XOL_USED, XOL_PENDING };

struct probe_xol {
	bool ok;			/* the image has a usable region */
	uint64_t base, end;
	unsigned int nslots;
	uint8_t *state;			/* per slot: free, used, pending */
	uint64_t *ret_entry;		/* per pending slot: its INT3's entry, 0 if none */
};

int xol_init(struct patcher *p, struct probe_xol *x, char *msg, size_t msglen);
void xol_free(struct probe_xol *x);
bool xol_contains(const struct probe_xol *x, uint64_t addr);
uint64_t xol_slot_addr(const struct probe_xol *x, int slot);
int xol_alloc(struct patcher *p, struct probe_xol *x, char *msg, size_t msglen);
void xol_release(struct probe_xol *x, int slot, uint64_t ret_entry);
void xol_unuse(struct probe_xol *x, int slot);
int xol_reclaim(struct patcher *p, struct probe_xol *x, char *msg, size_t msglen);
unsigned int xol_count(const struct probe_xol *x, int state);

/* --- probe.c: the engine's state ---------------------------------------- */

/*
 * A SKIP that resumed a context right at a probe: the next hit of that
 * context - same vCPU, same %rsp (tasks have their own stacks) - at that
 * address counts as missed.  Keyed by context, not just by vCPU, because
 * the timer may preempt the task before it reaches the INT3 and another
 * task of the vCPU may hit probes first.
 */
#define PROBE_SKIP_SLOTS	VMPOKE_MAX_TASKS

struct probe_skip {
	uint64_t addr, rsp;
};

struct probe_vcpu {
	bool in_handler;	/* this vCPU's thread is inside a handler */
	unsigned int next;	/* round robin over skip[] */
	struct probe_skip skip[PROBE_SKIP_SLOTS];
};

struct probe_state {
	struct probe *list;		/* every probe ever added (controller) */
	struct probe_xol xol;
	bool xol_tried;
	char xol_err[192];
	struct probe_vcpu pv[VMPOKE_MAX_VCPUS];	/* each touched by its own vCPU */
};

struct optprobe_detour;

struct probe {
	struct patcher *p;
	struct probe *next;
	uint64_t addr;
	char where[96];
	struct probe_opts opts;
	struct probe_insn insn;
	int slot;			/* XOL slot, -1 if none */
	uint64_t slot_addr;
	uint64_t ret_entry;		/* the slot's closing INT3, 0 if boosted */
	struct poke_live head;
	/* optimized probes (optprobe.c) */
	atomic_uint_fast64_t via;	/* non-0: INT3 hits resume here (the detour's copy) */
	/* the live detour (NULL: INT3), and older ones, freed once empty */
	_Atomic(struct optprobe_detour *) detour;
	_Atomic(struct optprobe_detour *) retired;
	uint8_t region_len;		/* displaced bytes while optimized */
	char opt_refused[128];		/* why it stayed INT3: "jump_into_range@+0x3" */
	atomic_bool removed;
	atomic_uint_fast64_t hits, missed;
	atomic_uint_fast64_t per_vcpu[VMPOKE_MAX_VCPUS];
};

/* --- optprobe.c: optimized probes ------------------------------------- */

#define OPTPROBE_CODE_SIZE	256	/* counting prologue + relocated region */
#define OPTPROBE_SIZE		(OPTPROBE_CODE_SIZE + 8 * VMPOKE_MAX_VCPUS)
#define OPTPROBE_SLOTS		(OPTPROBE_SIZE / PROBE_SLOT_SIZE)

enum optprobe_state { DETOUR_LIVE = 0, DETOUR_RETIRED, DETOUR_FREED };

struct optprobe_detour {
	struct optprobe_detour *next;	/* on pr->retired */
	int slot;			/* first XOL slot */
	uint64_t base;			/* guest address: code, then counters */
	uint64_t body;			/* the relocated region (INT3 hits go here) */
	uint64_t doorbell;		/* with a handler: the entry after the doorbell, else 0 */
	_Atomic int state;
	uint64_t final[VMPOKE_MAX_VCPUS]; /* the counters, copied when freed */
};

/*
 * Try to optimize an armed INT3 probe (under p->lock): 0 optimized, -1
 * with *reason (a probe_reasons[] name) and pr->opt_refused filled; the
 * probe stays an armed INT3 probe either way.
 */
int optprobe_optimize_locked(struct patcher *p, struct probe *pr, const uint8_t *code,
			     uint64_t fnaddr, size_t fnsize, const char **reason,
			     char *detail, size_t dlen);
/* Back to INT3 (under p->lock): the detour is retired, freed when empty. */
int optprobe_unoptimize_locked(struct patcher *p, struct probe *pr, char *msg,
			       size_t msglen);
/* Free retired detours that no context is inside any more. */
void optprobe_reap_locked(struct patcher *p, struct probe *pr);
/* Hits the probe's detours counted (live, retired and freed). */
void optprobe_counts(const struct probe *pr, uint64_t *per_vcpu, uint64_t *total);
/* The counting prologue for a detour at base (exposed for the unit test). */
size_t optprobe_prologue(uint64_t base, uint8_t *out, size_t outcap);
/* XOL: n contiguous FREE slots (reclaiming PENDING ones first); -1 if none. */
int xol_alloc_n(struct patcher *p, struct probe_xol *x, unsigned int n, char *msg,
		size_t msglen);

/* --- probe.c (for tests) ----------------------------------------------- */

/* Every probe ever added (controller thread, p->lock). */
struct probe *probe_list(struct patcher *p);
/* The patcher's XOL region (NULL before the first probe_add). */
struct probe_xol *probe_xol_of(struct patcher *p);
/* How the probe runs its instruction, and its slot (0 if none). */
const struct probe_insn *probe_insn_of(const struct probe *pr);
uint64_t probe_slot_of(const struct probe *pr);

#endif /* VMPOKE_PROBE_INTERNAL_H */
