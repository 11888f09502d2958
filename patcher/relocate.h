/* SPDX-License-Identifier: MIT */
/*
 * relocate.h - the relocator (relocate.c): one instruction moved to
 * another address.  Pure; the refusal reasons are names from probe.h's
 * one list (probe_reasons[]).
 */
#ifndef VMPOKE_RELOCATE_H
#define VMPOKE_RELOCATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELOCATE_MAX_INSN	15
#define RELOCATE_MAX_OUT	16	/* a rel8 branch grows to rel32: 2 -> 6 */

/*
 * in[0..len) is one instruction at `from`; write its equivalent for
 * address `to` into out (at most outcap bytes).  0 with *outlen, or -1
 * with *reason: "not_code", "rip_rel_unreachable", "unsupported" (a
 * 66-prefixed, rel16 branch, LOOP/JrCXZ, or a branch whose target
 * Capstone reads otherwise than the CPU), "too_long", "no_decoder".
 */
int relocate_insn(const uint8_t *in, size_t len, uint64_t from, uint64_t to,
		  uint8_t *out, size_t outcap, size_t *outlen, const char **reason);

/*
 * The CPU's target of the relative JMP/Jcc/CALL/LOOP/JrCXZ/XBEGIN in[0..len) at
 * `from`: 0 with *target, or -1 if it is none of them, or 66-prefixed
 * (Intel and AMD disagree on those).  Callers compare it with Capstone's
 * operand and distrust an instruction where the two differ.
 */
int relocate_branch_target(const uint8_t *in, size_t len, uint64_t from, uint64_t *target);

/* Offset of the opcode byte: past legacy prefixes and REX bytes, in any order. */
size_t relocate_opcode_offset(const uint8_t *b, size_t len);

/* kprobes' can_boost(): may the copy end in a JMP back instead of an INT3? */
bool relocate_can_boost(const uint8_t *in, size_t len);

/*
 * A displaced region (relocate_region.c): the whole instructions at addr
 * that a JMP rel32 of `min` (5) bytes covers, moved to `to` and followed
 * by a JMP back to addr + len, for an optimized probe's detour.
 */
#define RELOCATE_REGION_MAX_INSNS	8
#define RELOCATE_REGION_MAX_OUT		(RELOCATE_REGION_MAX_INSNS * 16 + 5 + 15)

struct relocate_range {
	uint64_t lo, hi;		/* [lo, hi): a live site or probe */
};

struct relocate_region {
	size_t len;			/* displaced bytes at addr: whole instructions */
	unsigned int ninsn;
	size_t outlen;			/* bytes written at `to` */
	bool ends_in_call;		/* the last one was CALL: push + jmp */
	uint64_t bad_at;		/* a refusal's culprit instruction, 0 if none */
	uint64_t bad_off;		/* jump_into_range: the target - addr */
};

/*
 * fn[0..fnlen) is the whole function at fnaddr (our INT3s recovered); the
 * region starts at addr.  Pure: 0 with out[0..r->outlen), or -1 with
 * *reason from probe_reasons[] and detail.  Refusals: jump_into_range
 * (r->bad_off: any direct jump of the function into (addr, addr + min)),
 * indirect_jump (a jump table), leaves_function, live_site (overlap with
 * live[0..nlive)), call_in_region (a CALL that is not the last displaced
 * instruction, or an indirect CALL), not_code / not_boundary, unsupported
 * (r->bad_at: a branch Capstone reads otherwise than the CPU, past which
 * the function cannot be decoded), the probe refusals of probe_insn.c,
 * rip_rel_unreachable, too_long.
 */
int relocate_region(const uint8_t *fn, size_t fnlen, uint64_t fnaddr,
		    uint64_t addr, size_t min, uint64_t to,
		    const struct relocate_range *live, size_t nlive,
		    uint8_t *out, size_t outcap, struct relocate_region *r,
		    const char **reason, char *detail, size_t dlen);

#endif /* VMPOKE_RELOCATE_H */
