/* SPDX-License-Identifier: MIT */
/*
 * guest_tables.h - the one validated reader for each table the guest
 * exports (include/vmpoke_abi.h): the task table "vmpoke_tasks", the
 * per-vCPU blocks "vmpoke_percpu" and the site table "vmpoke_sites".
 *
 * The guest is not trusted, and these tables are the host's boundary
 * against it, so every reader of guest tables goes through here and one
 * rule set holds for all of them:
 *   - the symbol exists and is at least as large as the table it names;
 *   - the magic and the version are exactly the ABI's;
 *   - capacities and entry sizes are exactly the ABI's, and a count is at
 *     most its capacity;
 *   - every byte read, and every guest address an entry hands the host,
 *     translates (through the guest's page tables) to guest RAM.
 *
 * API note (for the fuzzing target and any other caller without a VM):
 * the readers are pure, like include/pagewalk.h.  They take the guest's
 * RAM as a plain buffer (struct guest_ram: host pointer of GPA 0 and its
 * size), the CR3 to walk (our guest runs on VMPOKE_PML4_GPA), and the
 * symbol (address and size as the ELF image gives them; NULL = the image
 * has none).  They never read outside ram->host[0, ram->size), never
 * allocate, and never write to guest memory.  Each returns 0, or a
 * negative errno with msg naming the table and the bad field:
 *   -ENOENT  no symbol;
 *   -EINVAL  a bad header or entry (magic, version, size, count, kind);
 *   -EFAULT  something the table or an entry points at is not in RAM.
 * A VM's callers use the vmm_*_read() wrappers in include/vmm.h, which
 * pass the VM's RAM, CR3 and symbols.
 */
#ifndef VMPOKE_GUEST_TABLES_H
#define VMPOKE_GUEST_TABLES_H

#include <stddef.h>
#include <stdint.h>

#include "pagewalk.h"
#include "vmpoke_abi.h"

struct sym;

/*
 * The header and the first nr_tasks entries into *out (the rest zeroed).
 * Every entry in use has known patch_state bits and a bounded, aligned
 * stack in RAM (ABI version 3).
 */
int gtab_tasks_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		    struct vmpoke_task_table *out, char *msg, size_t msglen);

/* Entry id (< nr_tasks) of the validated table. */
int gtab_task_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		   uint32_t id, struct vmpoke_task *out, char *msg, size_t msglen);

/*
 * vCPU id's block of a VM with nr_vcpus vCPUs (the symbol must hold
 * nr_vcpus blocks, id < nr_vcpus).
 */
int gtab_percpu_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		     unsigned int nr_vcpus, unsigned int id, struct vmpoke_percpu *out,
		     char *msg, size_t msglen);

/*
 * The CPL0 exception/interrupt frame of a vCPU whose block is pc: its
 * address (pc->rsp0 - VMPOKE_CPL0_FRAME_SIZE) once the frame's RIP slot
 * is in RAM.  -EFAULT if rsp0 is 0 (not booted), too small or unmapped.
 */
int gtab_cpl0_frame(const struct guest_ram *ram, uint64_t cr3,
		    const struct vmpoke_percpu *pc, uint64_t *frame);

/* One resumable frame on a vCPU's kernel stack: where, and what it holds. */
struct gtab_frame {
	uint64_t at;			/* guest address of the frame (its RIP slot) */
	uint64_t rip, cs;
};

/*
 * The CPL0 frames of a vCPU whose block is pc, innermost first, walked as
 * vmpoke_abi.h's "CPL0 frames" rule says: stub_frame (the frame a #BP
 * stub holds, found by decoding the stub at the vCPU's RIP; 0 when the RIP
 * is in no stub or the stub could not say), then the entry frame at
 * rsp0 - VMPOKE_CPL0_FRAME_SIZE unless stub_frame is that frame (CS RPL 3
 * or the same address).  A frame whose 40 bytes are not in RAM is left
 * out.  Returns how many of out[] it filled (0..VMPOKE_CPL0_MAX_FRAMES).
 */
unsigned int gtab_cpl0_frames(const struct guest_ram *ram, uint64_t cr3,
			      const struct vmpoke_percpu *pc, uint64_t stub_frame,
			      struct gtab_frame out[VMPOKE_CPL0_MAX_FRAMES]);

/*
 * The header and the first nr_sites descriptors into *out.  Each site
 * has a known kind, 1..4 targets, a length of 1..VMPOKE_SITE_MAX_LEN, and
 * its bytes and its targets in RAM.  Whether those lie in functions of the
 * image is the patcher's question (torture_table_check()).
 */
int gtab_sites_read(const struct guest_ram *ram, uint64_t cr3, const struct sym *sym,
		    struct vmpoke_site_table *out, char *msg, size_t msglen);

#endif /* VMPOKE_GUEST_TABLES_H */
