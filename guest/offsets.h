/* SPDX-License-Identifier: MIT */
/*
 * offsets.h - the ABI layouts the guest's assembly relies on.
 *
 * vmpoke_abi.h is C only, so every offset an .S file uses is spelled out
 * here and checked against the C structs by _Static_assert in
 * guest/layout.c: a change to the ABI breaks the guest build instead of
 * silently corrupting a context the VMM later trusts.
 */
#ifndef GUEST_OFFSETS_H
#define GUEST_OFFSETS_H

/* Segment selectors of every vCPU's GDT (guest/boot.c builds it). */
#define GDT_KERNEL_CS		0x08
#define GDT_KERNEL_DS		0x10
#define GDT_USER_DS		0x1b	/* index 3, RPL 3 */
#define GDT_USER_CS		0x23	/* index 4, RPL 3 */
#define GDT_TSS			0x28	/* index 5, 16-byte descriptor */
#define GDT_ENTRIES		7

/* Interrupt vectors we own besides the 32 exceptions. */
#define VEC_TIMER		0x30
#define VEC_SPURIOUS		0xff

/* bench_sites.S: VMPOKE_BENCH_PAD_PER_FUNC NOP5s per bench_pad_N. */
#define BENCH_PAD_PER_FUNC	64

/* Stacks (.bss). */
#define KSTACK_SIZE		8192	/* per vCPU, CPL0 */
#define FSTACK_SIZE		1024	/* per vCPU, faults only (IST) */
#define FAULT_IST		1	/* the TSS IST slot faults use */
#define USTACK_SIZE		8192	/* per task, CPL3 */

/* struct vmpoke_task_ctx */
#define CTX_R15			0
#define CTX_RAX			112
#define CTX_RIP			120
#define CTX_CS			128
#define CTX_RFLAGS		136
#define CTX_RSP			144
#define CTX_SS			152
#define CTX_WORDS		20
#define CTX_SIZE		160

/* struct vmpoke_task and struct vmpoke_task_table */
#define TASK_STATE		0
#define TASK_PATCH_STATE	12
#define TASK_CTX		16
#define TASK_OWN_INT3		192
#define TASK_SWITCHES		200
#define TASK_SIZE		288
#define TASKTAB_TASKS		24

/* enum vmpoke_task_state */
#define TS_RUNNABLE		1
#define TS_RUNNING		2

/* struct vmpoke_percpu, reached through %gs */
#define PCPU_RSP0		0
#define PCPU_VCPU		8
#define PCPU_CURRENT		12
#define PCPU_TICKS		16
#define PCPU_FOREIGN_BP		24
#define PCPU_MAILBOX		32
#define PCPU_SIZE		288
/* mailbox.fault */
#define FAULT_VECTOR		(PCPU_MAILBOX + 0)
#define FAULT_ERROR		(PCPU_MAILBOX + 8)
#define FAULT_RIP		(PCPU_MAILBOX + 16)
#define FAULT_CR2		(PCPU_MAILBOX + 24)
#define FAULT_RSP		(PCPU_MAILBOX + 32)
#define FAULT_VCPU		(PCPU_MAILBOX + 40)
#define FAULT_TASK		(PCPU_MAILBOX + 44)

/* Port doorbells and hypercalls (enum vmpoke_hcall). */
#define PORT_BP			0xe0
#define PORT_DB			0xe1
#define PORT_HCALL		0xe2
#define HC_FAULT		3

/* LAPIC (xAPIC MMIO) */
#define LAPIC_EOI		0xfee000b0

/* struct vmpoke_site_desc / vmpoke_site_table */
#define SITE_DESC_SIZE		56
#define SITETAB_SITES		16
#define SITE_NOP5_JMP32		1
#define SITE_NOP2_JMP8		2
#define SITE_CALL32		3
#define SITE_JCC32		4
#define SITE_MULTI		5
#define SITEF_8			0x1
#define SITEF_LINE		0x2
#define SITEF_PAGE		0x4
#define SITES_MAGIC		0x5345544953504d56
#define MAX_SITES		64
#define ABI_VERSION		3

#endif /* GUEST_OFFSETS_H */
