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

/* --- probe.c (for tests) ----------------------------------------------- */

/* The patcher's XOL region (NULL before the first probe_add). */
struct probe_xol *probe_xol_of(struct patcher *p);
/* How the probe runs its instruction, and its slot (0 if none). */
const struct probe_insn *probe_insn_of(const struct probe *pr);
uint64_t probe_slot_of(const struct probe *pr);

#endif /* VMPOKE_PROBE_INTERNAL_H */
