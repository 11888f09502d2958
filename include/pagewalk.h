/* SPDX-License-Identifier: MIT */
/*
 * pagewalk.h - x86-64 4-level page-table walk done in the VMM.
 *
 * Pure: it reads page tables out of a guest-RAM buffer, so it is unit
 * tested on tables built in a plain buffer.  Every table address and every
 * result is bounds-checked against the buffer: a hostile guest that points
 * its tables outside RAM gets -EFAULT, never a host read out of bounds.
 */
#ifndef VMPOKE_PAGEWALK_H
#define VMPOKE_PAGEWALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guest_ram {
	uint8_t *host;		/* host mapping of GPA 0 */
	uint64_t size;		/* bytes */
};

/*
 * Translate gva.  Handles 4 KiB, 2 MiB (PS in PDE) and 1 GiB (PS in PDPTE)
 * pages.  Returns 0 and sets *gpa and *page_size (bytes of the page, so
 * the caller knows how far the translation holds), or -EFAULT for a
 * non-canonical address, a not-present entry, or a table outside RAM.
 */
int pt_walk(const struct guest_ram *ram, uint64_t cr3, uint64_t gva,
	    uint64_t *gpa, uint64_t *page_size);

/*
 * Copy between a host buffer and guest-virtual memory, page by page (each
 * page translated on its own, so writes crossing a page boundary work even
 * when the pages are not physically contiguous).  0 or -EFAULT; on -EFAULT
 * nothing has been written (write translates every page before copying).
 */
int gva_read(const struct guest_ram *ram, uint64_t cr3, uint64_t gva, void *buf, size_t len);
int gva_write(const struct guest_ram *ram, uint64_t cr3, uint64_t gva, const void *buf, size_t len);

/*
 * May code at this privilege access [gva, gva+len) as the page tables say?
 * user: CPL3, every level must have U/S set; write: every level R/W, for
 * CPL3 always and for CPL0 only with CR0.WP (wp).  0, -EFAULT if not
 * mapped, -EACCES if the rights forbid it.  SMAP is not modelled.
 */
int gva_access_ok(const struct guest_ram *ram, uint64_t cr3, uint64_t gva, size_t len,
		  bool write, bool user, bool wp);

#endif /* VMPOKE_PAGEWALK_H */
