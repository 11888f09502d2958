// SPDX-License-Identifier: MIT
/*
 * fuzz_guest_tables.c - target fuzz_guest_tables: what vmpoke reads out of
 * guest memory, over a fuzzed guest-RAM image and CR3.
 *
 * Input (little-endian):
 *   u64 cr3; u32 ram_size (at most GT_RAM_MAX);
 *   GT_NR_GVAS x { u64 gva; u16 len }     addresses to translate and copy
 *   u8 syms (bit i: symbol i exists); 3 x { u64 addr; u32 size }: the
 *       symbols vmpoke_tasks, vmpoke_percpu, vmpoke_sites;
 *   u8 nr_vcpus; u8 vcpu; u16 task        which entries to read
 *   then chunks { u32 gpa; u16 len; len bytes } written into RAM,
 *   so a seed holds only the pages it needs (page tables, a table) while
 *   the addresses stay those of a real guest.
 *
 * The page walk, the copies and the rights check of emulated stack
 * accesses (gva_access_ok) run on every address; each table reader
 * of include/guest_tables.h runs on its symbol, and what a reader accepts
 * must keep its rules (magic, version, counts within capacity, every site
 * and target in RAM, the CPL0 frame slot in RAM).  Guest console text from
 * the per-vCPU mailbox goes through vmm_sanitize_text().
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "guest_tables.h"
#include "livepatch.h"
#include "pagewalk.h"
#include "symtab.h"
#include "vmm.h"

#define T		"fuzz_guest_tables"
#define GT_RAM_MAX	(8u << 20)
#define GT_NR_GVAS	4
#define GT_COPY_MAX	8192u
#define GT_DIRTY_MAX	64
#define GT_NR_SYMS	3

static const char *const gt_sym_names[GT_NR_SYMS] = {
	VMPOKE_SYM_TASKS, VMPOKE_SYM_PERCPU, VMPOKE_SYM_SITES,
};

struct gt_in {
	uint64_t cr3;
	struct guest_ram ram;
	uint64_t gva[GT_NR_GVAS];
	size_t len[GT_NR_GVAS];
	struct sym sym[GT_NR_SYMS];
	const struct sym *syms[GT_NR_SYMS];	/* NULL: the image has none */
	unsigned int nr_vcpus, vcpu, task;
};

/*
 * One allocation of GT_RAM_MAX; an input's RAM is its last ram_size bytes,
 * so that a read past the end of guest RAM is a read past the end of the
 * allocation, which ASan reports.
 */
static uint8_t *gt_ram;
/* What the last input wrote, to zero again (RAM is too big to clear). */
struct gt_span {
	uint32_t at, len;	/* offset in gt_ram */
};

static struct gt_span gt_dirty[GT_DIRTY_MAX];
static size_t gt_nr_dirty;
static bool gt_all_dirty;

static void gt_clean(void)
{
	size_t i;

	if (gt_all_dirty)
		memset(gt_ram, 0, GT_RAM_MAX);
	else
		for (i = 0; i < gt_nr_dirty; i++)
			memset(gt_ram + gt_dirty[i].at, 0, gt_dirty[i].len);
	gt_nr_dirty = 0;
	gt_all_dirty = false;
}

static void gt_parse(const uint8_t *data, size_t size, struct gt_in *g)
{
	struct fuzz_in in = { data, size };
	unsigned int present;
	size_t i;

	if (!gt_ram && !(gt_ram = calloc(1, GT_RAM_MAX)))
		fuzz_fail(T, "out of memory");
	gt_clean();
	g->cr3 = fuzz_take(&in, 8);
	g->ram.size = fuzz_take(&in, 4) % (GT_RAM_MAX + 1ull);
	g->ram.host = gt_ram + (GT_RAM_MAX - g->ram.size);
	for (i = 0; i < GT_NR_GVAS; i++) {
		g->gva[i] = fuzz_take(&in, 8);
		g->len[i] = fuzz_take(&in, 2) % (GT_COPY_MAX + 1);
	}
	present = (unsigned int)fuzz_take(&in, 1);
	for (i = 0; i < GT_NR_SYMS; i++) {
		g->sym[i].addr = fuzz_take(&in, 8);
		g->sym[i].size = fuzz_take(&in, 4);
		g->sym[i].type = 'D';
		g->sym[i].name = gt_sym_names[i];
		g->syms[i] = present & (1u << i) ? &g->sym[i] : NULL;
	}
	g->nr_vcpus = (unsigned int)fuzz_take(&in, 1);
	g->vcpu = (unsigned int)fuzz_take(&in, 1);
	g->task = (unsigned int)fuzz_take(&in, 2);
	while (in.left && g->ram.size) {
		uint32_t gpa = (uint32_t)(fuzz_take(&in, 4) % g->ram.size);
		size_t len = fuzz_take(&in, 2);

		len = len < in.left ? len : in.left;
		len = len < g->ram.size - gpa ? len : g->ram.size - gpa;
		memcpy(g->ram.host + gpa, in.p, len);
		in.p += len;
		in.left -= len;
		if (gt_nr_dirty == GT_DIRTY_MAX)
			gt_all_dirty = true;
		else
			gt_dirty[gt_nr_dirty++] = (struct gt_span){
				(uint32_t)(g->ram.host - gt_ram) + gpa, (uint32_t)len };
	}
}

/* --- the page walk ---------------------------------------------------------- */

static void gt_check_walk(const struct gt_in *g, uint64_t gva)
{
	uint64_t gpa = 0, psz = 0;

	if (pt_walk(&g->ram, g->cr3, gva, &gpa, &psz))
		return;
	FUZZ_CHECK(T, gpa < g->ram.size, "0x%llx translated to 0x%llx, outside RAM (0x%llx)",
		   (unsigned long long)gva, (unsigned long long)gpa,
		   (unsigned long long)g->ram.size);
	FUZZ_CHECK(T, psz == 1ull << 12 || psz == 1ull << 21 || psz == 1ull << 30,
		   "page size 0x%llx", (unsigned long long)psz);
	FUZZ_CHECK(T, (gpa & (psz - 1)) == (gva & (psz - 1)), "offset in page lost");
}

/*
 * The bytes of [gva, gva + len) that do translate, page by page: a failed
 * write must leave every one of them as it was.
 */
static size_t gt_snapshot(const struct gt_in *g, uint64_t gva, size_t len,
			  uint64_t *gpas, size_t *lens, uint8_t *bytes, size_t max)
{
	size_t off = 0, n = 0, used = 0;

	while (off < len && n < max) {
		uint64_t at = gva + off, gpa, psz, chunk;

		if (at < gva)
			break;			/* wrapped */
		if (pt_walk(&g->ram, g->cr3, at, &gpa, &psz))
			psz = 4096, chunk = psz - (at & (psz - 1)), gpa = UINT64_MAX;
		else
			chunk = psz - (at & (psz - 1));
		chunk = chunk < len - off ? chunk : len - off;
		if (gpa != UINT64_MAX) {
			chunk = chunk < g->ram.size - gpa ? chunk : g->ram.size - gpa;
			gpas[n] = gpa;
			lens[n] = chunk;
			memcpy(bytes + used, g->ram.host + gpa, chunk);
			used += chunk;
			n++;
		}
		off += chunk;
	}
	return n;
}

static void gt_check_copy(const struct gt_in *g, uint64_t gva, size_t len)
{
	static uint8_t buf[GT_COPY_MAX], saved[GT_COPY_MAX], pattern[GT_COPY_MAX];
	uint64_t gpas[8], gpa, psz;
	size_t lens[8], n, i, used = 0;
	int r = gva_read(&g->ram, g->cr3, gva, buf, len);

	if (!r) {
		if (len) {
			FUZZ_CHECK(T, !pt_walk(&g->ram, g->cr3, gva, &gpa, &psz),
				   "read succeeded where the walk fails");
			FUZZ_CHECK(T, buf[0] == g->ram.host[gpa], "read the wrong first byte");
		}
		/* Writing back what was read works and changes nothing. */
		FUZZ_CHECK(T, !gva_write(&g->ram, g->cr3, gva, buf, len),
			   "read succeeded, write of the same range failed");
		FUZZ_CHECK(T, !gva_read(&g->ram, g->cr3, gva, saved, len) &&
			   !memcmp(saved, buf, len), "write back changed the bytes");
		return;
	}
	FUZZ_CHECK(T, r == -EFAULT, "read returned %d", r);
	n = gt_snapshot(g, gva, len, gpas, lens, saved, 8);
	memset(pattern, 0xa5, len);
	FUZZ_CHECK(T, gva_write(&g->ram, g->cr3, gva, pattern, len) == -EFAULT,
		   "read failed, write of the same range did not");
	for (i = 0; i < n; i++) {
		FUZZ_CHECK(T, !memcmp(g->ram.host + gpas[i], saved + used, lens[i]),
			   "a failed write changed RAM at 0x%llx", (unsigned long long)gpas[i]);
		used += lens[i];
	}
}

/* --- the table readers ----------------------------------------------------- */

static bool gt_in_ram(const struct gt_in *g, uint64_t gva, size_t len)
{
	uint8_t buf[VMPOKE_SITE_MAX_LEN];

	return len <= sizeof(buf) && !gva_read(&g->ram, g->cr3, gva, buf, len);
}

/* Every refusal is one of the documented errors, with a message. */
static void gt_check_ret(const char *what, int ret, const char *msg, const struct sym *sym)
{
	FUZZ_CHECK(T, ret == 0 || ret == -ENOENT || ret == -EINVAL || ret == -EFAULT,
		   "%s returned %d", what, ret);
	FUZZ_CHECK(T, !ret || msg[0], "%s refused without a message", what);
	FUZZ_CHECK(T, ret != -ENOENT || !sym, "%s: -ENOENT with a symbol", what);
}

/*
 * livepatch's reliable stack walk of an accepted task, over the fuzzed RAM:
 * its frame pointers, return addresses and the code the prologue analysis
 * decodes are all guest values.  The page the saved RIP is in, and the
 * first 1 MiB above the image base, are "functions".
 */
struct gt_walk {
	const struct gt_in *g;
};

static int gt_walk_read(void *opaque, uint64_t gva, void *buf, size_t len)
{
	const struct gt_in *g = ((struct gt_walk *)opaque)->g;

	return gva_read(&g->ram, g->cr3, gva, buf, len);
}

static bool gt_walk_frame_ok(void *opaque, uint64_t rip)
{
	const struct gt_in *g = ((struct gt_walk *)opaque)->g;
	uint8_t code[256];
	uint64_t base = rip & ~0xffull;

	if (gva_read(&g->ram, g->cr3, base, code, sizeof(code)))
		return false;
	return klp_frame_ok(code, sizeof(code), base, rip);
}

static void gt_check_stack_walk(const struct gt_in *g, const struct vmpoke_task *t)
{
	struct sym fs[2] = {
		{ t->ctx.rip & ~0xffull, 0x100, 'T', "rip_fn" },
		{ VMPOKE_IMAGE_BASE, 1u << 20, 'T', "image_fn" },
	};
	struct symtab *st = symtab_from_array(fs, fs[0].addr < fs[1].addr ||
					      fs[0].addr >= fs[1].addr + fs[1].size ? 2 : 1);
	struct gt_walk gw = { g };
	struct klp_walk_ops ops = { gt_walk_read, gt_walk_frame_ok, &gw, st };
	static struct klp_walk w;
	int r;

	if (!st)
		return;
	r = klp_stack_walk(&ops, t->ctx.rip, t->ctx.rsp, t->ctx.rbp, t->stack_lo, t->stack_hi, &w);
	FUZZ_CHECK(T, w.n <= KLP_MAX_FRAMES, "walk of %zu frames", w.n);
	FUZZ_CHECK(T, r == 0 || r == -1, "klp_stack_walk returned %d", r);
	FUZZ_CHECK(T, r == 0 || w.why[0], "an unreliable walk without a reason");
	for (size_t i = 0; !r && i < w.n; i++)
		FUZZ_CHECK(T, symtab_lookup(st, i ? w.f[i].addr - 1 : w.f[i].addr, &(uint64_t){ 0 }),
			   "reliable walk: frame %zu at 0x%llx is in no function", i,
			   (unsigned long long)w.f[i].addr);
	symtab_free(st);
}

static void gt_check_tasks(const struct gt_in *g)
{
	static struct vmpoke_task_table tt;
	struct vmpoke_task task;
	char msg[256] = "", msg2[256] = "";
	int r, r2;

	r = gtab_tasks_read(&g->ram, g->cr3, g->syms[0], &tt, msg, sizeof(msg));
	gt_check_ret("gtab_tasks_read", r, msg, g->syms[0]);
	if (!r)
		FUZZ_CHECK(T, tt.magic == VMPOKE_TASKS_MAGIC && tt.version == VMPOKE_ABI_VERSION &&
			   tt.task_size == sizeof(struct vmpoke_task) &&
			   tt.capacity == VMPOKE_TASKS_CAPACITY && tt.nr_tasks <= tt.capacity &&
			   (tt.nr_tasks == tt.capacity || !tt.tasks[tt.nr_tasks].state),
			   "accepted a task table that breaks the rules");
	for (uint32_t i = 0; !r && i < tt.nr_tasks; i++)
		FUZZ_CHECK(T, !tt.tasks[i].state ||
			   (!(tt.tasks[i].patch_state & ~VMPOKE_PATCH_VALID) &&
			    tt.tasks[i].stack_lo < tt.tasks[i].stack_hi &&
			    tt.tasks[i].stack_hi - tt.tasks[i].stack_lo <= VMPOKE_TASK_STACK_MAX),
			   "accepted task %u with a bad patch_state or stack", i);
	r2 = gtab_task_read(&g->ram, g->cr3, g->syms[0], g->task, &task, msg2, sizeof(msg2));
	gt_check_ret("gtab_task_read", r2, msg2, g->syms[0]);
	if (!r2)
		FUZZ_CHECK(T, r || g->task < tt.nr_tasks, "read task %u of %u", g->task,
			   tt.nr_tasks);
	/* The table and the entry are the same bytes. */
	if (!r && g->task < tt.nr_tasks)
		FUZZ_CHECK(T, !r2 && !memcmp(&task, &tt.tasks[g->task], sizeof(task)),
			   "task %u differs between the two readers", g->task);
	if (!r2 && task.state)
		gt_check_stack_walk(g, &task);
}

/*
 * The CPL0 frame chain, with the stub's frame a guest value too (the
 * block's tick count stands in for it): bounded, every frame in RAM, and
 * a second frame only under a stub frame from CPL0.
 */
static void gt_check_frames(const struct gt_in *g, const struct vmpoke_percpu *pc)
{
	struct gtab_frame f[VMPOKE_CPL0_MAX_FRAMES];
	unsigned int n = gtab_cpl0_frames(&g->ram, g->cr3, pc, pc->ticks, f);
	uint8_t buf[VMPOKE_CPL0_FRAME_SIZE];

	FUZZ_CHECK(T, n <= VMPOKE_CPL0_MAX_FRAMES, "%u CPL0 frames", n);
	for (unsigned int i = 0; i < n && i < VMPOKE_CPL0_MAX_FRAMES; i++)
		FUZZ_CHECK(T, !gva_read(&g->ram, g->cr3, f[i].at, buf, sizeof(buf)),
			   "CPL0 frame %u at 0x%llx is not in RAM", i,
			   (unsigned long long)f[i].at);
	if (n == 2)
		FUZZ_CHECK(T, f[0].at == pc->ticks && (f[0].cs & 3) != 3 &&
			   f[1].at == pc->rsp0 - VMPOKE_CPL0_FRAME_SIZE,
			   "a second CPL0 frame without a nested one");
}

static void gt_check_percpu(const struct gt_in *g)
{
	struct vmpoke_percpu pc;
	char msg[256] = "";
	uint64_t frame;
	size_t i;
	int r;

	r = gtab_percpu_read(&g->ram, g->cr3, g->syms[1], g->nr_vcpus, g->vcpu, &pc,
			     msg, sizeof(msg));
	gt_check_ret("gtab_percpu_read", r, msg, g->syms[1]);
	if (r)
		return;
	FUZZ_CHECK(T, g->vcpu < g->nr_vcpus && g->nr_vcpus <= VMPOKE_MAX_VCPUS,
		   "read vCPU %u of %u", g->vcpu, g->nr_vcpus);
	/* Console text: nothing that could drive a terminal gets through. */
	vmm_sanitize_text(pc.mailbox.text, sizeof(pc.mailbox.text));
	for (i = 0; i < sizeof(pc.mailbox.text) && pc.mailbox.text[i]; i++) {
		unsigned char c = (unsigned char)pc.mailbox.text[i];

		FUZZ_CHECK(T, (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\t',
			   "byte 0x%02x survived sanitizing", c);
	}
	if (!gtab_cpl0_frame(&g->ram, g->cr3, &pc, &frame))
		FUZZ_CHECK(T, frame == pc.rsp0 - VMPOKE_CPL0_FRAME_SIZE &&
			   pc.rsp0 >= VMPOKE_CPL0_FRAME_SIZE && gt_in_ram(g, frame, 8),
			   "CPL0 frame 0x%llx accepted but its RIP slot is not in RAM",
			   (unsigned long long)frame);
	gt_check_frames(g, &pc);
}

static void gt_check_sites(const struct gt_in *g)
{
	static struct vmpoke_site_table st;
	char msg[256] = "";
	int r;

	r = gtab_sites_read(&g->ram, g->cr3, g->syms[2], &st, msg, sizeof(msg));
	gt_check_ret("gtab_sites_read", r, msg, g->syms[2]);
	if (r)
		return;
	FUZZ_CHECK(T, st.magic == VMPOKE_SITES_MAGIC && st.version == VMPOKE_ABI_VERSION &&
		   st.nr_sites <= VMPOKE_MAX_SITES, "accepted a bad site table header");
	for (uint32_t i = 0; i < st.nr_sites; i++) {
		const struct vmpoke_site_desc *d = &st.sites[i];

		FUZZ_CHECK(T, d->kind >= VMPOKE_SITE_NOP5_JMP32 && d->kind <= VMPOKE_SITE_MULTI &&
			   d->len >= 1 && d->len <= VMPOKE_SITE_MAX_LEN &&
			   d->nr_targets >= 1 && d->nr_targets <= VMPOKE_SITE_MAX_TARGETS &&
			   gt_in_ram(g, d->addr, d->len),
			   "accepted site %u that breaks the rules", i);
		for (uint32_t k = 0; k < d->nr_targets; k++)
			FUZZ_CHECK(T, gt_in_ram(g, d->target[k], 1),
				   "accepted site %u with target %u outside RAM", i, k);
	}
}

/*
 * The rights check of emulated stack accesses: every answer is one of the
 * documented three, "allowed" means the bytes translate, and a CPL0 read
 * (no rights involved) is allowed exactly where the bytes translate.
 */
static void gt_check_access(const struct gt_in *g, uint64_t gva, size_t len, unsigned int how)
{
	static uint8_t buf[GT_COPY_MAX];
	bool write = how & 1, user = how & 2, wp = how & 4;
	int r = gva_access_ok(&g->ram, g->cr3, gva, len, write, user, wp);
	bool readable = !gva_read(&g->ram, g->cr3, gva, buf, len);

	FUZZ_CHECK(T, r == 0 || r == -EFAULT || r == -EACCES, "gva_access_ok returned %d", r);
	FUZZ_CHECK(T, r || readable, "access to 0x%llx+%zu allowed, but it does not translate",
		   (unsigned long long)gva, len);
	if (!write && !user)
		FUZZ_CHECK(T, !r == readable, "CPL0 read of 0x%llx+%zu: %d, translates: %d",
			   (unsigned long long)gva, len, r, readable);
}

int fuzz_guest_tables_one(const uint8_t *data, size_t size)
{
	struct gt_in g;
	size_t i;

	gt_parse(data, size, &g);
	for (i = 0; i < GT_NR_GVAS; i++) {
		gt_check_walk(&g, g.gva[i]);
		gt_check_copy(&g, g.gva[i], g.len[i]);
		gt_check_access(&g, g.gva[i], g.len[i], (unsigned int)(g.gva[i ^ 1] & 7));
	}
	gt_check_tasks(&g);
	gt_check_percpu(&g);
	gt_check_sites(&g);
	return 0;
}
