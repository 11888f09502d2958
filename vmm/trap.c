// SPDX-License-Identifier: MIT
/*
 * trap.c - both ways a guest INT3 reaches the VMM, feeding one hook.
 *
 * Why two paths: on hardware KVM, KVM_GUESTDBG_USE_SW_BP turns every guest
 * int3 into KVM_EXIT_DEBUG (path a).  On kvm_pvm that never happens
 * (docs/design.md, "Platform facts"), so our guest's #BP stub rings a doorbell instead:
 * "push %rax; inb $VMPOKE_PORT_BP, %al" with the hardware frame
 * [rip, cs, rflags, rsp, ss] at RSP+8 (path b).  Both build the same
 * struct vmm_trap and call the patcher's hook on the vCPU's own thread with
 * no VMM lock held, so the hook can never deadlock against a controller in
 * vmm_sync()/vmm_pause() (sync.c).  The frame is guest memory read through
 * the page walk: a bad RSP is reported as a guest problem, never trusted.
 * The port exit can only come from CPL0 (IOPL is 0 on this KVM and our
 * guest grants no I/O bitmap), so the frame is the kernel's own.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm_internal.h"

/*
 * Publish (fn, opaque) as one pointer to a record nobody writes again: a
 * vCPU that loads it calls fn with that fn's own opaque, never one half of
 * an old pair and one half of a new one (an unhook once gave
 * traptable_hook() a NULL patcher).  The replaced record may still be in
 * use by a vCPU inside the hook; it is freed only once a vmm_sync() that
 * started after the swap has succeeded (every vCPU passed the top of its
 * loop, outside any hook), as the patcher reclaims its site snapshots.
 */
int vmm_set_trap_hook(struct vm *vm, vmm_trap_fn fn, void *opaque)
{
	struct trap_hook *h = NULL, *old;

	if (fn) {
		h = calloc(1, sizeof(*h));
		if (!h)
			return -ENOMEM;
		h->fn = fn;
		h->opaque = opaque;
	}
	old = atomic_exchange(&vm->trap_hook, h);
	if (!old)
		return 0;
	pthread_mutex_lock(&vm->hook_lock);
	old->retired_seq = ++vm->hook_retire_seq;
	old->next_retired = vm->hook_retired;
	vm->hook_retired = old;
	pthread_mutex_unlock(&vm->hook_lock);
	return 0;
}

uint64_t trap_hook_mark(struct vm *vm)
{
	uint64_t mark;

	pthread_mutex_lock(&vm->hook_lock);
	mark = vm->hook_retire_seq;
	pthread_mutex_unlock(&vm->hook_lock);
	return mark;
}

void trap_hook_reclaim(struct vm *vm, uint64_t mark)
{
	struct trap_hook **pp, *h;

	pthread_mutex_lock(&vm->hook_lock);
	pp = &vm->hook_retired;
	while ((h = *pp)) {
		if (h->retired_seq <= mark) {
			*pp = h->next_retired;
			free(h);
		} else {
			pp = &h->next_retired;
		}
	}
	pthread_mutex_unlock(&vm->hook_lock);
}

static enum vmm_trap_verdict trap_call_hook(struct vcpu *v, struct vmm_trap *t)
{
	const struct trap_hook *h = atomic_load_explicit(&v->vm->trap_hook,
							 memory_order_acquire);

	atomic_fetch_add_explicit(&v->traps, 1, memory_order_relaxed);
	if (!h)
		return VMM_TRAP_FOREIGN;
	return h->fn(t, h->opaque);
}

/* What the #BP stub leaves at its %rsp while it sits in the inb: its saved
 * %rax, then the hardware frame. */
struct trap_frame {
	uint64_t rax;
	uint64_t rip, cs, rflags, rsp, ss;
};

/* The arithmetic flags (CF PF AF ZF SF OF): all a hook may change. */
#define TRAP_ARITH_FLAGS	0x8d5ull

/*
 * The interrupted context's registers, from the stub's: the stub changed
 * only %rax (saved at its %rsp), %rsp and %rip (in the frame), and the
 * flags the CPU saved in the frame.
 */
static void trap_context_regs(const struct kvm_regs *stub, const struct trap_frame *f,
			      struct kvm_regs *ctx)
{
	*ctx = *stub;
	ctx->rax = f->rax;
	ctx->rip = f->rip;
	ctx->rsp = f->rsp;
	ctx->rflags = f->rflags;
}

/*
 * The doorbell's work on guest memory, pure so it is unit tested: read the
 * stub's saved %rax and the frame at stub->rsp, let the hook run on the
 * interrupted context, write the frame back.  *stub comes back as the
 * stub's registers must be, *set_regs when they changed.
 *
 * The int3 stack gap.  A trap from CPL0 pushes its frame on the
 * interrupted stack itself; when that RSP was 16-byte aligned the frame's
 * SS slot is exactly where an emulated CALL pushes its return address.
 * Linux's #BP entry leaves a gap for this (int3_emulate_push()); we move
 * the stub's stack instead: when the hook wrote below the interrupted RSP
 * into the stub's saved %rax or frame, both go below the push and the
 * stub's %rsp follows them.  The stub reaches both only through %rsp
 * (vmpoke_abi.h), so its "pop %rax; iretq" resumes the callee with the
 * return address in place.  A CPL3 trap's frame is on RSP0, away from the
 * user stack.
 */
int trap_doorbell_frame(const struct guest_ram *ram, uint64_t cr3, struct kvm_regs *stub,
			struct vmm_trap *t,
			enum vmm_trap_verdict (*hook)(void *ctx, struct vmm_trap *t),
			void *ctx, bool *set_regs)
{
	uint64_t at = stub->rsp, lo, hi;
	struct trap_frame f;
	struct kvm_regs cx;

	*set_regs = false;
	if (at + sizeof(f) < at || gva_read(ram, cr3, at, &f, sizeof(f)) || f.rip == 0)
		return TRAP_DB_BAD_FRAME;
	trap_context_regs(stub, &f, &cx);
	t->addr = f.rip - 1;
	t->rip = f.rip;
	t->rsp = f.rsp;
	t->rflags = f.rflags;
	t->cpl = f.cs & 3;
	t->regs = &cx;
	if (hook(ctx, t) != VMM_TRAP_HANDLED)
		return TRAP_DB_FOREIGN;
	lo = t->rsp;		/* what the hook may have pushed: [lo, hi) */
	hi = f.rsp;
	f.rip = t->rip;
	f.rsp = t->rsp;
	if (t->regs_dirty) {
		/* The stub's own %rip, %rsp and %rax stay; the rest is the context's. */
		f.rax = cx.rax;
		f.rflags = (f.rflags & ~TRAP_ARITH_FLAGS) | (cx.rflags & TRAP_ARITH_FLAGS);
		cx.rip = stub->rip;
		cx.rsp = stub->rsp;
		cx.rax = stub->rax;
		cx.rflags = stub->rflags;
		*stub = cx;
		*set_regs = true;
	}
	if (t->cpl == 0 && lo < hi && lo < at + sizeof(f) && hi > at) {
		if (lo < sizeof(f))
			return TRAP_DB_BAD_FRAME;
		at = lo - sizeof(f);
		stub->rsp = at;
		*set_regs = true;
	}
	if (gva_write(ram, cr3, at, &f, sizeof(f)))
		return TRAP_DB_BAD_FRAME;
	return TRAP_DB_RESUME;
}

static enum vmm_trap_verdict trap_doorbell_hook(void *ctx, struct vmm_trap *t)
{
	return trap_call_hook(ctx, t);
}

/* Path (b): IN from VMPOKE_PORT_BP/DB; *reply is the byte the IN returns. */
int trap_doorbell(struct vcpu *v, unsigned int port, uint8_t *reply)
{
	struct kvm_regs regs;
	struct vmm_trap t;
	uint64_t stub_rsp;
	char sym[160];
	bool set;
	int r;

	*reply = VMPOKE_BP_FOREIGN;
	if (port == VMPOKE_PORT_DB)
		return 0;	/* no #DB users in the VMM: the guest handles it */
	/*
	 * On path (a) every int3 already reached the hook as a debug exit;
	 * one that rings here is a foreign #BP we re-injected (or an
	 * "int $3", which no #BP intercept sees).  Asking the hook again
	 * would count it twice and let a site published in between claim it.
	 */
	if (v->vm->trap_path == VMM_TRAP_DEBUG_EXIT)
		return 0;
	if (vcpu_get_regs(v, &regs)) {
		vm_end(v->vm, VMM_HOST_ERROR, (int)v->id, NULL,
		       "host error: vcpu %u: KVM_GET_REGS at #BP doorbell: %s",
		       v->id, strerror(errno));
		return 1;
	}
	atomic_store(&v->last_rip, regs.rip);
	stub_rsp = regs.rsp;
	t = (struct vmm_trap){ .vm = v->vm, .vcpu = v->id, .path = VMM_TRAP_DOORBELL };
	r = trap_doorbell_frame(&v->vm->ram, VMPOKE_PML4_GPA, &regs, &t,
				trap_doorbell_hook, v, &set);
	if (r == TRAP_DB_FOREIGN)
		return 0;
	if (r == TRAP_DB_BAD_FRAME) {
		struct vmm_result d = { .fault = { .vector = 3, .rip = regs.rip,
			.rsp = stub_rsp, .vcpu = v->id, .task = -1 } };

		vm_end(v->vm, VMM_GUEST_FAULT, (int)v->id, &d,
		       "guest fault: vcpu %u: #BP doorbell with an unreadable or "
		       "unwritable frame at rsp 0x%llx, from %s", v->id,
		       (unsigned long long)stub_rsp,
		       vmm_symbolize(v->vm, regs.rip, sym, sizeof(sym)));
		return 1;
	}
	/* Registers a hook changed, or the stack gap: the pending IN completes after. */
	if (set && vcpu_set_regs(v, &regs)) {
		vm_end(v->vm, VMM_HOST_ERROR, (int)v->id, NULL,
		       "host error: vcpu %u: setting registers at #BP doorbell: %s",
		       v->id, strerror(errno));
		return 1;
	}
	*reply = VMPOKE_BP_RESUME;
	return 0;
}

/*
 * Path (a): KVM_EXIT_DEBUG, exception 3; debug.arch.pc is the INT3 itself
 * and RIP has not moved.  HANDLED: set rip/rsp.  FOREIGN: hand the #BP to
 * the guest with KVM_GUESTDBG_INJECT_BP, which queues a soft exception
 * whose instruction length KVM saved at the exit, so the guest's handler
 * sees ip = int3 + 1 exactly as without debugging.
 */
int trap_debug_exit(struct vcpu *v)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs, ctx;
	struct vmm_trap t;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		goto fail;
	atomic_store(&v->last_rip, regs.rip);
	ctx = regs;
	ctx.rip = v->run->debug.arch.pc + 1;
	t = (struct vmm_trap){ .vm = v->vm, .vcpu = v->id,
		.path = VMM_TRAP_DEBUG_EXIT, .addr = v->run->debug.arch.pc,
		.rip = v->run->debug.arch.pc + 1, .rsp = regs.rsp,
		.rflags = regs.rflags, .regs = &ctx, .cpl = sregs.cs.selector & 3 };
	if (trap_call_hook(v, &t) == VMM_TRAP_HANDLED) {
		if (t.regs_dirty) {
			ctx.rflags = (regs.rflags & ~TRAP_ARITH_FLAGS) |
				     (ctx.rflags & TRAP_ARITH_FLAGS);
			regs = ctx;
		}
		regs.rip = t.rip;
		regs.rsp = t.rsp;
		if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
			goto fail;
	} else {
		struct kvm_guest_debug gd = { .control = KVM_GUESTDBG_ENABLE |
			KVM_GUESTDBG_USE_SW_BP | KVM_GUESTDBG_INJECT_BP };

		if (ioctl(v->fd, KVM_SET_GUEST_DEBUG, &gd) < 0)
			goto fail;
	}
	return 0;
fail:
	vm_end(v->vm, VMM_HOST_ERROR, (int)v->id, NULL,
	       "host error: vcpu %u: debug-exit trap: %s", v->id, strerror(errno));
	return 1;
}

/*
 * VMPOKE_HC_PROBE: an optimized probe's detour rang (a CPL3 MMIO store of
 * %rax, VMM-written, its first instruction), so every register is the
 * probed context's, and KVM has already moved RIP past the store.  The
 * hook finds the detour by that RIP (trap->addr), runs the handler and
 * says where to go on: the rest of the detour, or the handler's RIP.
 * No entry for it (the detour is going away): carry on in the detour.
 */
int trap_probe_doorbell(struct vcpu *v)
{
	struct kvm_regs regs, ctx;
	struct vmm_trap t;

	if (vcpu_get_regs(v, &regs))
		goto fail;
	atomic_store(&v->last_rip, regs.rip);
	ctx = regs;
	t = (struct vmm_trap){ .vm = v->vm, .vcpu = v->id, .path = VMM_TRAP_DOORBELL,
		.addr = regs.rip, .rip = regs.rip, .rsp = regs.rsp,
		.rflags = regs.rflags, .regs = &ctx, .cpl = 3 };
	if (trap_call_hook(v, &t) != VMM_TRAP_HANDLED)
		return 0;
	if (t.regs_dirty) {
		ctx.rflags = (regs.rflags & ~TRAP_ARITH_FLAGS) |
			     (ctx.rflags & TRAP_ARITH_FLAGS);
		regs = ctx;
	}
	if (!t.regs_dirty && regs.rip == t.rip && regs.rsp == t.rsp)
		return 0;
	regs.rip = t.rip;
	regs.rsp = t.rsp;
	if (vcpu_set_regs(v, &regs))
		goto fail;
	return 0;
fail:
	vm_end(v->vm, VMM_HOST_ERROR, (int)v->id, NULL,
	       "host error: vcpu %u: registers at a probe doorbell: %s", v->id,
	       strerror(errno));
	return 1;
}
