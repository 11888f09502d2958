/* SPDX-License-Identifier: MIT */
/*
 * user.h - helpers for CPL3 guest code (workloads, guest/lab.S).
 *
 * CPL3 cannot use port IO, hlt or cli/sti on our KVM; it reaches the VMM
 * with an 8-byte store to VMPOKE_MMIO_CMD(cmd).
 */
#ifndef GUEST_USER_H
#define GUEST_USER_H

#include <stdint.h>
#include "vmpoke_abi.h"

/* Ring the CPL3 doorbell: one 8-byte store, argument = arg. */
static inline void user_doorbell(uint32_t cmd, uint64_t arg)
{
	volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)VMPOKE_MMIO_CMD(cmd);

	__asm__ volatile("movq %1, (%0)" : : "r"(p), "r"(arg) : "memory");
}

/*
 * Record a failed check in task->last_check (and this vCPU's mailbox) and
 * ring VMPOKE_HC_CHECK_FAIL with the task id.  Returns; the VMM decides
 * whether the run goes on.  Callable from asm (SysV: rdi, rsi, rdx, rcx,
 * r8); needs no stack alignment.
 */
void user_check_fail(struct vmpoke_task *task, uint64_t site,
		     uint64_t expected, uint64_t actual, const char *what);

/* Print one line on the VMM's console (VMPOKE_HC_PUTS via the mailbox). */
void user_puts(struct vmpoke_task *task, const char *s);

/* Mark the task DONE, tell the VMM, and never return (see user.c). */
void user_task_done(struct vmpoke_task *task) __attribute__((noreturn));

/* Spin at CPL3 forever (pause): a task with nothing (more) to do. */
void user_park(void) __attribute__((noreturn));

#endif /* GUEST_USER_H */
