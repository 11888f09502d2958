// SPDX-License-Identifier: MIT
/*
 * livepatch.c - livepatch's consistency model from outside the guest
 * (include/livepatch.h; kernel/livepatch/transition.c is the model):
 *
 *   enable:   every task to UNPATCHED, __KLP__ descriptors to TRANSITION,
 *             one batch: each old entry NOP5 -> JMP stub;
 *   retry:    all vCPUs paused; each task not yet at the target that is
 *             not on a vCPU and whose stack walks reliably with no frame
 *             in a body being replaced gets patch_state = target;
 *   complete: one batch: JMP stub -> JMP new (or NOP5 when unpatching),
 *             descriptors to NEW (OLD), the stubs wait out a grace period
 *             (busy_scan(): no vCPU RIP, #BP frame or saved task RIP in
 *             them) and are filled with INT3 again.
 *
 * Why the VMM may write patch_state: it does so only while every vCPU is
 * paused and the task is not current on any of them, so the task sees the
 * change only when it is next scheduled in, outside the replaced bodies
 * (the walk said so).  The bulk writes at the start of a transition touch
 * running tasks, but then no function is in TRANSITION, so no task's
 * version changes (vmpoke_abi.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "elf_load.h"
#include "livepatch.h"
#include "patcher_internal.h"
#include "symtab.h"
#include "vmm.h"

enum { STUB_FREE = 0, STUB_USED, STUB_GRACE };

/* How long a new transition waits for the last one's stubs to empty. */
#define KLP_GRACE_TRIES		20
#define KLP_GRACE_NAP_MS	5

struct klp_func {
	const struct sym *old, *new;
	uint64_t desc;			/* __KLP__<old>, 0 if none */
	int stub;			/* slot, -1 if none */
};

struct klp_patch {
	struct klp *k;
	size_t nr;
	struct klp_func f[KLP_MAX_FUNCS];
	enum klp_state state;
	bool forced;
	uint32_t target;		/* VMPOKE_PATCH_* the transition goes to */
	uint64_t t0_ns;
	uint64_t next_ms;		/* the next retry, on klp_clock_ms() */
	unsigned int retry_ms;
	unsigned int retries, switched;
	size_t nr_pending;
	struct klp_straggler pending[VMPOKE_TASKS_CAPACITY];
	size_t nr_hist;
	struct klp_retry hist[KLP_HISTORY];
	uint64_t syncs;
	double us;
};

struct klp {
	struct patcher *p;
	struct vm *vm;
	const struct symtab *st;
	struct klp_opts o;
	struct elf_section text;	/* the image's .text: prologue analysis */
	uint64_t tasks;			/* vmpoke_tasks */
	uint64_t stubs_lo;
	unsigned int nslots;
	uint8_t *slot;			/* STUB_* */
	struct klp_patch **patches;
	size_t nr_patches;
	struct klp_patch *transition;	/* at most one, as in the kernel */
	struct vmpoke_task_table *tab;	/* scratch for retries */
	uint64_t next_reap_ns;		/* stubs' grace check, every retry_ms */
	unsigned int hz;		/* the guest's tick (boot info), 0: none */
};

static const uint8_t klp_nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };

const char *klp_state_name(enum klp_state s)
{
	static const char *const names[] = { "unpatched", "patching", "patched", "unpatching" };

	return (unsigned int)s < 4 ? names[s] : "?";
}

static uint64_t klp_ps_addr(const struct klp *k, uint32_t task)
{
	return k->tasks + offsetof(struct vmpoke_task_table, tasks) +
	       (uint64_t)task * sizeof(struct vmpoke_task) +
	       offsetof(struct vmpoke_task, patch_state);
}

static uint64_t klp_stub_addr(const struct klp *k, int slot)
{
	return k->stubs_lo + (uint64_t)slot * KLP_STUB_SIZE;
}

/*
 * The retry clock: guest time, as livepatch retries once a second of the
 * kernel's own time.  The guest's tick count (the most any vCPU counted: an
 * offline one stops) over its hz; host time if the guest has no tick.
 */
static uint64_t klp_clock_ms(struct klp *k)
{
	unsigned int n = vmm_nr_vcpus(k->vm);
	struct vmpoke_percpu pc;
	uint64_t ticks = 0;
	char msg[128];

	if (!k->hz)
		return clock_now_ns() / CLOCK_NS_PER_MS;
	for (unsigned int v = 0; v < n; v++)
		if (!vmm_percpu_read(k->vm, v, &pc, msg, sizeof(msg)) && pc.ticks > ticks)
			ticks = pc.ticks;
	return ticks * 1000 / k->hz;
}

/* hz from the boot info the VMM wrote (and the guest could overwrite). */
static unsigned int klp_guest_hz(struct vm *vm)
{
	struct vmpoke_boot_info bi;

	if (vmm_gva_read(vm, VMPOKE_BOOT_INFO_GPA, &bi, sizeof(bi)) ||
	    bi.magic != VMPOKE_BOOT_MAGIC || bi.hz > 100000)
		return 0;
	return bi.hz;
}

struct klp *klp_new(struct patcher *p, struct vm *vm, const char *image,
		    const struct klp_opts *o, char *msg, size_t len)
{
	const struct symtab *st = vmm_symtab(vm);
	const struct sym *lo = st ? symtab_find(st, VMPOKE_SYM_KLP_STUBS_START) : NULL;
	const struct sym *hi = st ? symtab_find(st, VMPOKE_SYM_KLP_STUBS_END) : NULL;
	const struct sym *tasks = st ? symtab_find(st, VMPOKE_SYM_TASKS) : NULL;
	struct klp *k;
	uint64_t gpa;

	if (!lo || !hi || !tasks) {
		snprintf(msg, len, "the image has no %s/%s or %s (guest ABI < 3)",
			 VMPOKE_SYM_KLP_STUBS_START, VMPOKE_SYM_KLP_STUBS_END, VMPOKE_SYM_TASKS);
		return NULL;
	}
	/* Guest-supplied: bounded, aligned, in guest RAM. */
	if (hi->addr <= lo->addr || hi->addr - lo->addr > VMPOKE_KLP_STUBS_MAX_SIZE ||
	    lo->addr % 4096 || hi->addr - lo->addr < KLP_STUB_SIZE ||
	    vmm_gva_to_gpa(vm, lo->addr, &gpa) || vmm_gva_to_gpa(vm, hi->addr - 1, &gpa)) {
		snprintf(msg, len, "bad livepatch stub area 0x%" PRIx64 "..0x%" PRIx64
			 " (page aligned, at most %u bytes, in guest RAM)", lo->addr, hi->addr,
			 VMPOKE_KLP_STUBS_MAX_SIZE);
		return NULL;
	}
	k = calloc(1, sizeof(*k));
	if (!k || !(k->tab = malloc(sizeof(*k->tab)))) {
		free(k);
		snprintf(msg, len, "out of memory");
		return NULL;
	}
	if (elf_section_read(image, ".text", &k->text, msg, len)) {
		klp_free(k);
		return NULL;
	}
	k->p = p;
	k->vm = vm;
	k->st = st;
	k->o = *o;
	if (!k->o.retry_ms)
		k->o.retry_ms = KLP_DEFAULT_RETRY_MS;
	k->tasks = tasks->addr;
	k->hz = klp_guest_hz(vm);
	k->stubs_lo = lo->addr;
	k->nslots = (unsigned int)((hi->addr - lo->addr) / KLP_STUB_SIZE);
	k->slot = calloc(k->nslots, 1);
	if (!k->slot) {
		klp_free(k);
		snprintf(msg, len, "out of memory");
		return NULL;
	}
	return k;
}

void klp_free(struct klp *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->nr_patches; i++)
		free(k->patches[i]);
	free(k->patches);
	free(k->slot);
	free(k->tab);
	free(k->text.data);
	free(k);
}

static const struct sym *klp_func_sym(struct klp *k, const char *name, const char *role,
				      char *msg, size_t len)
{
	const struct sym *s = name ? symtab_find(k->st, name) : NULL;

	if (!s || (s->type != 'T' && s->type != 't') || s->size < 5) {
		snprintf(msg, len, "%s '%s': no function of at least 5 bytes by that name",
			 role, name ? name : "(nil)");
		return NULL;
	}
	if (patcher_addr_is_cpl0(k->p, s->addr)) {
		snprintf(msg, len, "%s '%s': in kernel (CPL0) text; livepatch targets CPL3 "
			 "task text only", role, name);
		return NULL;
	}
	return s;
}

struct klp_patch *klp_patch_new(struct klp *k, const struct klp_func_spec *f, size_t n,
				char *msg, size_t len)
{
	struct klp_patch *lp, **np;

	if (!n || n > KLP_MAX_FUNCS) {
		snprintf(msg, len, "a livepatch has 1..%d functions, not %zu", KLP_MAX_FUNCS, n);
		return NULL;
	}
	lp = calloc(1, sizeof(*lp));
	if (!lp) {
		snprintf(msg, len, "out of memory");
		return NULL;
	}
	lp->k = k;
	lp->nr = n;
	lp->retry_ms = k->o.retry_ms;
	for (size_t i = 0; i < n; i++) {
		struct klp_func *kf = &lp->f[i];
		const struct sym *d;
		char dname[160];

		kf->stub = -1;
		kf->old = klp_func_sym(k, f[i].old, "old", msg, len);
		kf->new = kf->old ? klp_func_sym(k, f[i].new, "new", msg, len) : NULL;
		if (!kf->new)
			goto bad;
		if (kf->new == kf->old) {
			snprintf(msg, len, "'%s' cannot replace itself", kf->old->name);
			goto bad;
		}
		for (size_t j = 0; j < i; j++)
			if (lp->f[j].old == kf->old) {
				snprintf(msg, len, "old '%s' is listed twice", kf->old->name);
				goto bad;
			}
		snprintf(dname, sizeof(dname), VMPOKE_KLP_FUNC_PREFIX "%s", kf->old->name);
		d = symtab_find(k->st, dname);
		if (d && ((d->type != 'D' && d->type != 'd' && d->type != 'B' && d->type != 'b') ||
			  d->size != sizeof(struct vmpoke_klp_func) || (d->addr & 7))) {
			snprintf(msg, len, "%s: not an 8-aligned %zu-byte object", dname,
				 sizeof(struct vmpoke_klp_func));
			goto bad;
		}
		kf->desc = d ? d->addr : 0;
	}
	np = realloc(k->patches, (k->nr_patches + 1) * sizeof(*np));
	if (!np) {
		snprintf(msg, len, "out of memory");
		goto bad;
	}
	k->patches = np;
	k->patches[k->nr_patches++] = lp;
	return lp;
bad:
	free(lp);
	return NULL;
}

/* --- stubs ------------------------------------------------------------------ */

static void klp_stubs_release(struct klp_patch *lp, int to)
{
	for (size_t i = 0; i < lp->nr; i++) {
		if (lp->f[i].stub >= 0)
			lp->k->slot[lp->f[i].stub] = (uint8_t)to;
		lp->f[i].stub = -1;
	}
}

/* A stub per function, written into free slots nobody executes. */
static int klp_stubs_write(struct klp_patch *lp, char *msg, size_t len)
{
	struct klp *k = lp->k;
	uint64_t ps0 = klp_ps_addr(k, 0);

	for (size_t i = 0; i < lp->nr; i++) {
		struct klp_func *kf = &lp->f[i];
		uint8_t code[KLP_STUB_SIZE], back[KLP_STUB_SIZE];
		unsigned int s;
		uint64_t at;

		for (s = 0; s < k->nslots && k->slot[s] != STUB_FREE; s++)
			;
		if (s == k->nslots) {
			snprintf(msg, len, "no free livepatch stub (%u slots; freed ones wait "
				 "out their grace period)", k->nslots);
			goto fail;
		}
		at = klp_stub_addr(k, (int)s);
		if (klp_stub_encode(code, at, ps0, kf->old->addr + 5, kf->new->addr)) {
			snprintf(msg, len, "%s: stub at 0x%" PRIx64 " out of rel32 reach",
				 kf->old->name, at);
			goto fail;
		}
		if (vmm_gva_write(k->vm, at, code, sizeof(code)) ||
		    vmm_gva_read(k->vm, at, back, sizeof(back)) || memcmp(code, back, sizeof(code))) {
			snprintf(msg, len, "%s: cannot write its stub at 0x%" PRIx64,
				 kf->old->name, at);
			goto fail;
		}
		k->slot[s] = STUB_USED;
		kf->stub = (int)s;
	}
	return 0;
fail:
	klp_stubs_release(lp, STUB_FREE);
	return -EIO;
}

/* Free stubs past their grace period: nobody inside, filled with INT3. */
static void klp_stubs_reap(struct klp *k)
{
	struct busy_range r[64];
	unsigned int idx[64], n = 0, culprits;
	char msg[512];

	for (unsigned int s = 0; s < k->nslots && n < 64; s++)
		if (k->slot[s] == STUB_GRACE) {
			r[n].lo = klp_stub_addr(k, (int)s);
			r[n].hi = r[n].lo + KLP_STUB_SIZE;
			r[n].own_int3 = 0;
			snprintf(r[n].what, sizeof(r[n].what), "livepatch stub %u", s);
			idx[n++] = s;
		}
	if (!n || busy_scan(k->p, r, n, msg, sizeof(msg), &culprits) < 0)
		return;
	for (unsigned int i = 0; i < n; i++) {
		uint8_t fill[KLP_STUB_SIZE];

		if (r[i].busy)
			continue;
		memset(fill, 0xcc, sizeof(fill));
		if (!vmm_gva_write(k->vm, r[i].lo, fill, sizeof(fill)))
			k->slot[idx[i]] = STUB_FREE;
	}
}

static bool klp_stubs_graced(const struct klp *k)
{
	for (unsigned int s = 0; s < k->nslots; s++)
		if (k->slot[s] == STUB_GRACE)
			return true;
	return false;
}

static void klp_nap_ms(unsigned int ms)
{
	struct timespec ts = { 0, (long)ms * 1000000 };

	nanosleep(&ts, NULL);
}

unsigned int klp_stubs_in_use(const struct klp *k)
{
	unsigned int n = 0;

	for (unsigned int s = 0; s < k->nslots; s++)
		n += k->slot[s] != STUB_FREE;
	return n;
}

/* --- guest data ------------------------------------------------------------- */

static int klp_desc_write(struct klp_patch *lp, uint32_t state)
{
	for (size_t i = 0; i < lp->nr; i++) {
		const struct klp_func *kf = &lp->f[i];
		uint64_t fn = kf->new->addr;

		if (!kf->desc)
			continue;
		/* func before state: a guest that sees the state sees its func */
		if (vmm_gva_write(lp->k->vm, kf->desc + offsetof(struct vmpoke_klp_func, func),
				  &fn, sizeof(fn)) ||
		    vmm_gva_write(lp->k->vm, kf->desc + offsetof(struct vmpoke_klp_func, state),
				  &state, sizeof(state)))
			return -EFAULT;
	}
	return 0;
}

/* Every task to ps (no function is in transition meanwhile). */
static int klp_tasks_set(struct klp *k, uint32_t ps, char *msg, size_t len)
{
	int err = vmm_tasks_read(k->vm, k->tab, msg, len);

	for (uint32_t i = 0; !err && i < k->tab->nr_tasks; i++)
		if (vmm_gva_write(k->vm, klp_ps_addr(k, i), &ps, sizeof(ps))) {
			snprintf(msg, len, "task %u: cannot write its patch_state", i);
			err = -EFAULT;
		}
	return err;
}

/* --- the entries, through the protocol --------------------------------------- */

static void klp_jmp(uint8_t out[5], uint64_t from, uint64_t to)
{
	int32_t rel = (int32_t)(int64_t)(to - (from + 5));

	out[0] = 0xe9;
	memcpy(out + 1, &rel, 4);
}

/* What an old entry holds when it sends everyone to `to` (0: nowhere, NOP5). */
static void klp_entry(const struct klp_func *kf, uint64_t to, uint8_t out[5])
{
	if (to)
		klp_jmp(out, kf->old->addr, to);
	else
		memcpy(out, klp_nop5, 5);
}

/* One batch: every old entry from `from` bytes to `to` bytes (0 = NOP5). */
static int klp_entries(struct klp_patch *lp, const uint64_t *from, const uint64_t *to,
		       char *msg, size_t len)
{
	struct klp *k = lp->k;
	struct poke_batch *b = poke_batch_new(k->p);
	struct poke_stats s0, s1;
	uint64_t t0 = clock_now_ns();
	enum poke_err e = POKE_OK;
	int ret = 0;

	if (!b) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < lp->nr && e == POKE_OK; i++) {
		uint8_t old[5], new[5], cur[5];
		struct poke_site ps;
		char where[96];

		klp_entry(&lp->f[i], from[i], old);
		klp_entry(&lp->f[i], to[i], new);
		if (vmm_gva_read(k->vm, lp->f[i].old->addr, cur, 5) || memcmp(cur, old, 5)) {
			symtab_format(k->st, lp->f[i].old->addr, where, sizeof(where));
			snprintf(msg, len, "unexpected op at %s: %02x %02x %02x %02x %02x, "
				 "expected %s; nothing written", where, cur[0], cur[1], cur[2],
				 cur[3], cur[4], from[i] ? "a JMP of ours" : "the fentry NOP5");
			poke_batch_free(b);
			return -EILSEQ;
		}
		e = poke_site_prepare(k->p, &ps, lp->f[i].old->addr, old, new, 5, NULL, msg, len);
		if (e == POKE_OK)
			e = poke_batch_add(b, &ps);
	}
	patcher_stats(k->p, &s0);
	if (e == POKE_OK)
		e = poke_batch_finish(b, msg, len);
	patcher_stats(k->p, &s1);
	if (e != POKE_OK) {
		if (!msg[0])
			snprintf(msg, len, "%s", poke_strerror(e));
		ret = -EIO;
	}
	lp->syncs += s1.syncs - s0.syncs;
	lp->us += (double)(clock_now_ns() - t0) / CLOCK_NS_PER_US;
	poke_batch_free(b);
	return ret;
}

static void klp_targets(const struct klp_patch *lp, int which, uint64_t *out)
{
	for (size_t i = 0; i < lp->nr; i++)
		out[i] = which == 0 ? 0 : which == 1 ? lp->f[i].new->addr :
			 lp->f[i].stub >= 0 ? klp_stub_addr(lp->k, lp->f[i].stub) : 0;
}
enum { TO_NOP = 0, TO_NEW = 1, TO_STUB = 2 };

/* --- the transition ---------------------------------------------------------- */

struct klp_mem {
	struct vm *vm;
	const struct klp *k;
};

static int klp_mem_read(void *opaque, uint64_t gva, void *buf, size_t len)
{
	return vmm_gva_read(((struct klp_mem *)opaque)->vm, gva, buf, len);
}

static bool klp_mem_frame_ok(void *opaque, uint64_t rip)
{
	const struct klp *k = ((struct klp_mem *)opaque)->k;
	uint64_t off;
	const struct sym *s = symtab_lookup(k->st, rip, &off);

	if (!s || !s->size || s->addr < k->text.addr || s->addr - k->text.addr > k->text.size ||
	    s->size > k->text.size - (s->addr - k->text.addr))
		return false;
	return klp_frame_ok(k->text.data + (s->addr - k->text.addr), s->size, s->addr, rip);
}

/* Is addr (a RIP, or a return address - 1) in a body this transition replaces? */
static const struct klp_func *klp_busy(const struct klp_patch *lp, uint64_t addr)
{
	for (size_t i = 0; i < lp->nr; i++) {
		const struct klp_func *kf = &lp->f[i];
		const struct sym *body = lp->target == VMPOKE_PATCH_PATCHED ? kf->old : kf->new;
		uint64_t stub = kf->stub >= 0 ? klp_stub_addr(lp->k, kf->stub) : 0;

		if ((addr >= body->addr && addr - body->addr < body->size) ||
		    (addr >= kf->old->addr && addr - kf->old->addr < 5) ||
		    (stub && addr >= stub && addr - stub < KLP_STUB_SIZE))
			return kf;
	}
	return NULL;
}

static void klp_straggle(struct klp_patch *lp, const struct vmpoke_task *t, const char *reason,
			 uint64_t addr, const char *detail)
{
	struct klp_straggler *s = &lp->pending[lp->nr_pending++];
	uint64_t off;
	const struct sym *fn = addr ? symtab_lookup(lp->k->st, addr, &off) : NULL;

	memset(s, 0, sizeof(*s));
	s->task = t->id;
	s->vcpu = t->vcpu;
	s->reason = reason;
	s->addr = addr;
	if (fn)
		snprintf(s->func, sizeof(s->func), "%s", fn->name);
	snprintf(s->detail, sizeof(s->detail), "%s", detail);
}

/* Can task i switch now?  If not, it is recorded as a straggler. */
static bool klp_task_ok(struct klp_patch *lp, const struct vmpoke_task *t, bool running)
{
	struct klp *k = lp->k;
	struct klp_mem mem = { k->vm, k };
	struct klp_walk_ops ops = { klp_mem_read, klp_mem_frame_ok, &mem, k->st };
	struct klp_walk w;
	char where[96];

	if (running) {
		klp_straggle(lp, t, "running", 0, "on a vCPU");
		return false;
	}
	if (k->o.no_stack_check || t->state == VMPOKE_TASK_DONE)
		return true;	/* injected; or never runs again */
	if (klp_stack_walk(&ops, t->ctx.rip, t->ctx.rsp, t->ctx.rbp, t->stack_lo, t->stack_hi,
			   &w)) {
		klp_straggle(lp, t, "unreliable stack", w.n ? w.f[w.n - 1].addr : t->ctx.rip,
			     w.why);
		return false;
	}
	for (size_t i = 0; i < w.n; i++) {
		/* frame 0 is the RIP itself; return addresses belong to the call before */
		uint64_t a = i ? w.f[i].addr - 1 : w.f[i].addr;

		if (klp_busy(lp, a)) {
			symtab_format(k->st, w.f[i].addr, where, sizeof(where));
			klp_straggle(lp, t, "sleeping on function", w.f[i].addr, where);
			return false;
		}
	}
	return true;
}

static void klp_history(struct klp_patch *lp, unsigned int switched)
{
	struct klp_retry *r;

	if (lp->nr_hist == KLP_HISTORY) {
		memmove(lp->hist, lp->hist + 1, (KLP_HISTORY - 1) * sizeof(*lp->hist));
		lp->nr_hist--;
	}
	r = &lp->hist[lp->nr_hist++];
	r->retry = lp->retries;
	r->t_s = (double)(clock_now_ns() - lp->t0_ns) / 1e9;
	r->switched = switched;
	r->pending = (unsigned int)lp->nr_pending;
}

/* Once every task is at the target: the final text, descriptors, stubs to grace. */
static int klp_complete(struct klp_patch *lp, char *msg, size_t len)
{
	uint64_t from[KLP_MAX_FUNCS], to[KLP_MAX_FUNCS];
	bool patched = lp->target == VMPOKE_PATCH_PATCHED;
	int err;

	klp_targets(lp, TO_STUB, from);
	klp_targets(lp, patched ? TO_NEW : TO_NOP, to);
	err = klp_entries(lp, from, to, msg, len);
	if (err)
		return err;
	klp_desc_write(lp, patched ? VMPOKE_KLP_NEW : VMPOKE_KLP_OLD);
	klp_stubs_release(lp, STUB_GRACE);
	lp->state = patched ? KLP_PATCHED : KLP_UNPATCHED;
	lp->k->transition = NULL;
	return 0;
}

/*
 * One look at the stopped world: pause, switch who can switch, resume.
 * force: everyone, no questions, FORCED or'd in.  Rebuilds lp->pending.
 */
static int klp_pass(struct klp_patch *lp, bool force, unsigned int *switched, char *msg,
		    size_t len)
{
	struct klp *k = lp->k;
	int32_t current[VMPOKE_MAX_VCPUS];
	unsigned int nr_vcpus = vmm_nr_vcpus(k->vm);
	uint32_t ps = lp->target | (force ? VMPOKE_PATCH_FORCED : 0);
	int err;

	if (vmm_pause(k->vm)) {
		snprintf(msg, len, "livepatch: the vCPUs did not pause");
		return -EIO;
	}
	err = vmm_tasks_read(k->vm, k->tab, msg, len);
	for (unsigned int v = 0; !err && v < nr_vcpus && v < VMPOKE_MAX_VCPUS; v++) {
		struct vmpoke_percpu pc;

		current[v] = vmm_percpu_read(k->vm, v, &pc, msg, len) ? -1 : pc.current_task;
	}
	lp->nr_pending = 0;
	for (uint32_t i = 0; !err && i < k->tab->nr_tasks; i++) {
		const struct vmpoke_task *t = &k->tab->tasks[i];
		bool running = t->state == VMPOKE_TASK_RUNNING ||
			       (t->vcpu < nr_vcpus && current[t->vcpu] == (int32_t)t->id);

		if (t->state == VMPOKE_TASK_UNUSED || t->id != i)
			continue;
		if (!force && (t->patch_state & VMPOKE_PATCH_PATCHED) == lp->target)
			continue;
		if (!force && !klp_task_ok(lp, t, running))
			continue;
		if (vmm_gva_write(k->vm, klp_ps_addr(k, i), &ps, sizeof(ps))) {
			snprintf(msg, len, "task %u: cannot write its patch_state", i);
			err = -EFAULT;
		}
		(*switched)++;
	}
	vmm_resume(k->vm);
	return err;
}

/*
 * One retry.  A task that is running at a look is not switched, nor one
 * preempted inside a function being replaced, and looks can fall in step
 * with the guest's schedule: the pause of one look leaves a tick pending,
 * which switches tasks at the resume, and the next look comes a whole
 * number of ticks later, so the same task of a pair is current every time
 * (seen: one task "running" at all 400 retries of a campaign's exit, 1
 * run in 50); a task whose loop alternates by ticks (the sleeper: one
 * tick napping in lp_sleep, one outside) can be found at the same point
 * of it every time the same way (a transition once stayed pending through
 * 600 retries in the nested KVM; that run did not record its stragglers).
 * So where tasks are left, look once more, a random 0.25-1.25 ticks
 * later: the phase of that look is random, whatever the caller's cadence.
 */
static int klp_try(struct klp_patch *lp, bool force, char *msg, size_t len)
{
	struct klp *k = lp->k;
	unsigned int switched = 0;
	int err;

	err = klp_pass(lp, force, &switched, msg, len);
	if (!err && !force && k->hz && lp->nr_pending) {
		uint64_t tick_ns = 1000000000ull / k->hz;
		struct timespec ts = { 0, 0 };
		uint64_t ns = tick_ns / 4 + (uint64_t)random() % tick_ns;

		ts.tv_sec = (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		nanosleep(&ts, NULL);
		err = klp_pass(lp, false, &switched, msg, len);
	}
	if (err)
		return err;
	lp->switched += switched;
	klp_history(lp, switched);
	lp->retries++;
	lp->next_ms = klp_clock_ms(k) + lp->retry_ms;
	return lp->nr_pending ? 0 : klp_complete(lp, msg, len);
}

static void klp_transition_start(struct klp_patch *lp, uint32_t target)
{
	lp->target = target;
	lp->state = target == VMPOKE_PATCH_PATCHED ? KLP_PATCHING : KLP_UNPATCHING;
	lp->t0_ns = clock_now_ns();
	lp->retries = 0;
	lp->switched = 0;
	lp->nr_hist = 0;
	lp->nr_pending = 0;
	lp->k->transition = lp;
}

/* Is another enabled patch holding one of lp's old functions? */
static const struct klp_patch *klp_conflict(const struct klp_patch *lp, const char **name)
{
	const struct klp *k = lp->k;

	for (size_t i = 0; i < k->nr_patches; i++) {
		const struct klp_patch *o = k->patches[i];

		if (o == lp || o->state == KLP_UNPATCHED)
			continue;
		for (size_t a = 0; a < lp->nr; a++)
			for (size_t b = 0; b < o->nr; b++)
				if (lp->f[a].old == o->f[b].old) {
					*name = lp->f[a].old->name;
					return o;
				}
	}
	return NULL;
}

/* From a settled state towards target: stubs, tasks, descriptors, entries. */
static int klp_begin(struct klp_patch *lp, uint32_t target, char *msg, size_t len)
{
	struct klp *k = lp->k;
	uint64_t from[KLP_MAX_FUNCS], to[KLP_MAX_FUNCS];
	uint32_t initial = target ^ VMPOKE_PATCH_PATCHED;
	const char *name;
	int err;

	if (k->transition) {
		snprintf(msg, len, "another livepatch is in transition");
		return -EBUSY;
	}
	if (klp_conflict(lp, &name)) {
		snprintf(msg, len, "'%s' is replaced by another enabled livepatch", name);
		return -EBUSY;
	}
	/*
	 * A task preempted inside a stub of an earlier transition still routes
	 * by its patch_state when it resumes there: wait out those stubs'
	 * grace period before every task's state is reset below.
	 */
	for (int i = 0; i < KLP_GRACE_TRIES && klp_stubs_graced(k); i++) {
		if (i)
			klp_nap_ms(KLP_GRACE_NAP_MS);
		klp_stubs_reap(k);
	}
	if (klp_stubs_graced(k)) {
		snprintf(msg, len, "a task is still inside a stub of the last transition; "
			 "try again");
		return -EAGAIN;
	}
	err = klp_stubs_write(lp, msg, len);
	if (err)
		return err;
	klp_targets(lp, target == VMPOKE_PATCH_PATCHED ? TO_NOP : TO_NEW, from);
	klp_targets(lp, TO_STUB, to);
	/* every task at the initial state before anything routes by it */
	err = klp_tasks_set(k, initial, msg, len);
	if (!err && klp_desc_write(lp, VMPOKE_KLP_TRANSITION)) {
		snprintf(msg, len, "cannot write the " VMPOKE_KLP_FUNC_PREFIX " descriptors");
		err = -EFAULT;
	}
	if (!err)
		err = klp_entries(lp, from, to, msg, len);
	if (err) {
		klp_desc_write(lp, target == VMPOKE_PATCH_PATCHED ? VMPOKE_KLP_OLD : VMPOKE_KLP_NEW);
		klp_stubs_release(lp, STUB_FREE);
		return err;
	}
	klp_transition_start(lp, target);
	return klp_try(lp, false, msg, len);
}

static int klp_set(struct klp_patch *lp, uint32_t target, char *msg, size_t len)
{
	enum klp_state settled = target == VMPOKE_PATCH_PATCHED ? KLP_PATCHED : KLP_UNPATCHED;
	enum klp_state reverse = target == VMPOKE_PATCH_PATCHED ? KLP_UNPATCHING : KLP_PATCHING;

	msg[0] = '\0';
	if (lp->state == settled || lp->state == (target ? KLP_PATCHING : KLP_UNPATCHING))
		return 0;	/* there, or on the way */
	if (lp->state == reverse) {
		/*
		 * klp_reverse_transition(): the tasks not yet switched are at
		 * the new target already; the switched ones go back, by the
		 * same rules, against the other bodies.
		 */
		lp->target = target;
		lp->state = target ? KLP_PATCHING : KLP_UNPATCHING;
		return klp_try(lp, false, msg, len);
	}
	return klp_begin(lp, target, msg, len);
}

int klp_enable(struct klp_patch *lp, char *msg, size_t len)
{
	return klp_set(lp, VMPOKE_PATCH_PATCHED, msg, len);
}

int klp_disable(struct klp_patch *lp, char *msg, size_t len)
{
	if (lp->forced) {
		snprintf(msg, len, "this livepatch was forced: it can never be removed");
		return -EPERM;
	}
	return klp_set(lp, VMPOKE_PATCH_UNPATCHED, msg, len);
}

int klp_force(struct klp_patch *lp, char *msg, size_t len)
{
	msg[0] = '\0';
	if (lp->k->transition != lp) {
		snprintf(msg, len, "no transition to force (the patch is %s)",
			 klp_state_name(lp->state));
		return -EINVAL;
	}
	lp->forced = true;
	return klp_try(lp, true, msg, len);
}

int klp_tick(struct klp *k, bool now, char *msg, size_t len)
{
	struct klp_patch *lp = k->transition;
	int err = 0;

	msg[0] = '\0';
	if (lp && (now || klp_clock_ms(k) >= lp->next_ms))
		err = klp_try(lp, false, msg, len);
	if (now || clock_now_ns() >= k->next_reap_ns) {
		klp_stubs_reap(k);
		k->next_reap_ns = clock_now_ns() + (uint64_t)k->o.retry_ms * CLOCK_NS_PER_MS;
	}
	return err;
}

void klp_patch_set_retry_ms(struct klp_patch *lp, unsigned int ms)
{
	lp->retry_ms = ms ? ms : lp->k->o.retry_ms;
}

struct klp_patch *klp_in_transition(struct klp *k)
{
	return k->transition;
}

void klp_patch_info(const struct klp_patch *lp, struct klp_info *out)
{
	out->state = lp->state;
	out->forced = lp->forced;
	out->retries = lp->retries;
	out->switched = lp->switched;
	out->nr_pending = lp->state == KLP_PATCHING || lp->state == KLP_UNPATCHING ?
			  lp->nr_pending : 0;
	out->pending = lp->pending;
	out->nr_history = lp->nr_hist;
	out->history = lp->hist;
	out->syncs = lp->syncs;
	out->us = lp->us;
}
