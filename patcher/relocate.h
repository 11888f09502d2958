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
 * with *reason: "not_code", "rip_rel_unreachable", "branch_rel8",
 * "unsupported" (a 66-prefixed, rel16 branch), "too_long", "no_decoder".
 */
int relocate_insn(const uint8_t *in, size_t len, uint64_t from, uint64_t to,
		  uint8_t *out, size_t outcap, size_t *outlen, const char **reason);

/* kprobes' can_boost(): may the copy end in a JMP back instead of an INT3? */
bool relocate_can_boost(const uint8_t *in, size_t len);

#endif /* VMPOKE_RELOCATE_H */
