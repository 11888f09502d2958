// SPDX-License-Identifier: MIT
/*
 * gmem.c - guest memory as the patcher and the exit handlers see it.
 *
 * Why: every guest address the VMM touches is guest-virtual (symbols,
 * exception frames, mailboxes), and the guest runs on the page tables the
 * VMM built at VMPOKE_PML4_GPA.  Walking those tables in the VMM (pure
 * code in pagewalk.c, bounds-checked against RAM) is cheaper than
 * KVM_TRANSLATE (1.6 us/ioctl here) and needs no vCPU thread, so any
 * thread may call these.  A guest that rewrites its own page tables can
 * make a walk fail, never make the host read outside the RAM mapping.
 * The boot CR3 is used on purpose: our guest never switches CR3.
 */
#include <errno.h>
#include <stdio.h>

#include "guest_tables.h"
#include "symtab.h"
#include "vmm_internal.h"

int vmm_gva_read(struct vm *vm, uint64_t gva, void *buf, size_t len)
{
	return gva_read(&vm->ram, VMPOKE_PML4_GPA, gva, buf, len);
}

int vmm_gva_write(struct vm *vm, uint64_t gva, const void *buf, size_t len)
{
	return gva_write(&vm->ram, VMPOKE_PML4_GPA, gva, buf, len);
}

/*
 * Our guest runs with CR0.WP clear (vcpu.c), so CPL0 writes ignore R/W
 * as on hardware; CPL3 accesses need U/S, and writes R/W, at every level.
 */
int vmm_gva_access_ok(struct vm *vm, uint64_t gva, size_t len, bool write,
		      unsigned int cpl)
{
	return gva_access_ok(&vm->ram, VMPOKE_PML4_GPA, gva, len, write, cpl == 3, false);
}

int vmm_gva_to_gpa(struct vm *vm, uint64_t gva, uint64_t *gpa)
{
	uint64_t psz;

	return pt_walk(&vm->ram, VMPOKE_PML4_GPA, gva, gpa, &psz);
}

void *vmm_gpa_ptr(struct vm *vm, uint64_t gpa, size_t len)
{
	if (gpa > vm->ram.size || len > vm->ram.size - gpa)
		return NULL;
	return vm->ram.host + gpa;
}

int vmm_tasks_read(struct vm *vm, struct vmpoke_task_table *out, char *msg, size_t msglen)
{
	return gtab_tasks_read(&vm->ram, VMPOKE_PML4_GPA,
			       symtab_find(vm->symtab, VMPOKE_SYM_TASKS), out, msg, msglen);
}

int vmm_task_read(struct vm *vm, uint32_t id, struct vmpoke_task *out, char *msg,
		  size_t msglen)
{
	return gtab_task_read(&vm->ram, VMPOKE_PML4_GPA,
			      symtab_find(vm->symtab, VMPOKE_SYM_TASKS), id, out, msg, msglen);
}

int vmm_percpu_read(struct vm *vm, unsigned int id, struct vmpoke_percpu *out, char *msg,
		    size_t msglen)
{
	return gtab_percpu_read(&vm->ram, VMPOKE_PML4_GPA, vm->percpu_sym, vm->nr_vcpus,
				id, out, msg, msglen);
}

int vmm_sites_read(struct vm *vm, struct vmpoke_site_table *out, char *msg, size_t msglen)
{
	return gtab_sites_read(&vm->ram, VMPOKE_PML4_GPA,
			       symtab_find(vm->symtab, VMPOKE_SYM_SITES), out, msg, msglen);
}

int vmm_cpl0_frame(struct vm *vm, unsigned int id, uint64_t *frame)
{
	struct vmpoke_percpu pc;
	int err = vmm_percpu_read(vm, id, &pc, NULL, 0);

	return err ? err : gtab_cpl0_frame(&vm->ram, VMPOKE_PML4_GPA, &pc, frame);
}

unsigned int vmm_cpl0_frames(struct vm *vm, unsigned int id, uint64_t stub_frame,
			     struct gtab_frame *out)
{
	struct vmpoke_percpu pc;

	if (vmm_percpu_read(vm, id, &pc, NULL, 0))
		return 0;
	return gtab_cpl0_frames(&vm->ram, VMPOKE_PML4_GPA, &pc, stub_frame, out);
}

const char *vmm_symbolize(const struct vm *vm, uint64_t addr, char *buf, size_t len)
{
	if (vm && vm->symtab)
		return symtab_format(vm->symtab, addr, buf, len);
	snprintf(buf, len, "0x%llx", (unsigned long long)addr);
	return buf;
}
