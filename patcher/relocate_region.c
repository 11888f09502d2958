// SPDX-License-Identifier: MIT
/*
 * relocate_region.c - move a displaced region (the whole instructions a
 * 5-byte JMP covers) to a detour, for optimized probes (issue 9).  Pure:
 * the function's bytes, the region's address and the destination in; the
 * relocated block, which ends in a JMP back to addr + len, or a named
 * refusal out.  The rules are optprobes' can_optimize() plus Frida's
 * relocator (docs/probes.md, "Optimized probes"):
 *
 *  - the whole function is decoded from its start (decode_scan_function):
 *    the region must start at a boundary, no direct jump from outside
 *    the region may land in (addr, addr + 5) - after the JMP those bytes
 *    are its rel32 (decode_jump_into) - and no indirect jump (a jump table) may be there,
 *    since its targets cannot be read off the code;
 *  - the region stays inside the function and off every live site;
 *  - each instruction is decided by probe_insn_decode(), the INT3 probes'
 *    own decision (one list of refusals): what a probe refuses, a detour
 *    refuses too.  Then:
 *      JMP rel8/rel32     -> E9 rel32
 *      Jcc rel8/rel32     -> 0F 8x rel32
 *      LOOP, JrCXZ        -> an island: `op +2; jmp +5; jmp rel32 target`
 *      CALL rel32         -> only as the last instruction: `push
 *                            orig_next; jmp target`, with orig_next a
 *                            64-bit literal after the block (push imm32
 *                            would sign-extend), so the callee returns to
 *                            the original code and the detour is on no
 *                            stack; anywhere else refused (the callee
 *                            would return into the middle of the region)
 *      RIP-relative       -> relocate_insn() re-encodes the displacement
 *      everything else    -> copied
 *    A branch target inside the region goes to its relocated copy, never
 *    to the original bytes; a target equal to addr goes to addr, so a loop
 *    back to the probed instruction fires the probe again.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "probe_internal.h"
#include "relocate.h"

enum rr_kind { RR_COPY, RR_RELOC, RR_JMP, RR_JCC, RR_LOOP, RR_CALL_LAST };

struct rr_insn {
	uint64_t at;
	size_t len;
	const uint8_t *bytes;
	enum rr_kind kind;
	uint8_t cond;
	uint64_t target;
	size_t outoff, outlen;
};

static int rr_refuse(const char **reason, const char *name, char *detail,
		     size_t dlen, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static int rr_refuse(const char **reason, const char *name, char *detail,
		     size_t dlen, const char *fmt, ...)
{
	va_list ap;

	*reason = name;
	if (detail && dlen) {
		va_start(ap, fmt);
		vsnprintf(detail, dlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static void rr_put32(uint8_t *p, int64_t v)
{
	uint32_t u = (uint32_t)(int32_t)v;

	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(u >> (8 * i));
}

static bool rr_fits(int64_t v)
{
	return v >= INT32_MIN && v <= INT32_MAX;
}

/* The opcode byte (relocate.c's prefix walk: REX may sit among the prefixes). */
static uint8_t rr_opcode(const uint8_t *b, size_t len)
{
	size_t i = relocate_opcode_offset(b, len);

	return i < len ? b[i] : 0;
}

/* How one displaced instruction moves; 0, or -1 with the refusal. */
static int rr_classify(struct rr_insn *in, const struct probe_insn *pi, bool last,
		       const char **reason, char *detail, size_t dlen)
{
	uint8_t op = rr_opcode(in->bytes, in->len);

	in->target = pi->emu.target;
	if (pi->exec == PROBE_EXEC_SLOT) {
		in->kind = RR_RELOC;
		in->outlen = in->len;
		return 0;
	}
	switch (pi->emu.kind) {
	case POKE_EMU_JMP:
		if (op == 0xeb || op == 0xe9) {
			in->kind = RR_JMP;
			in->outlen = 5;
		} else {
			in->kind = RR_COPY;	/* a NOP */
			in->outlen = in->len;
		}
		return 0;
	case POKE_EMU_JCC:
		in->kind = RR_JCC;
		in->cond = pi->emu.cond;
		in->outlen = 6;
		return 0;
	case POKE_EMU_LOOP:
		in->kind = RR_LOOP;
		in->outlen = in->len + 2 + 5;
		return 0;
	case POKE_EMU_CALL:
		if (!last)
			return rr_refuse(reason, "call_in_region", detail, dlen,
					 "%s at 0x%" PRIx64 " is not the last displaced "
					 "instruction: its callee would return into the "
					 "region", pi->text, in->at);
		in->kind = RR_CALL_LAST;
		in->outlen = 6 + 5;
		return 0;
	case POKE_EMU_CALL_REG:
		return rr_refuse(reason, "call_in_region", detail, dlen,
				 "%s at 0x%" PRIx64 ": an indirect call in the region",
				 pi->text, in->at);
	default:	/* RET, RET imm, jmp *%reg, PUSH, POP: position independent */
		in->kind = RR_COPY;
		in->outlen = in->len;
		return 0;
	}
}

/* Where a branch of the block goes: the relocated copy if inside the region. */
static int rr_aim(const struct rr_insn *v, unsigned int n, uint64_t addr,
		  size_t len, uint64_t to, uint64_t target, uint64_t *out)
{
	if (target <= addr || target >= addr + len) {
		*out = target;
		return 0;
	}
	for (unsigned int i = 0; i < n; i++) {
		if (v[i].at == target) {
			*out = to + v[i].outoff;
			return 0;
		}
	}
	return -1;	/* into the middle of a displaced instruction */
}

static int rr_emit(const struct rr_insn *v, unsigned int n, uint64_t addr,
		   size_t len, uint64_t to, uint8_t *out, size_t lit_off,
		   const char **reason, char *detail, size_t dlen)
{
	for (unsigned int i = 0; i < n; i++) {
		const struct rr_insn *in = &v[i];
		uint8_t *o = out + in->outoff;
		uint64_t pc = to + in->outoff, tgt = 0;
		size_t nb;
		int64_t rel;

		if ((in->kind == RR_JMP || in->kind == RR_JCC || in->kind == RR_LOOP ||
		     in->kind == RR_CALL_LAST) &&
		    rr_aim(v, n, addr, len, to, in->target, &tgt))
			return rr_refuse(reason, "jump_into_range", detail, dlen,
					 "the branch at 0x%" PRIx64 " targets 0x%" PRIx64
					 ", inside a displaced instruction", in->at,
					 in->target);
		switch (in->kind) {
		case RR_COPY:
			memcpy(o, in->bytes, in->len);
			continue;
		case RR_RELOC:
			if (relocate_insn(in->bytes, in->len, in->at, pc, o, in->outlen,
					  &nb, reason) || nb != in->outlen)
				return rr_refuse(reason, *reason ? *reason : "too_long",
						 detail, dlen, "the instruction at 0x%"
						 PRIx64 " cannot run at 0x%" PRIx64, in->at, pc);
			continue;
		case RR_JMP:
			o[0] = 0xe9;
			break;
		case RR_JCC:
			o[0] = 0x0f;
			o[1] = (uint8_t)(0x80 | in->cond);
			break;
		case RR_LOOP:
			/* op +2 -> T; jmp +5 -> F; T: jmp target; F: */
			memcpy(o, in->bytes, in->len);
			o[in->len - 1] = 2;
			o[in->len] = 0xeb;
			o[in->len + 1] = 5;
			o[in->len + 2] = 0xe9;
			break;
		case RR_CALL_LAST:
			/* push orig_next (a literal: push imm32 sign-extends); jmp */
			o[0] = 0xff;
			o[1] = 0x35;
			rr_put32(o + 2, (int64_t)(to + lit_off - (pc + 6)));
			o[6] = 0xe9;
			break;
		}
		rel = (int64_t)(tgt - (pc + in->outlen));
		if (!rr_fits(rel))
			return rr_refuse(reason, "rip_rel_unreachable", detail, dlen,
					 "the branch at 0x%" PRIx64 " cannot reach 0x%"
					 PRIx64 " from 0x%" PRIx64, in->at, tgt, pc);
		rr_put32(o + in->outlen - 4, rel);
	}
	return 0;
}

int relocate_region(const uint8_t *fn, size_t fnlen, uint64_t fnaddr,
		    uint64_t addr, size_t min, uint64_t to,
		    const struct relocate_range *live, size_t nlive,
		    uint8_t *out, size_t outcap, struct relocate_region *r,
		    const char **reason, char *detail, size_t dlen)
{
	struct rr_insn v[RELOCATE_REGION_MAX_INSNS];
	struct decode_scan sc;
	struct probe_insn pi;
	const char *why;
	uint64_t fnend = fnaddr + fnlen, jfrom, jto = 0;
	size_t len = 0, off, body, lit = 0;
	unsigned int n = 0;
	int64_t rel;
	char d[256];

	memset(r, 0, sizeof(*r));
	*reason = NULL;
	if (detail && dlen)
		detail[0] = '\0';
	if (addr < fnaddr || addr >= fnend)
		return rr_refuse(reason, "not_in_function", detail, dlen,
				 "0x%" PRIx64 " is outside the function", addr);
	if (decode_scan_function(fn, fnlen, fnaddr, addr, min, &sc))
		return rr_refuse(reason, "no_decoder", detail, dlen, "cannot start Capstone");
	if (!sc.at_boundary)
		return rr_refuse(reason, "not_boundary", detail, dlen,
				 "0x%" PRIx64 " is not an instruction boundary", addr);
	if (sc.untrusted_at) {
		r->bad_at = sc.untrusted_at;
		return rr_refuse(reason, "unsupported", detail, dlen,
				 "Capstone and the CPU read the branch at +0x%" PRIx64
				 " differently: the function cannot be decoded past it",
				 sc.untrusted_at - fnaddr);
	}
	if (!sc.complete)
		return rr_refuse(reason, "not_code", detail, dlen,
				 "the function does not decode to its end (stops at 0x%"
				 PRIx64 "): jumps into the region cannot be ruled out",
				 sc.stop_at);
	if (sc.indirect_at) {
		r->bad_at = sc.indirect_at;
		return rr_refuse(reason, "indirect_jump", detail, dlen,
				 "an indirect jump at +0x%" PRIx64 " (a jump table) may "
				 "target any byte of the function", sc.indirect_at - fnaddr);
	}
	/* the instructions the JMP covers */
	while (len < min) {
		uint64_t at = addr + len;

		if (n == RELOCATE_REGION_MAX_INSNS)
			return rr_refuse(reason, "too_long", detail, dlen,
					 "more than %d instructions", RELOCATE_REGION_MAX_INSNS);
		if (at >= fnend)
			return rr_refuse(reason, "leaves_function", detail, dlen,
					 "the %zu displaced bytes would run past the "
					 "function's end at 0x%" PRIx64, min, fnend);
		if (probe_insn_decode(fn + (at - fnaddr), fnend - at, at, &pi, &why,
				      d, sizeof(d))) {
			r->bad_at = at;
			return rr_refuse(reason, why, detail, dlen, "%s at 0x%" PRIx64,
					 d, at);
		}
		if (at + pi.len > fnend)
			return rr_refuse(reason, "leaves_function", detail, dlen,
					 "%s at 0x%" PRIx64 " runs past the function's end",
					 pi.text, at);
		v[n].at = at;
		v[n].len = pi.len;
		v[n].bytes = fn + (at - fnaddr);
		if (rr_classify(&v[n], &pi, len + pi.len >= min, reason, detail, dlen)) {
			r->bad_at = at;
			return -1;
		}
		len += pi.len;
		n++;
	}
	/* jumps from outside the region into the JMP's bytes */
	jfrom = decode_jump_into(fn, fnlen, fnaddr, addr, addr + min, addr, addr + len, &jto);
	if (jfrom) {
		r->bad_at = jfrom;
		r->bad_off = jto - addr;
		return rr_refuse(reason, "jump_into_range", detail, dlen,
				 "the jump at +0x%" PRIx64 " lands at addr+0x%" PRIx64
				 ", inside the JMP's %zu bytes", jfrom - fnaddr,
				 jto - addr, min);
	}
	for (size_t i = 0; i < nlive; i++) {
		if (live[i].lo < addr + len && live[i].hi > addr)
			return rr_refuse(reason, "live_site", detail, dlen,
					 "0x%" PRIx64 "..0x%" PRIx64 " is live inside the "
					 "%zu displaced bytes", live[i].lo, live[i].hi, len);
	}
	for (unsigned int i = 0, o = 0; i < n; o += v[i].outlen, i++)
		v[i].outoff = o;
	body = v[n - 1].outoff + v[n - 1].outlen;
	r->ends_in_call = v[n - 1].kind == RR_CALL_LAST;
	off = r->ends_in_call ? body : body + 5;
	if (r->ends_in_call) {
		lit = (off + 7) & ~(size_t)7;
		off = lit + 8;
	}
	if (off > outcap)
		return rr_refuse(reason, "too_long", detail, dlen,
				 "%zu relocated bytes do not fit in %zu", off, outcap);
	memset(out, 0xcc, off);
	if (rr_emit(v, n, addr, len, to, out, lit, reason, detail, dlen))
		return -1;
	if (r->ends_in_call) {
		uint64_t next = addr + len;

		for (int i = 0; i < 8; i++)
			out[lit + i] = (uint8_t)(next >> (8 * i));
	} else {
		rel = (int64_t)(addr + len - (to + body + 5));
		if (!rr_fits(rel))
			return rr_refuse(reason, "rip_rel_unreachable", detail, dlen,
					 "the JMP back to 0x%" PRIx64 " cannot reach from 0x%"
					 PRIx64, addr + len, to + body);
		out[body] = 0xe9;
		rr_put32(out + body + 1, rel);
	}
	r->len = len;
	r->ninsn = n;
	r->outlen = off;
	return 0;
}
