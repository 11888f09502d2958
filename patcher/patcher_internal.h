/* SPDX-License-Identifier: MIT */
/*
 * patcher_internal.h - the pieces of the patching engine and how they fit.
 *
 *   decode.c     Capstone: function scans and the emulated instruction
 *                (pure: byte buffers in, verdicts out)
 *   emulate.c    what a trap on a live site does (pure: registers and a
 *                memory callback in, registers out)
 *   traptable.c  the live-site table the trap hook reads, RCU style
 *   site.c       poke_site_prepare(): guest memory + symbols + decode.c
 *   shadow.c     the probe-shadow check under vmm_pause()
 *   batch.c      the text_poke_bp protocol
 *   patcher.c    lifetime, stats, strings
 *
 * Built on the engine, with headers of their own: probe.c (include/probe.h),
 * campaign*.c (include/campaign.h, campaign_internal.h) and the torture
 * engine, torture.c and torture_sites.c (torture.h).
 *
 * The pure parts take no struct vm so the unit tests need no VM.
 */
#ifndef VMPOKE_PATCHER_INTERNAL_H
#define VMPOKE_PATCHER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patcher.h"
#include "vmm.h"

#define POKE_INT3		0xcc
#define POKE_MAX_FUNC_SIZE	(1u << 20)	/* refuse to scan larger "functions" */

/* --- decode.c ----------------------------------------------------------- */

/* What a scan of the containing function found about [addr, addr + len). */
struct decode_scan {
	bool at_boundary;	/* an instruction starts at addr */
	bool end_boundary;	/* one starts at addr + len, or the function ends there */
	bool complete;		/* the whole function decoded */
	unsigned int insns;	/* instructions starting in [addr, addr + len),
				 * INT3 padding after a JMP/RET not counted */
	uint64_t stop_at;	/* first undecodable byte, if !complete */
	uint64_t untrusted_at;	/* the branch decoding stopped after, when
				 * Capstone reads it otherwise than the CPU
				 * (so !complete); or 0 */
	uint64_t int3_at;	/* an int3 instruction starting in the range, or 0 */
	uint64_t jump_from;	/* a direct branch targeting (addr, addr + len) */
	uint64_t jump_to;
	uint64_t call_at;	/* a CALL in the range returning inside it, or 0 */
	uint64_t indirect_at;	/* an indirect JMP in the function, or 0 */
};

/*
 * Decode code[0..size) (the function, loaded at base) from its start and
 * describe the candidate range.  0, or -ENOMEM if Capstone cannot start.
 */
int decode_scan_function(const uint8_t *code, size_t size, uint64_t base,
			 uint64_t addr, size_t len, struct decode_scan *out);

uint64_t decode_jump_into(const uint8_t *code, size_t size, uint64_t base,
			  uint64_t lo, uint64_t hi, uint64_t skip_lo,
			  uint64_t skip_hi, uint64_t *target);

/*
 * Check that bytes[0..len) at addr is exactly one instruction of len (RET
 * and JMP may be padded with 0xCC).  With `emulatable`, it must also be one
 * of the forms the trap hook emulates; *emu is filled then.  Returns
 * POKE_OK, POKE_E_DECODE or POKE_E_EMULATE with the reason in why.
 */
enum poke_err decode_one(const uint8_t *bytes, size_t len, uint64_t addr,
			 bool emulatable, struct poke_emu *emu,
			 char *why, size_t whylen);

/*
 * With a separate `emulate` instruction (static_call style) the written
 * bytes need only be whole instructions covering len exactly: this is how
 * a multi-instruction original comes back over a JMP.
 */
enum poke_err decode_whole(const uint8_t *bytes, size_t len, uint64_t addr,
			   char *why, size_t whylen);

/*
 * For a trap stub code[0..size) at base, entered with an exception frame at
 * %rsp: off[i] = the frame's offset from %rsp when an instruction starts at
 * byte i, DECODE_OFF_NONE where none starts (or no path reaches it) and
 * DECODE_OFF_CONFLICT where paths disagree.  *doorbell = the first IN
 * (the VMM's doorbell), or 0.  0 or -ENOMEM.
 */
#define DECODE_OFF_NONE		(-1)
#define DECODE_OFF_CONFLICT	(-2)
int decode_frame_offsets(const uint8_t *code, size_t size, uint64_t base,
			 int32_t *off, uint64_t *doorbell);

/* --- emulate.c ---------------------------------------------------------- */

#define POKE_FLAG_CF	(1ull << 0)
#define POKE_FLAG_PF	(1ull << 2)
#define POKE_FLAG_ZF	(1ull << 6)
#define POKE_FLAG_SF	(1ull << 7)
#define POKE_FLAG_OF	(1ull << 11)

/* The condition cc (low nibble of a Jcc opcode) under rflags. */
bool poke_cond_true(uint8_t cc, uint64_t rflags);

struct poke_cpu {
	uint64_t rip, rsp, rflags;
};

/* Guest stack access for CALL/RET; 0 or -EFAULT. */
struct poke_mem {
	int (*read)(void *ctx, uint64_t gva, void *buf, size_t len);
	int (*write)(void *ctx, uint64_t gva, const void *buf, size_t len);
	void *ctx;
};

/*
 * Emulate emu as if executed at addr.  0, or -EFAULT if the stack access
 * faulted: then rip = addr and rsp is unchanged (see emulate.c for why).
 */
int poke_emulate(const struct poke_emu *emu, uint64_t addr,
		 struct poke_cpu *cpu, const struct poke_mem *mem);

/*
 * Every kind, on a whole register file (probes).  0, or -EFAULT if a stack
 * access faulted: then regs are unchanged and rip is still addr + 1.
 */
int poke_emulate_regs(const struct poke_emu *emu, uint64_t addr,
		      struct kvm_regs *regs, const struct poke_mem *mem);
/* The general-purpose register with hardware number n (0..15). */
__u64 *poke_gpr(struct kvm_regs *regs, unsigned int n);

/* --- traptable.c -------------------------------------------------------- */

struct probe;

/* What a trap at a live entry's address is for. */
enum poke_live_role {
	LIVE_SITE = 0,		/* a batch site: emulate emu (transient) */
	LIVE_PROBE,		/* a probe's head: probe_hit() (persistent) */
	LIVE_PROBE_RET,		/* the INT3 closing a probe's out-of-line slot:
				 * resume at emu.target (uprobes' IP fix) */
	LIVE_PROBE_DOORBELL,	/* just after an optimized probe's detour rang
				 * VMPOKE_HC_PROBE: probe_hit() for its probe */
};

struct poke_live {
	uint64_t addr;
	uint8_t len;
	uint8_t role;			/* enum poke_live_role */
	uint8_t old[POKE_MAX_LEN];	/* for site.c's recovery of our INT3s */
	struct poke_emu emu;
	struct probe *probe;		/* LIVE_PROBE, LIVE_PROBE_RET, LIVE_PROBE_DOORBELL */
};

/* Immutable once published. */
struct poke_snapshot {
	struct poke_snapshot *next_retired;	/* patching side only */
	uint64_t retired_seq;
	size_t n;
	struct poke_live e[];			/* sorted by addr */
};

struct poke_table {
	_Atomic(struct poke_snapshot *) cur;	/* read by trap hooks */
	struct poke_snapshot *retired;		/* awaiting a grace period */
	uint64_t retire_seq;
	uint64_t freed;				/* snapshots reclaimed (tests) */
};

void traptable_init(struct poke_table *t);
/* Frees everything: only when no hook can run any more. */
void traptable_destroy(struct poke_table *t);
/* Publish cur plus these sites / cur minus sites at these addresses. */
int traptable_add(struct poke_table *t, const struct poke_site *sites, size_t n);
int traptable_remove(struct poke_table *t, const struct poke_site *sites, size_t n);
/* The same for ready-made entries (probes) and bare addresses. */
int traptable_add_live(struct poke_table *t, const struct poke_live *add, size_t n);
int traptable_remove_addrs(struct poke_table *t, const uint64_t *addrs, size_t n);
/* A batch site's entry (role LIVE_SITE). */
void traptable_live_of(const struct poke_site *site, struct poke_live *e);
/* The entry whose INT3 byte is at addr in snapshot s, or NULL. */
const struct poke_live *traptable_lookup(const struct poke_snapshot *s, uint64_t addr);
/* How the hook files a trap; see traptable_classify() for the ordering. */
enum trap_class { TRAP_LIVE, TRAP_GHOST, TRAP_FOREIGN };
typedef int (*trap_read_byte_fn)(void *ctx, uint64_t addr, uint8_t *byte);
enum trap_class traptable_classify(struct poke_table *t, uint64_t addr,
				   bool allow_ghost, bool at_insn_start,
				   trap_read_byte_fn read_byte, void *ctx,
				   const struct poke_live **live);
/* Grace periods: take a mark before vmm_sync(), reclaim after it succeeded. */
uint64_t traptable_mark(const struct poke_table *t);
void traptable_reclaim(struct poke_table *t, uint64_t mark);
size_t traptable_pending(const struct poke_table *t);
/* batch.c: one sync of the protocol; which kind of vmm sync: poke_sync(). */
enum poke_sync_kind {
	POKE_SYNC_PHASE,	/* between phases: a core sync */
	POKE_SYNC_DRAIN,	/* before entries retire: drains traps where it can */
	POKE_SYNC_GRACE,	/* before freeing what a hook may hold: acknowledged */
};
int poke_sync(struct patcher *p, enum poke_sync_kind kind, int *laggard);
/* Enough retired snapshots wait that the next sync should free them. */
bool traptable_reclaim_due(const struct poke_table *t);

/* --- arm.c ------------------------------------------------------------- */

/*
 * Arm: publish e, write INT3 at e->addr, sync (the head stays INT3).
 * Disarm: write e->old[0] back, sync, retire e, sync.  The _locked forms
 * expect p->lock held.  `where` names the entry in messages.  The last
 * sync of a disarm, and of a failed arm, is acknowledged, so the caller
 * may free what e points to afterwards; except after POKE_E_SYNC, where a
 * vCPU that did not acknowledge may still hold it.
 */
enum poke_err poke_arm(struct patcher *p, const struct poke_live *e,
		       const char *where, char *msg, size_t msglen);
enum poke_err poke_disarm(struct patcher *p, const struct poke_live *e,
			  const char *where, char *msg, size_t msglen);
enum poke_err poke_arm_locked(struct patcher *p, const struct poke_live *e,
			      const char *where, char *msg, size_t msglen);
enum poke_err poke_disarm_locked(struct patcher *p, const struct poke_live *e,
				 const char *where, char *msg, size_t msglen);
enum poke_err poke_rewrite_locked(struct patcher *p, uint64_t addr, const uint8_t *bytes,
				  size_t len, const char *where, char *msg, size_t msglen);
/* Replace the entry at e->addr in one publication (traptable.c). */
int traptable_replace(struct poke_table *t, const struct poke_live *e);

/*
 * Where the exception frame is inside a #BP stub (VMPOKE_SYM_BP_ENTRY /
 * _HANDLER), decoded once from the guest's text (shadow.c).
 */
struct shadow_stub {
	uint64_t start, size;
	uint64_t doorbell;	/* the IN; 0 if none */
	int32_t *off;		/* per byte: decode_frame_offsets() */
};

/* --- the patcher -------------------------------------------------------- */

struct patcher {
	struct vm *vm;
	struct patcher_opts opts;
	/*
	 * Serializes batches and site preparation (patching threads only).
	 * The trap hook never takes it: see traptable.c.
	 */
	pthread_mutex_t lock;
	struct poke_table table;
	atomic_bool no_ghost;		/* POKE_INJECT_NO_GHOST */
	atomic_uint_fast64_t patches, batches, syncs, core_syncs;
	atomic_uint_fast64_t trap_hits, ghost_traps, foreign_traps;
	atomic_uint_fast64_t shadow_retries, shadow_aborts, emu_faults;
	enum poke_method cpl0_method;	/* for sites in kernel text */
	uint64_t user_start, user_end;	/* CPL3 task text; empty: all CPL0 */
	bool stubs_decoded;		/* under lock */
	/*
	 * Probes (probe.c): set under lock before the first probe entry is
	 * published, freed only by patcher_destroy() after its final sync.
	 */
	struct probe_state *probes;
	struct shadow_stub stubs[2];	/* #BP entry, #BP handler */
};

void shadow_free(struct patcher *p);

struct poke_batch {
	struct patcher *p;
	struct poke_site *sites;
	size_t n, cap;
	void (*commit)(void *opaque);
	void *commit_opaque;
};

enum vmm_trap_verdict traptable_hook(struct vmm_trap *trap, void *opaque);

/* "sym+0xoff" for addr, or "0x..." (site.c). */
void site_where(struct patcher *p, uint64_t addr, char *buf, size_t len);
/*
 * Put the original bytes of our live entries (sites, probe heads) back
 * into code[0..size), a copy of guest memory at base (kprobes'
 * recover_probed_instruction()).  Caller holds p->lock.
 */
void site_recover(struct patcher *p, uint8_t *code, uint64_t base, size_t size);

/* The probe engine (probe.c): a trap on a probe's head, and teardown. */
struct probe_state;
enum vmm_trap_verdict probe_hit(struct patcher *p, const struct poke_live *e,
				struct vmm_trap *t);
void probe_destroy_all(struct patcher *p);	/* disarm what is armed */
void probe_free_all(struct patcher *p);		/* after the final sync */

/*
 * Probe-shadow check of the multi-instruction sites among sites[0..n)
 * (shadow.c).  POKE_OK, POKE_E_SHADOW_BUSY with msg naming who sat where
 * after opts.shadow_retries, or another error from the VMM.
 */
/*
 * The busy-range check (shadow.c), for any ranges: pause every vCPU, look
 * at every context - vCPU RIPs, the CPL0 frame (or the #BP stub's frame),
 * every runnable task's saved RIP - and resume.  A context is inside a
 * range when its RIP is in [lo, hi); a #BP frame parked before the
 * doorbell with RIP == own_int3 (non-zero) is not.  0: all clear; 1: some
 * range is busy (its .busy set; msg lists every culprit and culprits
 * counts them); -1: the guest's task table failed validation, -3: out
 * of memory (msg says why); -2: a vCPU did not pause.
 */
struct busy_range {
	uint64_t lo, hi;
	uint64_t own_int3;
	char what[128];		/* "site foo+0x6 (5 bytes)", "slot 3 of foo+0x4" */
	bool busy;		/* out */
};
int busy_scan(struct patcher *p, struct busy_range *r, size_t n,
	      char *msg, size_t msglen, unsigned int *culprits);

enum poke_err shadow_check(struct patcher *p, const struct poke_site *sites,
			   size_t n, char *msg, size_t msglen);

/*
 * The same check for every site when `every` (stop-the-world sites: no
 * context may be inside any of them), and, when nothing is inside, fn(ctx)
 * runs while the world is still stopped: the writes of stop-the-world.
 */
enum poke_err shadow_run(struct patcher *p, const struct poke_site *sites,
			 size_t n, bool every, enum poke_err (*fn)(void *ctx),
			 void *ctx, char *msg, size_t msglen);

/* Does rip lie strictly inside the shadow (addr, addr + len)? */
static inline bool shadow_contains(uint64_t addr, unsigned int len, uint64_t rip)
{
	return rip > addr && rip < addr + len;
}

#endif /* VMPOKE_PATCHER_INTERNAL_H */
