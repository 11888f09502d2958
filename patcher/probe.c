// SPDX-License-Identifier: MIT
/*
 * probe.c - INT3 probes (include/probe.h): kprobes, driven from outside.
 *
 * Placement (probe_add, controller thread, under p->lock):
 *   1. the point must be trappable code: in a function symbol, not in the
 *      trap-entry text (seed 001 in docs/design.md: the code that runs the
 *      tracer), not in the XOL region (the trap path runs slots), and - on
 *      the doorbell path, where a CPL0 int3 kills a kvm_pvm guest - not in
 *      CPL0 text;
 *   2. decoding the containing function from its start, with the bytes
 *      under our own INT3s recovered, must land on the point (boundary),
 *      and the byte there must not be a foreign INT3 or a live entry;
 *   3. probe_insn.c decides how the instruction will run: emulated, out
 *      of line, or refused by name;
 *   4. an out-of-line probe (and an emulated one that touches the stack,
 *      as its fallback) gets an XOL slot: relocated copy + JMP back or
 *      INT3; the INT3's trap entry is published before the head is armed;
 *   5. the head is armed through the protocol (arm.c): entry published,
 *      INT3 written, sync.  The head stays INT3 until probe_remove().
 *
 * A hit (probe_hit, the vCPU's own thread, inside the trap hook; no lock):
 * the handler sees the registers at the probe address; then the original
 * instruction runs without its bytes ever being put back: emulated on the
 * register file, or by resuming in the slot.  One exit per hit for
 * emulated and boosted probes, two for slots that end in INT3.
 *
 * Recursion and deadlock (seeds 001, 003): the handler runs on the vCPU
 * thread with no lock held, so a controller waiting in a sync is never
 * waited for.  A hit on a vCPU whose handler is running counts as missed
 * (kprobes' reenter_kprobe()).  A handler that returns SKIP with RIP at a
 * probe makes the very next instruction the probe again: that next hit on
 * the same vCPU counts as missed and runs the original, so a handler can
 * never loop the guest on one probe (the next hit of the same context:
 * same vCPU, same stack).  Code the trap path runs (entry text,
 * CPL0 text, the slots) is refused at placement.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe_internal.h"
#include "symtab.h"

const char *const probe_reasons[] = {
	"not_code",		/* data, XOL slots, undecodable bytes */
	"not_in_function",	/* no function symbol contains the address */
	"not_boundary",		/* not an instruction start, decoding from the function */
	"entry_text",		/* the guest's trap-entry text (seed 001) */
	"cpl0_untrappable",	/* CPL0 text where a CPL0 int3 cannot be trapped */
	"foreign_int3",		/* an INT3 that is not ours is there */
	"live_site",		/* a patch site or another probe is live there */
	"far_transfer",		/* far CALL/JMP/RET */
	"iret",
	"int",			/* INT n, INT3, INT1, INTO */
	"hlt",
	"syscall",		/* SYSCALL/SYSRET/SYSENTER/SYSEXIT */
	"mov_ss",		/* MOV SS (POP SS is invalid in 64-bit mode) */
	"vmx",			/* VMCALL and friends */
	"indirect_call_mem",	/* call *mem: would push a slot address */
	"rip_rel_unreachable",	/* a RIP-relative operand cannot reach from the slot */
	"too_long",		/* relocated bytes do not fit the slot */
	"unsupported",		/* e.g. a 66-prefixed branch */
	"kind_unsupported",	/* an unknown probe kind */
	"jump_into_range",	/* optimized: a jump lands inside the JMP's 5 bytes (reported as jump_into_range@+off) */
	"indirect_jump",	/* optimized: a jump table in the function */
	"leaves_function",	/* optimized: the displaced bytes run past the function */
	"call_in_region",	/* optimized: a CALL that is not the last displaced instruction */
	"shadow_busy",		/* optimized: a context stayed inside the displaced range */
	"max_hits",		/* optimized: a detour cannot stop at max_hits */
	"has_handler",		/* optimized: a handler's doorbell cannot run in CPL0 text */
	"no_slot",		/* the XOL region is full or missing */
	"no_decoder",		/* Capstone could not start */
	"fault",		/* guest memory not mapped */
	"sync",			/* a vCPU did not acknowledge a sync */
	"no_memory",
	"in_handler",		/* called from a vCPU thread: it would wait for itself */
	NULL,
};

static struct probe *probe_refuse(const char **reason, const char *name, char *msg,
				  size_t msglen, const char *where, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static struct probe *probe_refuse(const char **reason, const char *name, char *msg,
				  size_t msglen, const char *where, const char *fmt, ...)
{
	char detail[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	if (reason)
		*reason = name;
	if (msg && msglen)
		snprintf(msg, msglen, "%s: %s: %s", where, name, detail);
	return NULL;
}

static struct probe_state *probe_state(struct patcher *p)
{
	if (p->probes)
		return p->probes;
	p->probes = calloc(1, sizeof(*p->probes));
	return p->probes;
}

/* [lo, hi) of a pair of boundary symbols, false if the image lacks them. */
static bool sym_range(const struct symtab *st, const char *a, const char *b,
		      uint64_t *lo, uint64_t *hi)
{
	const struct sym *x = st ? symtab_find(st, a) : NULL;
	const struct sym *y = st ? symtab_find(st, b) : NULL;

	if (!x || !y || y->addr < x->addr)
		return false;
	*lo = x->addr;
	*hi = y->addr;
	return true;
}

/*
 * Can the host trap an INT3 at addr at all?  Not in CPL0 text where the
 * host probe says a CPL0 int3 cannot be trapped (kvm_pvm: the guest ends
 * with KVM_EXIT_INTERNAL_ERROR; docs/design.md, "Platform facts"):
 * patcher_cpl0_trappable().
 */
static bool probe_trappable(struct patcher *p, uint64_t addr)
{
	return !patcher_addr_is_cpl0(p, addr) || patcher_cpl0_trappable(p);
}

/* A live entry (site or probe) covering addr, from the current snapshot. */
static const struct poke_live *probe_live_at(struct patcher *p, uint64_t addr)
{
	const struct poke_snapshot *s = atomic_load_explicit(&p->table.cur,
							     memory_order_acquire);

	for (size_t i = 0; s && i < s->n; i++)
		if (addr >= s->e[i].addr && addr < s->e[i].addr + (s->e[i].len ? s->e[i].len : 1))
			return &s->e[i];
	return NULL;
}

/* Does the emulated instruction touch the stack (and so may fault)? */
static bool emu_touches_stack(enum poke_emu_kind k)
{
	switch (k) {
	case POKE_EMU_CALL: case POKE_EMU_RET: case POKE_EMU_RET_IMM:
	case POKE_EMU_CALL_REG: case POKE_EMU_PUSH: case POKE_EMU_POP:
		return true;
	default:
		return false;
	}
}

/* Fill and write the slot; 0, or -1 with *reason and detail. */
static int probe_slot_setup(struct patcher *p, struct probe *pr, const char **reason,
			    char *detail, size_t dlen)
{
	struct probe_xol *x = &p->probes->xol;
	uint8_t bytes[PROBE_SLOT_SIZE];
	size_t n, ret_at;

	pr->slot = xol_alloc(p, x, detail, dlen);
	if (pr->slot < 0) {
		*reason = "no_slot";
		return -1;
	}
	pr->slot_addr = xol_slot_addr(x, pr->slot);
	memset(bytes, POKE_INT3, sizeof(bytes));
	if (probe_insn_slot(&pr->insn, pr->addr, pr->slot_addr, bytes, sizeof(bytes),
			    &n, &ret_at, reason)) {
		snprintf(detail, dlen, "%s cannot run at 0x%" PRIx64, pr->insn.text,
			 pr->slot_addr);
		xol_unuse(x, pr->slot);
		pr->slot = -1;
		return -1;
	}
	/* FREE means nothing executes it: a plain write is safe. */
	if (vmm_gva_write(p->vm, pr->slot_addr, bytes, sizeof(bytes))) {
		*reason = "fault";
		snprintf(detail, dlen, "slot 0x%" PRIx64 " not writable", pr->slot_addr);
		xol_unuse(x, pr->slot);
		pr->slot = -1;
		return -1;
	}
	if (bytes[ret_at] == POKE_INT3)
		pr->ret_entry = pr->slot_addr + ret_at;
	return 0;
}

/* Publish the slot's closing INT3: rip there means "go on at addr + len". */
static int probe_publish_ret(struct patcher *p, struct probe *pr)
{
	struct poke_live e;

	if (!pr->ret_entry)
		return 0;
	memset(&e, 0, sizeof(e));
	e.addr = pr->ret_entry;
	e.len = 1;
	e.role = LIVE_PROBE_RET;
	e.old[0] = POKE_INT3;
	e.emu.kind = POKE_EMU_JMP;
	e.emu.target = pr->addr + pr->insn.len;
	e.probe = pr;
	return traptable_add_live(&p->table, &e, 1);
}

static void probe_reap_locked(struct patcher *p);

struct probe *probe_add(struct patcher *p, uint64_t addr, const struct probe_opts *o,
			const char **reason, char *msg, size_t msglen)
{
	const struct symtab *st = vmm_symtab(p->vm);
	struct probe_opts opts = { 0 };
	struct probe_state *ps;
	const struct poke_live *live;
	struct decode_scan sc;
	const struct sym *fn;
	struct probe *pr = NULL, *ret = NULL;
	uint8_t *code = NULL;
	char where[96], detail[256], lw[96];
	const char *why = NULL;
	uint64_t off, lo, hi;
	enum poke_err err;

	if (o)
		opts = *o;
	if (msg && msglen)
		msg[0] = '\0';
	if (reason)
		*reason = NULL;
	site_where(p, addr, where, sizeof(where));
	if (opts.kind != PROBE_KIND_INT3 && opts.kind != PROBE_KIND_AUTO &&
	    opts.kind != PROBE_KIND_OPTIMIZED)
		return probe_refuse(reason, "kind_unsupported", msg, msglen, where,
				    "unknown probe kind %d", (int)opts.kind);
	if (vmm_on_vcpu_thread())
		return probe_refuse(reason, "in_handler", msg, msglen, where,
				    "probe_add called from a vCPU thread (a handler): it "
				    "would wait for its own vCPU's sync acknowledgement");

	pthread_mutex_lock(&p->lock);
	probe_reap_locked(p);
	ps = probe_state(p);
	if (!ps) {
		probe_refuse(reason, "no_memory", msg, msglen, where, "out of memory");
		goto out;
	}
	if (!ps->xol_tried) {
		ps->xol_tried = true;
		xol_init(p, &ps->xol, ps->xol_err, sizeof(ps->xol_err));
	}
	/* 1. trappable code */
	if (xol_contains(&ps->xol, addr)) {
		probe_refuse(reason, "not_code", msg, msglen, where,
			     "inside the VMM-owned out-of-line region (the trap path runs it)");
		goto out;
	}
	fn = st ? symtab_lookup(st, addr, &off) : NULL;
	if (!fn) {
		probe_refuse(reason, "not_in_function", msg, msglen, where,
			     "no symbol contains this address");
		goto out;
	}
	if (fn->type != 'T' && fn->type != 't') {
		probe_refuse(reason, "not_code", msg, msglen, where,
			     "%s is a data symbol (type '%c')", fn->name, fn->type);
		goto out;
	}
	if (!fn->size || fn->size > POKE_MAX_FUNC_SIZE) {
		probe_refuse(reason, "not_in_function", msg, msglen, where,
			     "%s has no usable size (0x%" PRIx64 ")", fn->name, fn->size);
		goto out;
	}
	if (sym_range(st, VMPOKE_SYM_ENTRY_START, VMPOKE_SYM_ENTRY_END, &lo, &hi) &&
	    addr >= lo && addr < hi) {
		probe_refuse(reason, "entry_text", msg, msglen, where,
			     "inside trap-entry text (%s..%s): the trap path runs it",
			     VMPOKE_SYM_ENTRY_START, VMPOKE_SYM_ENTRY_END);
		goto out;
	}
	if (!probe_trappable(p, addr)) {
		probe_refuse(reason, "cpl0_untrappable", msg, msglen, where,
			     "CPL0 text, outside %s..%s: this host cannot trap a "
			     "CPL0 int3 (vmpoke doctor: cpl0 int3)",
			     VMPOKE_SYM_USER_TEXT_START, VMPOKE_SYM_USER_TEXT_END);
		goto out;
	}
	/* 2. boundary, foreign INT3, live entries */
	live = probe_live_at(p, addr);
	if (live) {
		site_where(p, live->addr, lw, sizeof(lw));
		probe_refuse(reason, "live_site", msg, msglen, where, "%s is live at %s",
			     live->role == LIVE_SITE ? "a patch site" : "a probe", lw);
		goto out;
	}
	code = malloc(fn->size);
	if (!code) {
		probe_refuse(reason, "no_memory", msg, msglen, where, "out of memory");
		goto out;
	}
	if (vmm_gva_read(p->vm, fn->addr, code, fn->size)) {
		probe_refuse(reason, "fault", msg, msglen, where,
			     "%s is not mapped in guest memory", fn->name);
		goto out;
	}
	site_recover(p, code, fn->addr, fn->size);
	if (decode_scan_function(code, fn->size, fn->addr, addr, 1, &sc)) {
		probe_refuse(reason, "no_decoder", msg, msglen, where, "cannot start Capstone");
		goto out;
	}
	if (!sc.at_boundary) {
		bool stopped = sc.stop_at && !sc.complete && sc.stop_at <= addr;

		if (stopped && sc.untrusted_at) {
			site_where(p, sc.untrusted_at, lw, sizeof(lw));
			probe_refuse(reason, "not_boundary", msg, msglen, where,
				     "past the branch at %s, which Capstone and the CPU read "
				     "differently, no instruction boundary can be trusted", lw);
			goto out;
		}
		/* decoding stopped right here: these bytes are no instruction */
		if (stopped && sc.stop_at == addr) {
			probe_refuse(reason, "not_code", msg, msglen, where,
				     "no instruction decodes here (byte 0x%02x)", code[off]);
			goto out;
		}
		if (stopped)
			site_where(p, sc.stop_at, lw, sizeof(lw));
		probe_refuse(reason, "not_boundary", msg, msglen, where,
			     "not an instruction boundary of %s%s%s%s", fn->name,
			     stopped ? " (decoding stopped at " : "", stopped ? lw : "",
			     stopped ? ")" : "");
		goto out;
	}
	if (code[off] == POKE_INT3) {
		probe_refuse(reason, "foreign_int3", msg, msglen, where,
			     "an INT3 that vmpoke did not write is there");
		goto out;
	}
	/* 3. how the instruction will run */
	pr = calloc(1, sizeof(*pr));
	if (!pr) {
		probe_refuse(reason, "no_memory", msg, msglen, where, "out of memory");
		goto out;
	}
	pr->p = p;
	pr->addr = addr;
	pr->opts = opts;
	pr->slot = -1;
	snprintf(pr->where, sizeof(pr->where), "%s", where);
	if (probe_insn_decode(code + off, fn->size - off, addr, &pr->insn, &why,
			      detail, sizeof(detail))) {
		probe_refuse(reason, why, msg, msglen, where, "%s", detail);
		goto out;
	}
	/* 4. the slot: out of line, or the emulation's fallback */
	if (pr->insn.exec == PROBE_EXEC_SLOT || emu_touches_stack(pr->insn.emu.kind)) {
		if (!ps->xol.ok) {
			probe_refuse(reason, "no_slot", msg, msglen, where, "%s needs an "
				     "out-of-line slot: %s", pr->insn.text, ps->xol_err);
			goto out;
		}
		if (probe_slot_setup(p, pr, &why, detail, sizeof(detail))) {
			probe_refuse(reason, why, msg, msglen, where, "%s", detail);
			goto out;
		}
		if (probe_publish_ret(p, pr)) {
			xol_unuse(&ps->xol, pr->slot);
			probe_refuse(reason, "no_memory", msg, msglen, where, "out of memory");
			goto out;
		}
	}
	/* 5. arm the head: published, INT3, sync */
	pr->head.addr = addr;
	pr->head.len = pr->insn.len;
	pr->head.role = LIVE_PROBE;
	memcpy(pr->head.old, pr->insn.bytes, pr->insn.len);
	pr->head.emu = pr->insn.emu;
	pr->head.probe = pr;
	err = poke_arm_locked(p, &pr->head, where, detail, sizeof(detail));
	if (err) {
		probe_refuse(reason, err == POKE_E_SYNC ? "sync" : "fault", msg, msglen,
			     where, "%s", detail);
		/*
		 * A vCPU that did not acknowledge may still be in the trap
		 * hook with this probe's entry, or in its slot: keep both
		 * until teardown (probe_free_all(), after the final sync), as
		 * a removed probe, rather than free them under it.
		 */
		if (err == POKE_E_SYNC) {
			atomic_store(&pr->removed, true);
			pr->next = ps->list;
			ps->list = pr;
			pr = NULL;
			goto out;
		}
		if (pr->slot >= 0)
			xol_release(&ps->xol, pr->slot, pr->ret_entry);
		goto out;
	}
	pr->next = ps->list;
	ps->list = pr;
	ret = pr;
	/*
	 * 6. optimized and auto: the armed INT3 probe becomes a JMP to a
	 * detour where the site allows; where not, it stays INT3 and
	 * opt_refused names the rule (probe_opt_refusal()).
	 */
	if (opts.kind != PROBE_KIND_INT3)
		optprobe_optimize_locked(p, pr, code, fn->addr, fn->size, &why,
					 detail, sizeof(detail));
	pr = NULL;
out:
	pthread_mutex_unlock(&p->lock);
	free(pr);
	free(code);
	return ret;
}

static int probe_remove_locked(struct probe *pr, char *msg, size_t msglen)
{
	struct patcher *p = pr->p;
	enum poke_err err;

	if (atomic_load(&pr->removed))
		return 0;
	if (optprobe_unoptimize_locked(p, pr, msg, msglen))
		return -1;	/* still optimized: the JMP and its detour stay */
	err = poke_disarm_locked(p, &pr->head, pr->where, msg, msglen);
	if (err)
		return -1;	/* still armed: the entry stays, hits stay handled */
	if (pr->slot >= 0)
		xol_release(&p->probes->xol, pr->slot, pr->ret_entry);
	atomic_store(&pr->removed, true);
	return 0;
}

int probe_remove(struct probe *pr, char *msg, size_t msglen)
{
	struct patcher *p;
	int r;

	if (msg && msglen)
		msg[0] = '\0';
	if (!pr) {
		if (msg && msglen)
			snprintf(msg, msglen, "no probe");
		return -1;
	}
	p = pr->p;
	if (vmm_on_vcpu_thread()) {
		if (msg && msglen)
			snprintf(msg, msglen, "%s: in_handler: probe_remove called from a "
				 "vCPU thread (a handler) would wait for itself; refused",
				 pr->where);
		return -1;
	}
	pthread_mutex_lock(&p->lock);
	r = probe_remove_locked(pr, msg, msglen);
	if (!r)
		probe_reap_locked(p);
	pthread_mutex_unlock(&p->lock);
	return r;
}

static bool probe_spent(const struct probe *pr)
{
	return pr->opts.max_hits &&
	       atomic_load_explicit(&pr->hits, memory_order_relaxed) >= pr->opts.max_hits;
}

static void probe_reap_locked(struct patcher *p)
{
	char msg[256];

	if (!p->probes)
		return;
	for (struct probe *pr = p->probes->list; pr; pr = pr->next) {
		if (!atomic_load(&pr->removed) && probe_spent(pr))
			probe_remove_locked(pr, msg, sizeof(msg));
		if (pr->retired)
			optprobe_reap_locked(p, pr);
	}
}

void probe_reap(struct patcher *p)
{
	if (vmm_on_vcpu_thread())
		return;
	pthread_mutex_lock(&p->lock);
	probe_reap_locked(p);
	pthread_mutex_unlock(&p->lock);
}

void probe_counts(const struct probe *pr, struct probe_counts *c)
{
	struct probe *q = (struct probe *)pr;	/* atomics are read, not written */
	uint64_t detour_hits;

	memset(c, 0, sizeof(*c));
	c->hits = atomic_load(&q->hits);
	c->missed = atomic_load(&q->missed);
	for (unsigned int i = 0; i < VMPOKE_MAX_VCPUS; i++)
		c->per_vcpu[i] = atomic_load(&q->per_vcpu[i]);
	/* the detours' counters: hits that never left the guest */
	optprobe_counts(pr, c->per_vcpu, &detour_hits);
	c->hits += detour_hits;
}

uint64_t probe_addr(const struct probe *pr)
{
	return pr->addr;
}

enum probe_kind probe_kind_of(const struct probe *pr)
{
	return atomic_load(&pr->detour) ? PROBE_KIND_OPTIMIZED : PROBE_KIND_INT3;
}

const char *probe_opt_refusal(const struct probe *pr)
{
	return pr->opt_refused;
}

/* Controller-side entry points: p->lock, never from a handler. */
static int probe_locked_call(struct probe *pr, char *msg, size_t msglen)
{
	if (msg && msglen)
		msg[0] = '\0';
	if (vmm_on_vcpu_thread() || atomic_load(&pr->removed)) {
		if (msg && msglen)
			snprintf(msg, msglen, "%s: %s", pr->where,
				 atomic_load(&pr->removed) ? "removed" : "in_handler");
		return -1;
	}
	pthread_mutex_lock(&pr->p->lock);
	return 0;
}

int probe_optimize(struct probe *pr, const char **reason, char *msg, size_t msglen)
{
	struct patcher *p = pr->p;
	const struct symtab *st = vmm_symtab(p->vm);
	const struct sym *fn;
	uint8_t *code = NULL;
	char detail[256] = "";
	uint64_t off;
	int r = -1;

	*reason = "in_handler";
	if (probe_locked_call(pr, msg, msglen))
		return -1;
	fn = st ? symtab_lookup(st, pr->addr, &off) : NULL;
	code = fn ? malloc(fn->size) : NULL;
	*reason = "no_memory";
	if (code && !vmm_gva_read(p->vm, fn->addr, code, fn->size)) {
		site_recover(p, code, fn->addr, fn->size);
		r = optprobe_optimize_locked(p, pr, code, fn->addr, fn->size, reason,
					     detail, sizeof(detail));
	}
	if (r && msg && msglen)
		snprintf(msg, msglen, "%s: %s: %s", pr->where, pr->opt_refused[0] ?
			 pr->opt_refused : *reason, detail);
	pthread_mutex_unlock(&p->lock);
	free(code);
	return r;
}

int probe_unoptimize(struct probe *pr, char *msg, size_t msglen)
{
	int r;

	if (probe_locked_call(pr, msg, msglen))
		return -1;
	r = optprobe_unoptimize_locked(pr->p, pr, msg, msglen);
	pthread_mutex_unlock(&pr->p->lock);
	return r;
}

const char *probe_exec_of(const struct probe *pr)
{
	if (pr->insn.exec == PROBE_EXEC_EMULATE)
		return "emulated";
	return pr->insn.boost ? "boosted" : "stepped";
}

bool probe_removed(const struct probe *pr)
{
	return atomic_load((atomic_bool *)&pr->removed);
}

/*
 * Teardown (patcher_destroy, before it unhooks): disarm what is still
 * armed through the protocol, so the guest's text ends as it was; if the
 * vCPUs are gone and a sync cannot complete, put the bytes back plainly.
 */
void probe_destroy_all(struct patcher *p)
{
	struct probe *pr;
	char msg[256];

	if (!p->probes)
		return;
	pthread_mutex_lock(&p->lock);
	for (pr = p->probes->list; pr; pr = pr->next)
		if (!atomic_load(&pr->removed) && probe_remove_locked(pr, msg, sizeof(msg)))
			vmm_gva_write(p->vm, pr->addr, pr->head.old,
				      pr->detour ? pr->region_len : 1);
	pthread_mutex_unlock(&p->lock);
}

/* After the final sync: nothing can reach these any more. */
void probe_free_all(struct patcher *p)
{
	struct probe *pr, *next;

	if (!p->probes)
		return;
	for (pr = p->probes->list; pr; pr = next) {
		struct optprobe_detour *d = pr->detour, *dn;

		next = pr->next;
		free(d);
		for (d = pr->retired; d; d = dn) {
			dn = d->next;
			free(d);
		}
		free(pr);
	}
	xol_free(&p->probes->xol);
	free(p->probes);
	p->probes = NULL;
}

struct probe *probe_list(struct patcher *p)
{
	return p->probes ? p->probes->list : NULL;
}

struct probe_xol *probe_xol_of(struct patcher *p)
{
	return p->probes ? &p->probes->xol : NULL;
}

const struct probe_insn *probe_insn_of(const struct probe *pr)
{
	return &pr->insn;
}

uint64_t probe_slot_of(const struct probe *pr)
{
	return pr->slot_addr;
}

/* ---- the hit path: vCPU thread, inside the trap hook, no lock ---------- */

static int hit_read(void *ctx, uint64_t gva, void *buf, size_t len)
{
	return vmm_gva_read(ctx, gva, buf, len);
}

static int hit_write(void *ctx, uint64_t gva, const void *buf, size_t len)
{
	return vmm_gva_write(ctx, gva, buf, len);
}

/* Take one hit unless max_hits is reached (exact under concurrent vCPUs). */
static bool probe_take_hit(struct probe *pr)
{
	uint_fast64_t h = atomic_load_explicit(&pr->hits, memory_order_relaxed);

	do {
		if (pr->opts.max_hits && h >= pr->opts.max_hits)
			return false;
	} while (!atomic_compare_exchange_weak(&pr->hits, &h, h + 1));
	return true;
}

/* The task vCPU vcpu runs, from its validated per-vCPU block; -1 if none. */
static int probe_task_of(struct patcher *p, unsigned int vcpu)
{
	struct vmpoke_percpu pc;
	int32_t task;

	if (vmm_percpu_read(p->vm, vcpu, &pc, NULL, 0))
		return -1;
	task = pc.current_task;
	return task < 0 || task >= VMPOKE_TASKS_CAPACITY ? -1 : task;
}

static bool skip_consume(struct probe_vcpu *pv, uint64_t addr, uint64_t rsp)
{
	for (unsigned int i = 0; i < PROBE_SKIP_SLOTS; i++) {
		if (pv->skip[i].addr == addr && pv->skip[i].rsp == rsp) {
			pv->skip[i].addr = 0;
			return true;
		}
	}
	return false;
}

/* Only a SKIP that lands on a probe head can come straight back. */
static void skip_note(struct patcher *p, struct probe_vcpu *pv, uint64_t rip,
		      uint64_t rsp)
{
	const struct poke_snapshot *s = atomic_load_explicit(&p->table.cur,
							     memory_order_acquire);
	const struct poke_live *e = traptable_lookup(s, rip);
	unsigned int i;

	if (!e || e->role != LIVE_PROBE)
		return;
	for (i = 0; i < PROBE_SKIP_SLOTS && pv->skip[i].rsp != rsp; i++)
		;
	if (i == PROBE_SKIP_SLOTS)
		i = pv->next++ % PROBE_SKIP_SLOTS;
	pv->skip[i].addr = rip;
	pv->skip[i].rsp = rsp;
}

/* Did anything but rip/rsp change?  Then the VMM must write registers back. */
static bool regs_changed(const struct kvm_regs *a, const struct kvm_regs *b)
{
	struct kvm_regs x = *a, y = *b;

	x.rip = y.rip = 0;
	x.rsp = y.rsp = 0;
	return memcmp(&x, &y, sizeof(x)) != 0;
}

enum vmm_trap_verdict probe_hit(struct patcher *p, const struct poke_live *e,
				struct vmm_trap *t)
{
	struct probe *pr = e->probe;
	struct probe_vcpu *pv = &p->probes->pv[t->vcpu % VMPOKE_MAX_VCPUS];
	struct poke_mem mem = { hit_read, hit_write, t->vm };
	struct kvm_regs local, *r = t->regs, before;
	enum probe_verdict v = PROBE_RESUME;
	uint64_t via;
	bool again;

	if (e->role == LIVE_PROBE_DOORBELL)
		e = &pr->head;		/* an optimized probe's detour rang: a hit there */
	if (!r) {
		/* a trap source without registers: what the frame has */
		memset(&local, 0, sizeof(local));
		local.rsp = t->rsp;
		local.rflags = t->rflags;
		r = &local;
	}
	r->rip = e->addr;
	r->rsp = t->rsp;
	before = *r;
	again = skip_consume(pv, e->addr, r->rsp);
	if (again || pv->in_handler) {
		/* the SKIP we just did brought us straight back, or re-entry */
		atomic_fetch_add(&pr->missed, 1);
		goto original;
	}
	if (!probe_take_hit(pr))
		goto original;		/* max_hits reached: no longer fires */
	if (pr->opts.handler) {
		struct probe_hit_ctx ctx = { .probe = pr, .vcpu = t->vcpu,
			.task = probe_task_of(p, t->vcpu), .regs = r };

		pv->in_handler = true;
		v = pr->opts.handler(&ctx, pr->opts.opaque);
		pv->in_handler = false;
		if (v == PROBE_MISSED) {
			atomic_fetch_sub(&pr->hits, 1);
			atomic_fetch_add(&pr->missed, 1);
			*r = before;
			goto original;
		}
	}
	atomic_fetch_add_explicit(&pr->per_vcpu[t->vcpu % VMPOKE_MAX_VCPUS], 1,
				  memory_order_relaxed);
	if (v == PROBE_SKIP) {
		skip_note(p, pv, r->rip, r->rsp);
		goto done;
	}
	r->rip = e->addr;	/* RESUME: the original runs, wherever rip was set */
original:
	via = atomic_load_explicit(&pr->via, memory_order_acquire);
	if (via) {
		/* being optimized, or optimized: the detour's relocated copy */
		r->rip = via;
		goto done;
	}
	if (pr->insn.exec == PROBE_EXEC_EMULATE) {
		if (poke_emulate_regs(&pr->insn.emu, e->addr, r, &mem)) {
			/*
			 * The stack access faulted: the guest's own instruction
			 * would fault too.  Run it (relocated) in the slot, where
			 * it faults with a real exception frame.
			 */
			atomic_fetch_add(&p->emu_faults, 1);
			if (pr->slot_addr)
				r->rip = pr->slot_addr;
		}
	} else {
		r->rip = pr->slot_addr;
	}
done:
	t->rip = r->rip;
	t->rsp = r->rsp;
	t->regs_dirty = r != &local && regs_changed(r, &before);
	atomic_fetch_add(&p->trap_hits, 1);
	return VMM_TRAP_HANDLED;
}
