/* SPDX-License-Identifier: MIT */
/*
 * patcher.h - cross-modifying a running guest's code from outside, with
 * the Linux text_poke_bp protocol (arch/x86/kernel/alternative.c):
 *
 *   validate -> INT3 on every site, sync -> every tail, sync ->
 *   every head, sync -> retire the sites from the trap table.
 *
 * One struct poke_site per patch site, as alternative.c keeps one
 * smp_text_poke_loc per site.  The trap hook the patcher registers with the
 * VMM emulates the *queued* instruction of a live site; it never decodes
 * guest memory.
 */
#ifndef VMPOKE_PATCHER_H
#define VMPOKE_PATCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct symtab;

#define POKE_MAX_LEN	16

/* The instruction the trap handler emulates while a site is live. */
enum poke_emu_kind {
	POKE_EMU_NONE = 0,	/* not a site: refuse */
	POKE_EMU_JMP,		/* JMP rel8/rel32 and NOP2/NOP5 (jump to next) */
	POKE_EMU_CALL,		/* CALL rel32 */
	POKE_EMU_RET,
	POKE_EMU_JCC,		/* Jcc rel8/rel32, cond = low nibble of opcode */
	/*
	 * Probes only (poke_emulate_regs(); kprobes' prepare_emulation() set
	 * plus PUSH/POP): a batch site never queues these.
	 */
	POKE_EMU_RET_IMM,	/* RET imm16: pop rip, then rsp += imm */
	POKE_EMU_LOOP,		/* cond: 0 LOOPNE, 1 LOOPE, 2 LOOP, 3 JrCXZ; asize */
	POKE_EMU_JMP_REG,	/* jmp *%reg */
	POKE_EMU_CALL_REG,	/* call *%reg */
	POKE_EMU_PUSH,		/* push %reg (64-bit) */
	POKE_EMU_POP,		/* pop %reg (64-bit) */
};

struct poke_emu {
	enum poke_emu_kind kind;
	uint8_t cond;		/* JCC: 0x0..0xf (o,no,b,ae,e,ne,be,a,s,ns,p,np,l,ge,le,g) */
	uint8_t len;		/* length of the emulated instruction */
	uint8_t reg;		/* *_REG, PUSH, POP: 0 rax 1 rcx 2 rdx 3 rbx 4 rsp
				 * 5 rbp 6 rsi 7 rdi 8..15 r8..r15 */
	uint8_t asize;		/* LOOP: address size in bytes, 4 or 8 */
	uint16_t imm;		/* RET_IMM */
	uint64_t target;	/* JMP/CALL/JCC/LOOP absolute target */
};

/* Refusal reasons; poke_strerror() gives the text. */
enum poke_err {
	POKE_OK = 0,
	POKE_E_NOSYM = 1,		/* address not inside a function symbol */
	POKE_E_BOUNDARY,		/* not an instruction boundary */
	POKE_E_DECODE,			/* new bytes are not one instruction of len */
	POKE_E_EMULATE,			/* emulated insn not JMP/CALL/RET/Jcc/NOP2/NOP5 */
	POKE_E_FOREIGN_INT3,		/* an INT3 that is not ours is already there */
	POKE_E_ENTRY_TEXT,		/* inside the trap-entry text */
	POKE_E_JUMP_INTO,		/* a jump in the function targets the shadow */
	POKE_E_OLD_MISMATCH,		/* guest bytes differ from expected old */
	POKE_E_OVERLAP,			/* overlaps another site of the batch / live */
	POKE_E_FAULT,			/* guest memory not mapped */
	POKE_E_SHADOW_BUSY,		/* shadow check gave up; batch undone */
	POKE_E_SYNC,			/* a vCPU did not acknowledge a sync */
	POKE_E_READBACK,		/* read-back after a write differed */
	POKE_E_INVAL,			/* a bad argument (length 0, NULL batch) */
	POKE_E_NOMEM,			/* out of memory */
	POKE_E_HOST,			/* Capstone could not start */
	POKE_E_GUEST_TABLE,		/* a guest table failed validation */
};
const char *poke_strerror(enum poke_err e);

/* Deliberately broken protocols for `vmpoke torture --inject`. */
enum poke_inject {
	POKE_INJECT_NONE = 0,
	POKE_INJECT_NO_INT3,		/* write the new instruction directly */
	POKE_INJECT_TORN_WRITE,		/* two halves, a pause between, no INT3 */
	POKE_INJECT_NO_SHADOW_CHECK,
	POKE_INJECT_NO_SYNC,		/* skip the INT3, tail and head syncs */
	POKE_INJECT_EARLY_RETIRE,	/* retire after the tail sync, before the head write */
	POKE_INJECT_NO_GHOST,		/* trap hook: no ghost handling */
	POKE_INJECT_LATE_PUBLISH,	/* publish after the INT3 sync, not before the INT3 */
	POKE_INJECT_NO_OPTIMIZE_SHADOW,	/* optprobe: write the JMP without the shadow check */
	POKE_INJECT_NO_STACK_CHECK,	/* livepatch: switch tasks without the stack walk */
};

/*
 * How a site is written.  Breakpoint is the text_poke_bp protocol.
 * Stop-the-world is what Linux did before it: pause every vCPU, check that
 * no RIP, frame or task lies strictly inside the site, write the whole
 * instruction, resume.  It is used for kernel (CPL0) text where the host
 * cannot trap a CPL0 INT3 (kvm_pvm: the int3 would end the guest).
 */
enum poke_method {
	POKE_METHOD_BREAKPOINT = 0,
	POKE_METHOD_STOP_THE_WORLD,
};
/* "breakpoint" / "stop-the-world": the names results carry. */
const char *poke_method_name(enum poke_method m);

/* The choice for CPL0 sites: VMPOKE_CPL0_PATCH=auto|breakpoint|stop-the-world. */
enum poke_cpl0_patch {
	POKE_CPL0_AUTO = 0,		/* by the host probe */
	POKE_CPL0_BREAKPOINT,
	POKE_CPL0_STOP_THE_WORLD,
};
/* "auto", "breakpoint", "stop-the-world" (NULL or "" = auto); -1 if unknown. */
int poke_cpl0_parse(const char *name);
/* The method for CPL0 sites, from the choice and the host probe's answer. */
enum poke_method poke_cpl0_decide(enum poke_cpl0_patch choice, bool cpl0_int3_trappable);

struct poke_site {
	uint64_t addr;
	uint8_t len;
	uint8_t old[POKE_MAX_LEN];	/* expected current bytes */
	uint8_t new[POKE_MAX_LEN];	/* bytes to write */
	struct poke_emu emu;		/* what a hit emulates while live */
	unsigned int old_insns;		/* instructions the range covers now */
	enum poke_method method;	/* chosen by poke_site_prepare() */
	char where[96];			/* "sym+0xoff" for messages */
};

struct poke_stats {
	uint64_t patches, batches, syncs;
	uint64_t core_syncs;		/* of syncs, those vmm_sync_core() made */
	uint64_t trap_hits, ghost_traps, foreign_traps;
	uint64_t shadow_retries, shadow_aborts;
	uint64_t emu_faults;		/* trap hits whose emulation faulted */
};

struct patcher_opts {
	enum poke_inject inject;
	unsigned int shadow_retries;	/* bound before undo (default 50) */
	unsigned int shadow_backoff_us;	/* between retries (default 200) */
	/*
	 * Optional: called on the patching thread as each protocol phase of a
	 * batch ends ("int3", "shadow check", "tails", "heads", each with its
	 * sync), with CLOCK_MONOTONIC nanoseconds; for timelines.
	 */
	void (*phase)(void *opaque, const char *name, uint64_t start_ns, uint64_t end_ns);
	void *phase_opaque;
	/*
	 * Optional, for tests: the write log.  Called on the patching thread
	 * after every write of a batch to guest memory and before its
	 * read-back: the site, the offset in it, the bytes, and what the
	 * write was ("INT3", "new tail", "new head", "old tail", ...).
	 */
	void (*write_log)(void *opaque, const struct poke_site *s, unsigned int off,
			  const uint8_t *bytes, unsigned int n, const char *what);
	void *write_log_opaque;
	/* AUTO: VMPOKE_CPL0_PATCH if set, else the host probe decides. */
	enum poke_cpl0_patch cpl0_patch;
};

struct patcher;
struct poke_batch;

/*
 * Registers the trap hook with the VMM.  NULL on failure, e.g. a bad
 * VMPOKE_CPL0_PATCH value (the message names it).
 */
struct patcher *patcher_create(struct vm *vm, const struct patcher_opts *opts);

/*
 * Is addr in kernel (CPL0) text of the guest (vmpoke_abi.h: everything but
 * the CPL3 task text)?  And may INT3 be written there: true when CPL0 sites
 * are patched with breakpoints (the host traps a CPL0 INT3, or
 * VMPOKE_CPL0_PATCH=breakpoint).  INT3 probes in CPL0 text where this is
 * false are refused with the reason "cpl0_untrappable".
 */
bool patcher_addr_is_cpl0(struct patcher *p, uint64_t addr);
bool patcher_cpl0_trappable(struct patcher *p);
void patcher_destroy(struct patcher *p);
void patcher_stats(struct patcher *p, struct poke_stats *st);

/*
 * Build a site: validate addr with Capstone against the containing
 * function (symbol table) and decode the emulated instruction from `new`
 * (or from `emulate` if non-NULL, as static_call does).  `old` NULL means
 * "whatever is there now".  On refusal fills msg with "sym+off: reason".
 */
enum poke_err poke_site_prepare(struct patcher *p, struct poke_site *site,
				uint64_t addr, const void *old, const void *new,
				size_t len, const void *emulate,
				char *msg, size_t msglen);

struct poke_batch *poke_batch_new(struct patcher *p);
enum poke_err poke_batch_add(struct poke_batch *b, const struct poke_site *site);
/*
 * Run the protocol for every site in the batch.  On failure nothing is
 * left half-written: either all sites carry their new bytes, or all carry
 * their old bytes again, and msg names the site and vCPU.
 */
enum poke_err poke_batch_finish(struct poke_batch *b, char *msg, size_t msglen);
void poke_batch_free(struct poke_batch *b);
/*
 * Called once by finish() when every site carries its new bytes, before
 * the last sync (with the heads): for guest data that must change with the
 * text, as jump labels write key->enabled.  Not called if the batch fails
 * before that point; a later failure undoes the text only.
 */
void poke_batch_on_commit(struct poke_batch *b, void (*fn)(void *opaque), void *opaque);

/* Thin wrapper: prepare + one-site batch. */
enum poke_err poke_single(struct patcher *p, uint64_t addr, const void *old,
			  const void *new, size_t len, char *msg, size_t msglen);

#endif /* VMPOKE_PATCHER_H */
