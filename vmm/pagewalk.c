// SPDX-License-Identifier: MIT
/*
 * pagewalk.c - x86-64 4-level page-table walk over a guest-RAM buffer.
 *
 * The guest owns its page tables, so every entry is untrusted: each table
 * address is checked against the RAM size before it is dereferenced, and
 * so is the final physical address.
 */
#include <errno.h>
#include <string.h>

#include "pagewalk.h"

#define PTE_PRESENT	0x1ull
#define PTE_RW		0x2ull
#define PTE_US		0x4ull
#define PTE_PS		0x80ull
/* Bits 51:12 hold the next table / page frame (MAXPHYADDR <= 52). */
#define PTE_ADDR_MASK	0x000ffffffffff000ull

#define PAGE_4K		(1ull << 12)
#define PAGE_2M		(1ull << 21)
#define PAGE_1G		(1ull << 30)

static int gva_is_canonical(uint64_t gva)
{
	/* Bits 63:47 must all equal bit 47. */
	uint64_t top = gva >> 47;

	return top == 0 || top == 0x1ffff;
}

/* Read entry idx of the table at gpa, checking it lies inside RAM. */
static int pt_entry(const struct guest_ram *ram, uint64_t table, unsigned int idx,
		    uint64_t *pte)
{
	uint64_t off = table + 8ull * idx;

	/* size < 8 first: "size - 8" would wrap and let any entry through. */
	if (ram->size < 8 || table >= ram->size || off > ram->size - 8)
		return -EFAULT;
	memcpy(pte, ram->host + off, sizeof(*pte));
	return 0;
}

/* The walk; *rights = the AND of the R/W and U/S bits of every level. */
static int pt_walk_rights(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
			  uint64_t *gpa, uint64_t *page_size, uint64_t *rights)
{
	uint64_t table = cr3 & PTE_ADDR_MASK;
	uint64_t pte, size = 0, base;
	int level;

	*rights = PTE_RW | PTE_US;

	if (!ram || !ram->host || !gva_is_canonical(gva))
		return -EFAULT;

	/* level 3 = PML4, 2 = PDPT, 1 = PD, 0 = PT */
	for (level = 3; level >= 0; level--) {
		unsigned int idx = (gva >> (12 + 9 * level)) & 0x1ff;

		if (pt_entry(ram, table, idx, &pte))
			return -EFAULT;
		if (!(pte & PTE_PRESENT))
			return -EFAULT;
		*rights &= pte;
		if (level == 2 && (pte & PTE_PS)) {
			size = PAGE_1G;
			break;
		}
		if (level == 1 && (pte & PTE_PS)) {
			size = PAGE_2M;
			break;
		}
		if (level == 0) {
			size = PAGE_4K;
			break;
		}
		table = pte & PTE_ADDR_MASK;
	}

	/* Large-page frames are aligned to their size; low bits are flags/PAT. */
	base = pte & PTE_ADDR_MASK & ~(size - 1);
	base |= gva & (size - 1);
	/* The byte itself must be RAM; callers check the length they use. */
	if (base >= ram->size)
		return -EFAULT;
	*gpa = base;
	if (page_size)
		*page_size = size;
	return 0;
}

int pt_walk(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
	    uint64_t *gpa, uint64_t *page_size)
{
	uint64_t rights;

	return pt_walk_rights(ram, cr3, gva, gpa, page_size, &rights);
}

static int gva_range_ok(uint64_t gva, size_t len)
{
	uint64_t end;

	return len == 0 || !__builtin_add_overflow(gva, (uint64_t)len - 1, &end);
}

int gva_access_ok(const struct guest_ram *ram, uint64_t cr3, uint64_t gva, size_t len,
		  bool write, bool user, bool wp)
{
	if (!gva_range_ok(gva, len))
		return -EFAULT;
	while (len) {
		uint64_t gpa, psz, rights, n;

		if (pt_walk_rights(ram, cr3, gva, &gpa, &psz, &rights))
			return -EFAULT;
		if ((user && !(rights & PTE_US)) ||
		    (write && (user || wp) && !(rights & PTE_RW)))
			return -EACCES;
		/* As gva_chunk(): a large page may run past the end of RAM. */
		n = psz - (gva & (psz - 1));
		if (n > ram->size - gpa)
			n = ram->size - gpa;
		if (n >= len)
			break;
		gva += n;
		len -= n;
	}
	return 0;
}

/*
 * Translate [gva, gva+len) chunk by chunk.  A chunk ends at the end of its
 * page or of RAM, whichever is first, so a large page that runs past the
 * end of RAM still faults instead of reading beyond the buffer.
 */
static int gva_chunk(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
		     size_t left, uint64_t *gpa, size_t *n)
{
	uint64_t psz, in_page, avail;

	if (pt_walk(ram, cr3, gva, gpa, &psz))
		return -EFAULT;
	in_page = psz - (gva & (psz - 1));
	avail = ram->size - *gpa;
	if (in_page > avail)
		in_page = avail;
	*n = left < in_page ? left : (size_t)in_page;
	return 0;
}


/*
 * Copy page by page between buf and guest memory: dir < 0 reads from the
 * guest, dir > 0 writes to it, dir == 0 only translates (the dry run that
 * lets a write fault before it changes anything).
 */
static int gva_copy(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
		    uint8_t *buf, size_t len, int dir)
{
	if (!gva_range_ok(gva, len))
		return -EFAULT;
	while (len) {
		uint64_t gpa;
		size_t n;

		if (gva_chunk(ram, cr3, gva, len, &gpa, &n))
			return -EFAULT;
		if (dir < 0)
			memcpy(buf, ram->host + gpa, n);
		else if (dir > 0)
			memcpy(ram->host + gpa, buf, n);
		buf += n;
		gva += n;
		len -= n;
	}
	return 0;
}

int gva_read(const struct guest_ram *ram, uint64_t cr3, uint64_t gva, void *buf, size_t len)
{
	return gva_copy(ram, cr3, gva, buf, len, -1);
}

int gva_write(const struct guest_ram *ram, uint64_t cr3, uint64_t gva, const void *buf, size_t len)
{
	/* The cast is safe: dir > 0 only reads from buf. */
	if (gva_copy(ram, cr3, gva, (uint8_t *)buf, len, 0))
		return -EFAULT;
	return gva_copy(ram, cr3, gva, (uint8_t *)buf, len, 1);
}
