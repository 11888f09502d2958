/* SPDX-License-Identifier: MIT */
/*
 * livepatch.h - function replacement with livepatch's per-task consistency
 * model (kernel/livepatch/transition.c), from outside the guest
 * (patcher/livepatch.c; the guest side is in vmpoke_abi.h, "Livepatch").
 *
 * A patch replaces old functions by new ones.  enable() points each old
 * function's fentry NOP5 at a redirect stub (one text_poke_bp batch) that
 * sends a task to the new function once its patch_state says so; then, on
 * every retry, each task not running on a vCPU whose saved stack walks
 * reliably (frame pointers, every return address in a function) with no
 * frame in a body being replaced is switched.  When every task has
 * switched, the entries become direct JMPs to the new functions and the
 * stubs are freed after a grace period (the busy-range check).  disable()
 * runs the same backwards, also in the middle of a transition; force()
 * switches every task at once and makes the patch unremovable.
 *
 * Everything runs on the controller thread; klp_tick() does the retries.
 */
#ifndef VMPOKE_LIVEPATCH_H
#define VMPOKE_LIVEPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct patcher;
struct symtab;
struct vm;

#define KLP_MAX_FUNCS		16
#define KLP_MAX_FRAMES		64	/* deeper stacks are unreliable */
#define KLP_STUB_SIZE		64	/* one redirect stub's slot */
#define KLP_DEFAULT_RETRY_MS	1000

/* --- the stack walker (pure; patcher/livepatch_stack.c) --------------------- */

struct klp_walk_ops {
	/* 0 if [gva, gva + len) was read */
	int (*read)(void *opaque, uint64_t gva, void *buf, size_t len);
	/* Is %rbp the frame of rip's own function at rip (past its prologue)? */
	bool (*frame_ok)(void *opaque, uint64_t rip);
	void *opaque;
	const struct symtab *st;
};

struct klp_frame {
	uint64_t addr;			/* frame 0: the saved RIP; then return addresses */
	uint64_t func;			/* start of the function it is in */
};

struct klp_walk {
	size_t n;
	struct klp_frame f[KLP_MAX_FRAMES];
	char why[160];			/* unreliable: why */
};

/*
 * Walk a preempted task's stack by frame pointers, bounds-checked against
 * [lo, hi): every frame pointer 8-aligned, inside the stack, strictly
 * above the last; rip in a function and past its prologue (frame_ok);
 * every return address (looked up at addr - 1) in a function; the chain
 * ends at a zero saved %rbp with a zero return slot exactly at hi - 16,
 * where the guest starts each task.  0: reliable, w->f[0..n) innermost
 * first; -1: unreliable, w->why says why (livepatch treats it as busy).
 */
int klp_stack_walk(const struct klp_walk_ops *ops, uint64_t rip, uint64_t rsp, uint64_t rbp,
		   uint64_t lo, uint64_t hi, struct klp_walk *w);

/*
 * Is %rbp the frame of the function whose code is [base, base + size) at
 * rip?  Capstone decodes the function, and a forward pass over fallthrough
 * and direct JMP/Jcc edges from the entry ([fentry NOP5 or our JMP] push
 * %rbp ... mov %rsp,%rbp, with nothing between that moves %rsp or %rbp or
 * branches) gives every instruction its frame state: only one reached
 * framed on every path (past the mov, before pop %rbp or leave) is.  A
 * block reached only by an indirect jump, or framed on one path and not on
 * another, is not.
 */
bool klp_frame_ok(const uint8_t *code, size_t size, uint64_t base, uint64_t rip);

/*
 * The redirect stub at `at` (KLP_STUB_SIZE bytes): %r11 = current task
 * (%gs:current_task) * sizeof(struct vmpoke_task); test bit 0 of the
 * patch_state at ps0 + %r11 (ps0 = &vmpoke_tasks.tasks[0].patch_state,
 * below 2 GiB); set: JMP to_new, clear: JMP to_old (old + 5, past the
 * NOP5).  %r11 and flags are free at a function's entry (SysV).  -1 if a
 * displacement does not fit.
 */
int klp_stub_encode(uint8_t out[KLP_STUB_SIZE], uint64_t at, uint64_t ps0, uint64_t to_old,
		    uint64_t to_new);

/* --- the engine (patcher/livepatch.c) ----------------------------------------- */

enum klp_state {
	KLP_UNPATCHED = 0,
	KLP_PATCHING,			/* enable()d, tasks switching */
	KLP_PATCHED,
	KLP_UNPATCHING,			/* disable()d, tasks switching back */
};
/* "unpatched", "patching", "patched", "unpatching" */
const char *klp_state_name(enum klp_state s);

struct klp_opts {
	/*
	 * Between retries, in guest time (its tick count over its hz; host
	 * time for a guest without a tick); 0: KLP_DEFAULT_RETRY_MS.
	 */
	unsigned int retry_ms;
	bool no_stack_check;		/* --inject no-stack-check: switch without the walk */
};

struct klp_func_spec {
	const char *old, *new;		/* function symbols */
};

/* A task not yet switched, and what holds it. */
struct klp_straggler {
	uint32_t task, vcpu;
	const char *reason;		/* "running", "sleeping on function", "unreliable stack" */
	char func[64];			/* the blocking frame's function, "" if none */
	uint64_t addr;			/* its RIP or return address, 0 if none */
	char detail[160];		/* "lp_sleep+0x3a", or why the stack is unreliable */
};

/* One retry of a transition. */
struct klp_retry {
	unsigned int retry;		/* 0 = the attempt at enable()/disable() */
	double t_s;			/* since the transition started */
	unsigned int switched, pending;
};

struct klp_info {
	enum klp_state state;
	bool forced;
	unsigned int retries;		/* of the current or last transition */
	unsigned int switched;		/* tasks switched by it, forced ones included */
	size_t nr_pending;
	const struct klp_straggler *pending;
	size_t nr_history;
	const struct klp_retry *history;	/* the last KLP_HISTORY retries */
	uint64_t syncs;			/* of its batches */
	double us;			/* in its batches */
};
#define KLP_HISTORY		256

struct klp;
struct klp_patch;

/*
 * One per VM: the stub area (vmpoke_abi.h), the image's text for the
 * prologue analysis, the task table.  NULL and msg if the image has no
 * stub area or task table.
 */
struct klp *klp_new(struct patcher *p, struct vm *vm, const char *image,
		    const struct klp_opts *o, char *msg, size_t len);
/* Frees host state only: the guest keeps whatever text it has now. */
void klp_free(struct klp *k);

/*
 * Validate a patch: each old and new a function in CPL3 task text (a CPL0
 * INT3 cannot be trapped everywhere), old at least 5 bytes, no old twice,
 * at most KLP_MAX_FUNCS; __KLP__<old> if present is a vmpoke_klp_func
 * object.  NULL and msg naming the bad one.
 */
struct klp_patch *klp_patch_new(struct klp *k, const struct klp_func_spec *f, size_t n,
				char *msg, size_t len);

/*
 * Start (or, during a disable, reverse) the transition to patched, and
 * make the first attempt.  Refused (-EBUSY) while another patch is in
 * transition or holds one of the old functions; (-EAGAIN) while a task
 * sits in a stub of the last transition after ~100 ms of its grace period;
 * (-EILSEQ) if an old entry is not the fentry NOP5; 0 or a negative errno
 * with msg.
 */
int klp_enable(struct klp_patch *lp, char *msg, size_t len);
/* The same towards unpatched; -EPERM for a forced patch. */
int klp_disable(struct klp_patch *lp, char *msg, size_t len);
/* Switch every task now, finish the transition, mark the patch forced. */
int klp_force(struct klp_patch *lp, char *msg, size_t len);
/*
 * Retry the transition in progress if its retry is due (or now), and free
 * stubs past their grace period.  0, or a negative errno with msg (a
 * failed batch: the transition stays and is retried).
 */
int klp_tick(struct klp *k, bool now, char *msg, size_t len);
/* This patch's retry interval (0: the engine's). */
void klp_patch_set_retry_ms(struct klp_patch *lp, unsigned int ms);
/* The transition in progress, NULL if none. */
struct klp_patch *klp_in_transition(struct klp *k);
void klp_patch_info(const struct klp_patch *lp, struct klp_info *out);
/* Stubs written and not yet freed (tests: the grace period). */
unsigned int klp_stubs_in_use(const struct klp *k);

#endif /* VMPOKE_LIVEPATCH_H */
