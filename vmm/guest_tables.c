// SPDX-License-Identifier: MIT
/*
 * guest_tables.c - the validated readers of the guest's exported tables.
 * See include/guest_tables.h for the rule set and the API.
 *
 * Why one file: these checks are the host's defence against a hostile
 * guest.  Written once per user they drifted apart (capacity == vs <=,
 * version checked or not, the symbol's size bounded or not); here there
 * is one rule per field, and the next ABI version changes one place.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "guest_tables.h"
#include "symtab.h"

#define GTAB_TASKS_HDR	offsetof(struct vmpoke_task_table, tasks)
#define GTAB_SITES_HDR	offsetof(struct vmpoke_site_table, sites)

static int gtab_fail(int err, char *msg, size_t msglen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int gtab_fail(int err, char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (msg && msglen) {
		va_start(ap, fmt);
		vsnprintf(msg, msglen, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* The symbol exists and holds at least `need` bytes. */
static int gtab_sym(const struct sym *sym, const char *name, uint64_t need,
		    char *msg, size_t msglen)
{
	if (!sym)
		return gtab_fail(-ENOENT, msg, msglen, "no symbol %s in the image", name);
	if (sym->size < need)
		return gtab_fail(-EINVAL, msg, msglen, "%s is %" PRIu64 " bytes, smaller "
				 "than its table (%" PRIu64 ")", name, sym->size, need);
	return 0;
}

static int gtab_read(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
		     void *buf, size_t len, const char *what, char *msg, size_t msglen)
{
	if (gva_read(ram, cr3, gva, buf, len))
		return gtab_fail(-EFAULT, msg, msglen, "%s at 0x%" PRIx64 " (%zu bytes) "
				 "is not in guest RAM", what, gva, len);
	return 0;
}

/*
 * The header of vmpoke_tasks alone: callers on a vCPU thread (a check
 * failure's doorbell) have a 256 KiB stack, and the whole table is more
 * than half of that.
 */
struct gtab_tasks_hdr {
	uint64_t magic;
	uint32_t version, task_size, capacity, nr_tasks;
};
_Static_assert(sizeof(struct gtab_tasks_hdr) == GTAB_TASKS_HDR, "task table header");

/* The header of vmpoke_tasks, checked. */
static int gtab_tasks_header(const struct guest_ram *ram, uint64_t cr3,
			     const struct sym *sym, struct gtab_tasks_hdr *h,
			     char *msg, size_t msglen)
{
	int err = gtab_sym(sym, VMPOKE_SYM_TASKS, sizeof(struct vmpoke_task_table), msg, msglen);

	if (!err)
		err = gtab_read(ram, cr3, sym->addr, h, GTAB_TASKS_HDR,
				VMPOKE_SYM_TASKS, msg, msglen);
	if (err)
		return err;
	if (h->magic != VMPOKE_TASKS_MAGIC || h->version != VMPOKE_ABI_VERSION ||
	    h->task_size != sizeof(struct vmpoke_task) ||
	    h->capacity != VMPOKE_TASKS_CAPACITY || h->nr_tasks > h->capacity)
		return gtab_fail(-EINVAL, msg, msglen, "%s header is invalid (magic 0x%"
				 PRIx64 ", version %u, task_size %u, capacity %u, "
				 "nr_tasks %u)", VMPOKE_SYM_TASKS, h->magic, h->version,
				 h->task_size, h->capacity, h->nr_tasks);
	return 0;
}

/*
 * An entry in use (since ABI version 3): only known patch_state bits, and
 * a stack of 1..VMPOKE_TASK_STACK_MAX bytes, 16-aligned at both ends, whose
 * first and last bytes are in RAM (the livepatch stack walk still reads
 * every frame through the page walk).
 */
static int gtab_task_check(const struct guest_ram *ram, uint64_t cr3,
			   const struct vmpoke_task *t, uint32_t i, char *msg, size_t msglen)
{
	uint8_t b;

	if (t->state == VMPOKE_TASK_UNUSED)
		return 0;
	if (t->patch_state & ~VMPOKE_PATCH_VALID)
		return gtab_fail(-EINVAL, msg, msglen, "%s[%u]: unknown patch_state bits "
				 "0x%x", VMPOKE_SYM_TASKS, i, t->patch_state);
	if (t->stack_hi <= t->stack_lo || t->stack_hi - t->stack_lo > VMPOKE_TASK_STACK_MAX ||
	    (t->stack_lo | t->stack_hi) & 15)
		return gtab_fail(-EINVAL, msg, msglen, "%s[%u]: bad stack 0x%" PRIx64 "..0x%"
				 PRIx64 " (16-aligned, 1..%u bytes)", VMPOKE_SYM_TASKS, i,
				 t->stack_lo, t->stack_hi, VMPOKE_TASK_STACK_MAX);
	if (gva_read(ram, cr3, t->stack_lo, &b, 1) || gva_read(ram, cr3, t->stack_hi - 1, &b, 1))
		return gtab_fail(-EFAULT, msg, msglen, "%s[%u]: stack 0x%" PRIx64 "..0x%"
				 PRIx64 " is not in guest RAM", VMPOKE_SYM_TASKS, i,
				 t->stack_lo, t->stack_hi);
	return 0;
}

int gtab_tasks_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		    struct vmpoke_task_table *out, char *msg, size_t msglen)
{
	struct gtab_tasks_hdr h;
	int err;

	memset(out, 0, sizeof(*out));
	err = gtab_tasks_header(ram, cr3, sym, &h, msg, msglen);
	if (!err) {
		out->magic = h.magic;
		out->version = h.version;
		out->task_size = h.task_size;
		out->capacity = h.capacity;
		out->nr_tasks = h.nr_tasks;
		err = gtab_read(ram, cr3, sym->addr + GTAB_TASKS_HDR, out->tasks,
				out->nr_tasks * sizeof(out->tasks[0]),
				VMPOKE_SYM_TASKS " entries", msg, msglen);
	}
	for (uint32_t i = 0; !err && i < out->nr_tasks; i++)
		err = gtab_task_check(ram, cr3, &out->tasks[i], i, msg, msglen);
	return err;
}

int gtab_task_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		   uint32_t id, struct vmpoke_task *out, char *msg, size_t msglen)
{
	struct gtab_tasks_hdr h;
	int err = gtab_tasks_header(ram, cr3, sym, &h, msg, msglen);

	if (err)
		return err;
	if (id >= h.nr_tasks)
		return gtab_fail(-EINVAL, msg, msglen, "%s: task %u is not in use "
				 "(nr_tasks %u)", VMPOKE_SYM_TASKS, id, h.nr_tasks);
	err = gtab_read(ram, cr3, sym->addr + GTAB_TASKS_HDR + (uint64_t)id * sizeof(*out),
			out, sizeof(*out), VMPOKE_SYM_TASKS " entry", msg, msglen);
	return err ? err : gtab_task_check(ram, cr3, out, id, msg, msglen);
}

int gtab_percpu_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		     unsigned int nr_vcpus, unsigned int id, struct vmpoke_percpu *out,
		     char *msg, size_t msglen)
{
	int err;

	if (nr_vcpus > VMPOKE_MAX_VCPUS || id >= nr_vcpus)
		return gtab_fail(-EINVAL, msg, msglen, "%s: vCPU %u of %u", VMPOKE_SYM_PERCPU,
				 id, nr_vcpus);
	err = gtab_sym(sym, VMPOKE_SYM_PERCPU, (uint64_t)nr_vcpus * sizeof(*out),
		       msg, msglen);
	if (err)
		return err;
	return gtab_read(ram, cr3, sym->addr + (uint64_t)id * sizeof(*out), out,
			 sizeof(*out), VMPOKE_SYM_PERCPU " block", msg, msglen);
}

int gtab_cpl0_frame(const struct guest_ram *ram, uint64_t cr3,
		    const struct vmpoke_percpu *pc, uint64_t *frame)
{
	uint64_t gpa, psz;

	if (pc->rsp0 < VMPOKE_CPL0_FRAME_SIZE)
		return -EFAULT;
	/* The walk bounds-checks the page; the slot must fit in RAM too. */
	if (pt_walk(ram, cr3, pc->rsp0 - VMPOKE_CPL0_FRAME_SIZE, &gpa, &psz) ||
	    gpa > ram->size || ram->size - gpa < sizeof(uint64_t))
		return -EFAULT;
	*frame = pc->rsp0 - VMPOKE_CPL0_FRAME_SIZE;
	return 0;
}

/* The frame at gva into *f when all of it is guest RAM. */
static bool gtab_frame_read(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
			    struct gtab_frame *f)
{
	uint64_t w[VMPOKE_CPL0_FRAME_SIZE / 8];

	if (gva + sizeof(w) < gva || gva_read(ram, cr3, gva, w, sizeof(w)))
		return false;
	f->at = gva;
	f->rip = w[0];
	f->cs = w[1];
	return true;
}

unsigned int gtab_cpl0_frames(const struct guest_ram *ram, uint64_t cr3,
			      const struct vmpoke_percpu *pc, uint64_t stub_frame,
			      struct gtab_frame out[VMPOKE_CPL0_MAX_FRAMES])
{
	unsigned int n = 0;
	uint64_t entry;
	bool have_entry = !gtab_cpl0_frame(ram, cr3, pc, &entry);

	if (stub_frame && gtab_frame_read(ram, cr3, stub_frame, &out[n])) {
		/* A trap taken at CPL3: the stub's frame is the entry frame. */
		if ((out[n].cs & 3) == 3 || (have_entry && stub_frame == entry))
			return n + 1;
		n++;	/* from CPL0: nested under the timer's entry frame */
	}
	if (have_entry && gtab_frame_read(ram, cr3, entry, &out[n]))
		n++;
	return n;
}

/* [gva, gva + len) is guest memory. */
static bool gtab_mapped(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
			uint64_t len)
{
	uint8_t buf[VMPOKE_SITE_MAX_LEN];

	return len <= sizeof(buf) && !gva_read(ram, cr3, gva, buf, len);
}

static int gtab_site_check(const struct guest_ram *ram, uint64_t cr3,
			   const struct vmpoke_site_desc *d, uint32_t i,
			   char *msg, size_t msglen)
{
	if (d->kind < VMPOKE_SITE_NOP5_JMP32 || d->kind > VMPOKE_SITE_MULTI)
		return gtab_fail(-EINVAL, msg, msglen, "%s[%u]: unknown kind %u",
				 VMPOKE_SYM_SITES, i, d->kind);
	if (d->len < 1 || d->len > VMPOKE_SITE_MAX_LEN)
		return gtab_fail(-EINVAL, msg, msglen, "%s[%u] (0x%" PRIx64 "): len %u "
				 "not in 1..%u", VMPOKE_SYM_SITES, i, d->addr, d->len,
				 VMPOKE_SITE_MAX_LEN);
	if (d->nr_targets < 1 || d->nr_targets > VMPOKE_SITE_MAX_TARGETS)
		return gtab_fail(-EINVAL, msg, msglen, "%s[%u] (0x%" PRIx64 "): "
				 "nr_targets %u not in 1..%u", VMPOKE_SYM_SITES, i,
				 d->addr, d->nr_targets, VMPOKE_SITE_MAX_TARGETS);
	if (!gtab_mapped(ram, cr3, d->addr, d->len))
		return gtab_fail(-EFAULT, msg, msglen, "%s[%u]: site 0x%" PRIx64 "+%u "
				 "is not in guest RAM", VMPOKE_SYM_SITES, i, d->addr,
				 d->len);
	for (uint32_t k = 0; k < d->nr_targets; k++)
		if (!gtab_mapped(ram, cr3, d->target[k], 1))
			return gtab_fail(-EFAULT, msg, msglen, "%s[%u] (0x%" PRIx64 "): "
					 "target[%u] 0x%" PRIx64 " is not in guest RAM",
					 VMPOKE_SYM_SITES, i, d->addr, k, d->target[k]);
	return 0;
}

int gtab_sites_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		    struct vmpoke_site_table *out, char *msg, size_t msglen)
{
	int err;

	memset(out, 0, sizeof(*out));
	err = gtab_sym(sym, VMPOKE_SYM_SITES, sizeof(*out), msg, msglen);
	if (!err)
		err = gtab_read(ram, cr3, sym->addr, out, GTAB_SITES_HDR,
				VMPOKE_SYM_SITES, msg, msglen);
	if (err)
		return err;
	if (out->magic != VMPOKE_SITES_MAGIC)
		return gtab_fail(-EINVAL, msg, msglen, "%s: bad magic 0x%" PRIx64,
				 VMPOKE_SYM_SITES, out->magic);
	if (out->version != VMPOKE_ABI_VERSION)
		return gtab_fail(-EINVAL, msg, msglen, "%s: ABI version %u, expected %u",
				 VMPOKE_SYM_SITES, out->version, VMPOKE_ABI_VERSION);
	if (out->nr_sites > VMPOKE_MAX_SITES)
		return gtab_fail(-EINVAL, msg, msglen, "%s: nr_sites %u > %u",
				 VMPOKE_SYM_SITES, out->nr_sites, VMPOKE_MAX_SITES);
	err = gtab_read(ram, cr3, sym->addr + GTAB_SITES_HDR, out->sites,
			out->nr_sites * sizeof(out->sites[0]), VMPOKE_SYM_SITES " entries",
			msg, msglen);
	for (uint32_t i = 0; !err && i < out->nr_sites; i++)
		err = gtab_site_check(ram, cr3, &out->sites[i], i, msg, msglen);
	return err;
}
