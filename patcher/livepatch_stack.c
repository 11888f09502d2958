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
 * Before the frame is set up: push %rbp, then mov %rsp,%rbp, with other
 * work scheduled around them (gcc does) but nothing else that moves %rsp
 * or %rbp, and no branch: otherwise [%rbp + 8] might not be the return
 * address and a caller's frame would be missed.  1: framed after this insn;
 * 0: keep looking; -1: this function has no frame we can trust.
 */
static int klp_prologue_step(csh h, const cs_insn *insn, bool *pushed)
{
	const uint8_t *b = insn->bytes;

	if (insn->size == 1 && b[0] == 0x55 && !*pushed) {	/* push %rbp */
		*pushed = true;
		return 0;
	}
	/* mov %rsp,%rbp, in either encoding */
	if (*pushed && insn->size == 3 && b[0] == 0x48 &&
	    ((b[1] == 0x89 && b[2] == 0xe5) || (b[1] == 0x8b && b[2] == 0xec)))
		return 1;
	return klp_branches(insn) || klp_writes_frame_regs(h, insn) ? -1 : 0;
}

bool klp_frame_ok(const uint8_t *code, size_t size, uint64_t base, uint64_t rip)
{
	const uint8_t *p = code;
	uint64_t pc = base;
	size_t left = size;
	bool ok = false, framed = false, pushed = false, after_pop = false, found = false;
	cs_insn *insn;
	csh h;

	if (rip < base || rip - base >= size)
		return false;
	/* the fentry NOP5, or the JMP livepatch or a probe put there */
	if (size > 5 && (!memcmp(code, klp_nop5, 5) || code[0] == 0xe9)) {
		p += 5;
		pc += 5;
		left -= 5;
	}
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &h) != CS_ERR_OK)
		return false;
	cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
	insn = cs_malloc(h);
	while (insn && cs_disasm_iter(h, &p, &left, &pc, insn)) {
		const uint8_t *b = insn->bytes;

		if (insn->address == rip) {
			ok = framed && !after_pop;
			found = true;
			break;
		}
		if (!framed) {
			int r = klp_prologue_step(h, insn, &pushed);

			if (r < 0)
				break;
			framed = r > 0;
			continue;
		}
		if ((insn->size == 1 && (b[0] == 0x5d || b[0] == 0xc9)))	/* pop %rbp, leave */
			after_pop = true;
		else if (after_pop && (insn->id == X86_INS_RET || insn->id == X86_INS_JMP))
			after_pop = false;	/* the epilogue ends with it */
	}
	cs_free(insn, 1);
	cs_close(&h);
	return found && ok;
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
