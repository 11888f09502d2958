/* SPDX-License-Identifier: MIT */
/*
 * guest.h - what the guest's files share with each other (not ABI).
 */
#ifndef GUEST_H
#define GUEST_H

#include <stddef.h>
#include <stdint.h>
#include "vmpoke_abi.h"
#include "offsets.h"

/* The boot-info fields CPL3 code needs, copied at boot (same on every vCPU). */
struct guest_config {
	uint32_t scenario;
	uint32_t hz;
	uint32_t nr_vcpus;
	uint32_t tasks_per_vcpu;
	uint64_t iterations;
	uint64_t seed;
};

typedef void (*guest_task_fn)(struct vmpoke_task *t);

extern struct guest_config guest_cfg;
extern uint32_t guest_tasks_per_vcpu;		/* read by the timer */
extern uint32_t guest_vcpu_done_rung[VMPOKE_MAX_VCPUS];	/* HC_DONE sent */
extern struct vmpoke_task_table vmpoke_tasks;
extern struct vmpoke_percpu vmpoke_percpu[VMPOKE_MAX_VCPUS];
extern uint8_t guest_kstacks[VMPOKE_MAX_VCPUS][KSTACK_SIZE];
extern char _end[];

/* entry.S */
void guest_triple_fault(void) __attribute__((noreturn));
void guest_emulation_failure(void) __attribute__((noreturn));
void guest_bad_stack(void) __attribute__((noreturn));
extern const uint64_t guest_exc_stubs[32];
void guest_timer_entry(void);
void guest_spurious_entry(void);

/* boot.c (CPL0) */
struct vmpoke_task_ctx *guest_boot(uint64_t vcpu,
				   const struct vmpoke_boot_info *bi);

/* CPL0 code in a file of CPL3 task code: kept out of the task text (guest.ld). */
#define __kernel_text __attribute__((section(".text.kernel")))

/* user.c: the CPL3 function a task starts in (chosen at boot). */
guest_task_fn guest_task_entry(uint32_t scenario, uint32_t vcpu,
			       uint32_t slot);

/* lib.c: the compiler may emit calls to these. */
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);

#endif /* GUEST_H */
