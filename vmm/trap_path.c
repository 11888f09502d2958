// SPDX-License-Identifier: MIT
/*
 * trap_path.c - naming and choosing the way a guest INT3 reaches the VMM
 * (trap.c implements both ways).
 *
 * Why the environment variable lives here, in the library: the switch must
 * reach every VM a process creates - commands, the CUnit suites that create
 * VMs themselves, and the vmpoke commands those suites start - without
 * each of them remembering to pass it on.
 *
 * Why auto may prefer debug-exit: it costs one exit per trap and needs no
 * guest stub, but it may be the default only because `make check` runs
 * the trap, patch and torture suites on it (make check-debug-exit: natively
 * on hardware KVM, else in the nested harness with a patched QEMU).  Hosts
 * that do not give KVM_EXIT_DEBUG for int3 (kvm_pvm, stock QEMU TCG) use
 * the doorbell.
 */
#include <stdlib.h>
#include <string.h>

#include "vmm_internal.h"

/*
 * 1 since `make check-debug-exit` passed on path (a) (issue 11: 59 tests
 * with kvm_amd nrips=0 plus int3_reinject with NRIPS, nested harness); it
 * was 0, the doorbell, until then.
 */
#define VMM_AUTO_PREFERS_DEBUG_EXIT	1

static const char *const trap_path_names[] = {
	[VMM_TRAP_AUTO] = "auto",
	[VMM_TRAP_DEBUG_EXIT] = "debug-exit",
	[VMM_TRAP_DOORBELL] = "doorbell",
};

int vmm_trap_path_parse(const char *name)
{
	for (unsigned int i = 0; name && i <= VMM_TRAP_DOORBELL; i++)
		if (!strcmp(trap_path_names[i], name))
			return (int)i;
	return -1;
}

const char *vmm_trap_path_name(enum vmm_trap_path p)
{
	return (unsigned int)p <= VMM_TRAP_DOORBELL ? trap_path_names[p] : "?";
}

int vmm_trap_path_env(void)
{
	const char *e = getenv(VMM_TRAP_PATH_ENV);

	if (!e || !*e)
		return VMM_TRAP_AUTO;
	return vmm_trap_path_parse(e);
}

enum vmm_trap_path vmm_trap_path_auto(bool debug_exit_works)
{
	return debug_exit_works && VMM_AUTO_PREFERS_DEBUG_EXIT ?
		VMM_TRAP_DEBUG_EXIT : VMM_TRAP_DOORBELL;
}

enum vmm_trap_path vmm_trap_path_resolve(enum vmm_trap_path cfg, bool debug_exit_works,
					 bool *forced)
{
	int env = vmm_trap_path_env();

	*forced = cfg != VMM_TRAP_AUTO || env > VMM_TRAP_AUTO;
	if (cfg != VMM_TRAP_AUTO)
		return cfg;
	if (env > VMM_TRAP_AUTO)
		return (enum vmm_trap_path)env;
	return vmm_trap_path_auto(debug_exit_works);
}
