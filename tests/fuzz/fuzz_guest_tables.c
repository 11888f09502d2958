// SPDX-License-Identifier: MIT
/*
 * fuzz_guest_tables.c - target fuzz_guest_tables: what vmpoke reads out of
 * guest memory, over a fuzzed guest-RAM image and CR3.
 *
 * Input (little-endian):
 *   u64 cr3; u32 ram_size (at most GT_RAM_MAX);
 *   GT_NR_GVAS x { u64 gva; u16 len }     addresses to translate and copy
 *   then chunks { u32 gpa; u16 len; len bytes } written into RAM,
 *   so a seed holds only the pages it needs (page tables, a table) while
 *   the addresses stay those of a real guest.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "pagewalk.h"

#define T		"fuzz_guest_tables"
#define GT_RAM_MAX	(8u << 20)
#define GT_NR_GVAS	4
#define GT_COPY_MAX	8192u
#define GT_DIRTY_MAX	64

struct gt_in {
	uint64_t cr3;
	struct guest_ram ram;
	uint64_t gva[GT_NR_GVAS];
	size_t len[GT_NR_GVAS];
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

int fuzz_guest_tables_one(const uint8_t *data, size_t size)
{
	struct gt_in g;
	size_t i;

	gt_parse(data, size, &g);
	for (i = 0; i < GT_NR_GVAS; i++) {
		gt_check_walk(&g, g.gva[i]);
		gt_check_copy(&g, g.gva[i], g.len[i]);
	}
	return 0;
}
