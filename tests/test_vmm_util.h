/* SPDX-License-Identifier: MIT */
/*
 * test_vmm_util.h - helpers shared by the VMM's KVM suites: build a config,
 * boot the real guest image, read its task table.
 */
#ifndef VMPOKE_TEST_VMM_UTIL_H
#define VMPOKE_TEST_VMM_UTIL_H

#include <pthread.h>
#include <stdbool.h>

#include "vmm.h"

/* Generous: the nested test VM runs the guest under software emulation. */
#define VMT_WAIT_MS	120000u

void vmt_config(struct vm_config *cfg, unsigned int vcpus,
		enum vmpoke_scenario scn, uint64_t iterations);
/* Create and start; NULL (and a CUnit failure) on error. */
struct vm *vmt_boot(const struct vm_config *cfg);
/* Require KVM, boot scn (run until stopped) and wait for READY; or NULL. */
struct vm *vmt_boot_ready(unsigned int vcpus, enum vmpoke_scenario scn);
/*
 * Require KVM, boot HOT on vcpus (run until stopped, check failures
 * counted, not fatal) and give it a patcher: the start of every test that
 * patches a running guest's kernel-style sites.  false if either failed.
 */
struct patcher;
bool vmt_boot_patchable(unsigned int vcpus, struct vm **vm, struct patcher **p);
/* Wait until every vCPU rang VMPOKE_HC_READY. */
bool vmt_wait_ready(struct vm *vm);
/* The guest's task table (vmm_tasks_read); false (and a failure) if refused. */
bool vmt_read_tasks(struct vm *vm, struct vmpoke_task_table *tab);
/*
 * For TEST_SUITE_IF: NULL where this host traps a CPL0 INT3 (the nested
 * KVM, hardware), else why CPL0 breakpoint suites cannot run here.
 */
const char *vmt_cpl0_int3_unavailable(void);
/*
 * A trap hook that holds vCPU 1's thread in user space (in the hook) until
 * released, at most 60 s, so a test can see what waits for vCPU threads
 * and what does not.  on_hold, if set, runs once on that thread first
 * (e.g. a sync from inside a hook), its result in on_hold_ret.
 */
struct vmt_held {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool held, release;
	int (*on_hold)(struct vm *vm);
	int on_hold_ret;
};
/* Boot scenario INT3 on 2 vCPUs with the hook; NULL (and a failure) unless
 * vCPU 1 is held. */
struct vm *vmt_boot_held(struct vmt_held *h);
void vmt_release_held(struct vmt_held *h);

/* Stop, wait for VMM_STOPPED, destroy. */
void vmt_finish(struct vm *vm);

#endif /* VMPOKE_TEST_VMM_UTIL_H */
