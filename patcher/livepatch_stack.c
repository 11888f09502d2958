// SPDX-License-Identifier: MIT
/*
 * livepatch_stack.c - the pure parts of livepatch (include/livepatch.h):
 * the reliable frame-pointer walk of a preempted task's stack
 * (arch_stack_walk_reliable() with frame pointers), the prologue analysis
 * that says whether a preempted RIP has its function's frame in %rbp, and
 * the redirect stub's encoding.
 *
 * Reliability is the whole point: a walk that misses a frame could let a
 * task switch while it still has a return address into a body being
 * replaced, which is seed 004's bug class.  So anything the walk cannot
 * prove is "unreliable", and livepatch counts that task as busy.
 */
#include <capstone/capstone.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "livepatch.h"
#include "symtab.h"
#include "vmpoke_abi.h"

static int klp_unreliable(struct klp_walk *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int klp_unreliable(struct klp_walk *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w->why, sizeof(w->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* The function containing addr, or NULL. */
static const struct sym *klp_func_at(const struct symtab *st, uint64_t addr)
{
	uint64_t off;
	const struct sym *s = symtab_lookup(st, addr, &off);

	return s && (s->type == 'T' || s->type == 't') && s->size ? s : NULL;
}

int klp_stack_walk(const struct klp_walk_ops *ops, uint64_t rip, uint64_t rsp, uint64_t rbp,
		   uint64_t lo, uint64_t hi, struct klp_walk *w)
{
	const struct sym *fn = klp_func_at(ops->st, rip);
	uint64_t fp = rbp, prev = rsp, word[2];

	w->n = 0;
	w->why[0] = '\0';
	if (lo >= hi || hi - lo < 16 || (hi & 7))
		return klp_unreliable(w, "bad stack bounds 0x%" PRIx64 "..0x%" PRIx64, lo, hi);
	if (!fn)
		return klp_unreliable(w, "rip 0x%" PRIx64 " is in no function", rip);
	w->f[w->n++] = (struct klp_frame){ rip, fn->addr };
	if (!ops->frame_ok(ops->opaque, rip))
		return klp_unreliable(w, "rip %s+0x%" PRIx64 " is outside its frame (prologue, "
				      "epilogue or no frame pointer)", fn->name, rip - fn->addr);
	if (rsp < lo || rsp >= hi)
		return klp_unreliable(w, "rsp 0x%" PRIx64 " is off the stack", rsp);
	for (;;) {
		const struct sym *caller;

		if (fp & 7)
			return klp_unreliable(w, "frame pointer 0x%" PRIx64 " is misaligned", fp);
		if (fp < lo || fp > hi - 16)
			return klp_unreliable(w, "frame pointer 0x%" PRIx64 " is off the stack "
					      "0x%" PRIx64 "..0x%" PRIx64, fp, lo, hi);
		if (fp < prev || (w->n > 1 && fp == prev))
			return klp_unreliable(w, "frame pointer 0x%" PRIx64 " does not go up "
					      "(loop or corrupt chain)", fp);
		if (ops->read(ops->opaque, fp, word, sizeof(word)))
			return klp_unreliable(w, "frame 0x%" PRIx64 " is not in guest RAM", fp);
		if (!word[0]) {
			/* the task's first frame: saved %rbp 0, return slot 0 */
			if (fp != hi - 16 || word[1])
				return klp_unreliable(w, "the chain ends at 0x%" PRIx64 ", not at "
						      "the stack's first frame 0x%" PRIx64, fp,
						      hi - 16);
			return 0;
		}
		caller = word[1] ? klp_func_at(ops->st, word[1] - 1) : NULL;
		if (!caller)
			return klp_unreliable(w, "return address 0x%" PRIx64 " at 0x%" PRIx64
					      " is in no function", word[1], fp + 8);
		if (w->n == KLP_MAX_FRAMES)
			return klp_unreliable(w, "deeper than %d frames", KLP_MAX_FRAMES);
		w->f[w->n++] = (struct klp_frame){ word[1], caller->addr };
		prev = fp;
		fp = word[0];
	}
}

static const uint8_t klp_nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };

/* Any transfer of control: the prologue must come before one. */
static bool klp_branches(const cs_insn *insn)
{
	const uint8_t *b = insn->bytes;

	return insn->id == X86_INS_CALL || insn->id == X86_INS_RET || insn->id == X86_INS_JMP ||
	       (b[0] & 0xf0) == 0x70 || (insn->size >= 2 && b[0] == 0x0f && (b[1] & 0xf0) == 0x80);
}

/* Does insn write %rsp or %rbp (push, pop, sub $n,%rsp, mov ...,%rbp)? */
static bool klp_writes_frame_regs(csh h, const cs_insn *insn)
{
	cs_regs rd, wr;
	uint8_t nrd, nwr;

	if (cs_regs_access(h, insn, rd, &nrd, wr, &nwr))
		return true;
	for (uint8_t i = 0; i < nwr; i++)
		if (wr[i] == X86_REG_RSP || wr[i] == X86_REG_ESP || wr[i] == X86_REG_RBP ||
		    wr[i] == X86_REG_EBP)
			return true;
	return false;
}

/*
 * Frame states, per instruction, on entry to it: before the prologue
 * (PRE), %rbp pushed (PUSHED), %rbp is this function's frame (FRAMED),
 * %rbp restored for the return (EPILOGUE), reached in two states (MIXED).
 * Only FRAMED means [%rbp + 8] is our return address.
 */
enum { KS_UNSEEN = 0, KS_PRE, KS_PUSHED, KS_FRAMED, KS_EPILOGUE, KS_MIXED };

#define KLP_FN_MAX_INSNS	4096

struct klp_fn {
	size_t n;
	uint64_t addr[KLP_FN_MAX_INSNS];
	uint8_t len[KLP_FN_MAX_INSNS];
	uint8_t state[KLP_FN_MAX_INSNS];
	uint8_t out[KLP_FN_MAX_INSNS];		/* state after it */
	uint64_t target[KLP_FN_MAX_INSNS];	/* direct JMP/Jcc target, 0 if none */
	bool falls[KLP_FN_MAX_INSNS];		/* control reaches the next one */
};

static bool klp_is_mov_rsp_rbp(const cs_insn *insn)
{
	const uint8_t *b = insn->bytes;

	return insn->size == 3 && b[0] == 0x48 &&
	       ((b[1] == 0x89 && b[2] == 0xe5) || (b[1] == 0x8b && b[2] == 0xec));
}

/*
 * The state after insn, entered in state `in`.  Before the frame is set up
 * only push %rbp, then mov %rsp,%rbp, with other work scheduled around them
 * (gcc does), may happen: anything else that moves %rsp or %rbp, or a
 * branch, and [%rbp + 8] might not be the return address - MIXED, never
 * trusted.  Inside the frame, pop %rbp and leave end it; any other write of
 * %rbp is not a frame-pointer function's: MIXED.
 */
static uint8_t klp_step(csh h, const cs_insn *insn, uint8_t in)
{
	const uint8_t *b = insn->bytes;
	bool pop = insn->size == 1 && (b[0] == 0x5d || b[0] == 0xc9);	/* pop %rbp, leave */

	switch (in) {
	case KS_PRE:
		if (insn->size == 1 && b[0] == 0x55)			/* push %rbp */
			return KS_PUSHED;
		return klp_branches(insn) || klp_writes_frame_regs(h, insn) ? KS_MIXED : KS_PRE;
	case KS_PUSHED:
		if (klp_is_mov_rsp_rbp(insn))
			return KS_FRAMED;
		return klp_branches(insn) || klp_writes_frame_regs(h, insn) ? KS_MIXED : KS_PUSHED;
	case KS_FRAMED:
		if (pop)
			return KS_EPILOGUE;
		if (insn->id != X86_INS_CALL && klp_writes_frame_regs(h, insn)) {
			cs_regs rd, wr;
			uint8_t nrd, nwr;

			/* %rsp moves freely in a frame; %rbp must not */
			if (cs_regs_access(h, insn, rd, &nrd, wr, &nwr))
				return KS_MIXED;
			for (uint8_t i = 0; i < nwr; i++)
				if (wr[i] == X86_REG_RBP || wr[i] == X86_REG_EBP)
					return KS_MIXED;
		}
		return KS_FRAMED;
	default:
		return in;
	}
}

/* Direct JMP/Jcc target (rel8/rel32) of insn, or 0. */
static uint64_t klp_direct_target(const cs_insn *insn)
{
	const uint8_t *b = insn->bytes;
	uint64_t next = insn->address + insn->size;
	int32_t r32;

	if ((b[0] == 0xeb || (b[0] & 0xf0) == 0x70) && insn->size == 2)
		return next + (uint64_t)(int64_t)(int8_t)b[1];
	if (b[0] == 0xe9 && insn->size == 5) {
		memcpy(&r32, b + 1, 4);
		return next + (uint64_t)(int64_t)r32;
	}
	if (b[0] == 0x0f && (b[1] & 0xf0) == 0x80 && insn->size == 6) {
		memcpy(&r32, b + 2, 4);
		return next + (uint64_t)(int64_t)r32;
	}
	return 0;
}

static long klp_fn_index(const struct klp_fn *f, uint64_t addr)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (f->addr[mid] == addr)
			return (long)mid;
		if (f->addr[mid] < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Decode the function linearly: every instruction, its successors. */
static bool klp_fn_decode(csh h, struct klp_fn *f, const uint8_t *code, size_t size,
			  uint64_t base, size_t skip)
{
	const uint8_t *p = code + skip;
	uint64_t pc = base + skip;
	size_t left = size - skip;
	cs_insn *insn = cs_malloc(h);

	f->n = 0;
	if (!insn)
		return false;
	while (f->n < KLP_FN_MAX_INSNS && cs_disasm_iter(h, &p, &left, &pc, insn)) {
		size_t i = f->n++;

		f->addr[i] = insn->address;
		f->len[i] = (uint8_t)insn->size;
		f->state[i] = KS_UNSEEN;
		f->target[i] = klp_direct_target(insn);
		f->falls[i] = insn->id != X86_INS_RET && insn->id != X86_INS_JMP &&
			      insn->id != X86_INS_UD2 && insn->id != X86_INS_INT3;
	}
	cs_free(insn, 1);
	return f->n > 0;
}

static void klp_fn_merge(struct klp_fn *f, long j, uint8_t st, size_t *work, size_t *nw)
{
	uint8_t old;

	if (j < 0)
		return;		/* out of the function (a tail call) or mid-instruction */
	old = f->state[j];
	if (old == st || old == KS_MIXED)
		return;
	f->state[j] = old == KS_UNSEEN ? st : KS_MIXED;
	work[(*nw)++] = (size_t)j;
}

bool klp_frame_ok(const uint8_t *code, size_t size, uint64_t base, uint64_t rip)
{
	struct klp_fn *fn = malloc(sizeof(*fn));
	/* each instruction is queued at most twice (UNSEEN -> a state -> MIXED) */
	size_t *work = malloc(2 * KLP_FN_MAX_INSNS * sizeof(*work));
	const uint8_t *p;
	size_t nw = 0, skip = 0;
	uint64_t pc;
	size_t left;
	cs_insn *insn;
	long at;
	bool ok = false;
	csh h;

	if (!fn || !work || rip < base || rip - base >= size) {
		free(fn);
		free(work);
		return false;
	}
	/* the fentry NOP5, or the JMP livepatch or a probe put there */
	if (size > 5 && (!memcmp(code, klp_nop5, 5) || code[0] == 0xe9))
		skip = 5;
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK) {
		free(fn);
		free(work);
		return false;
	}
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	insn = cs_malloc(h);
	if (!insn || !klp_fn_decode(h, fn, code, size, base, skip))
		goto out;
	/*
	 * Forward over fallthrough and direct branches from the entry: what
	 * an indirect jump reaches stays UNSEEN, and is not trusted.
	 */
	fn->state[0] = KS_PRE;
	work[nw++] = 0;
	while (nw) {
		size_t i = work[--nw];

		p = code + (fn->addr[i] - base);
		pc = fn->addr[i];
		left = fn->len[i];
		if (!cs_disasm_iter(h, &p, &left, &pc, insn))
			continue;
		fn->out[i] = klp_step(h, insn, fn->state[i]);
		if (fn->falls[i] && i + 1 < fn->n)
			klp_fn_merge(fn, (long)i + 1, fn->out[i], work, &nw);
		if (fn->target[i])
			klp_fn_merge(fn, klp_fn_index(fn, fn->target[i]), fn->out[i], work, &nw);
	}
	at = klp_fn_index(fn, rip);
	ok = at >= 0 && fn->state[at] == KS_FRAMED;
out:
	cs_free(insn, 1);
	cs_close(&h);
	free(fn);
	free(work);
	return ok;
}

static int klp_rel32(uint64_t next, uint64_t to, uint8_t *out)
{
	int64_t d = (int64_t)(to - next);
	int32_t r = (int32_t)d;

	if (d != r)
		return -1;
	memcpy(out, &r, 4);
	return 0;
}

int klp_stub_encode(uint8_t out[KLP_STUB_SIZE], uint64_t at, uint64_t ps0, uint64_t to_old,
		    uint64_t to_new)
{
	/* movslq %gs:current_task, %r11 */
	static const uint8_t cur[9] = { 0x65, 0x4c, 0x63, 0x1c, 0x25,
					offsetof(struct vmpoke_percpu, current_task), 0, 0, 0 };
	uint32_t tsz = sizeof(struct vmpoke_task);
	int32_t disp = (int32_t)ps0;
	uint8_t *p = out;

	if ((uint64_t)(int64_t)disp != ps0)
		return -1;
	memset(out, 0xcc, KLP_STUB_SIZE);
	memcpy(p, cur, sizeof(cur));
	p += sizeof(cur);
	*p++ = 0x4d;			/* imul $sizeof(task), %r11, %r11 */
	*p++ = 0x69;
	*p++ = 0xdb;
	memcpy(p, &tsz, 4);
	p += 4;
	*p++ = 0x41;			/* testb $PATCHED, ps0(%r11) */
	*p++ = 0xf6;
	*p++ = 0x83;
	memcpy(p, &disp, 4);
	p += 4;
	*p++ = VMPOKE_PATCH_PATCHED;
	*p++ = 0x0f;			/* jnz to_new */
	*p++ = 0x85;
	if (klp_rel32(at + (uint64_t)(p - out) + 4, to_new, p))
		return -1;
	p += 4;
	*p++ = 0xe9;			/* jmp to_old */
	if (klp_rel32(at + (uint64_t)(p - out) + 4, to_old, p))
		return -1;
	return 0;
}
