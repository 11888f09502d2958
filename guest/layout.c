/* SPDX-License-Identifier: MIT */
/*
 * layout.c - compile-time proof that offsets.h (what the .S files use)
 * matches vmpoke_abi.h.  Generates no code.
 */
#include "guest.h"

#define CHECK_OFF(type, field, off) \
	_Static_assert(offsetof(type, field) == (off), #type "." #field)

CHECK_OFF(struct vmpoke_task_ctx, r15, CTX_R15);
CHECK_OFF(struct vmpoke_task_ctx, rax, CTX_RAX);
CHECK_OFF(struct vmpoke_task_ctx, rip, CTX_RIP);
CHECK_OFF(struct vmpoke_task_ctx, cs, CTX_CS);
CHECK_OFF(struct vmpoke_task_ctx, rflags, CTX_RFLAGS);
CHECK_OFF(struct vmpoke_task_ctx, rsp, CTX_RSP);
CHECK_OFF(struct vmpoke_task_ctx, ss, CTX_SS);
_Static_assert(sizeof(struct vmpoke_task_ctx) == CTX_SIZE, "ctx size");
_Static_assert(CTX_SIZE == CTX_WORDS * 8, "ctx words");
/* the timer pushes 15 GPRs below the 5-word frame */
_Static_assert(CTX_RIP == 15 * 8, "GPRs then frame");

CHECK_OFF(struct vmpoke_task, state, TASK_STATE);
CHECK_OFF(struct vmpoke_task, patch_state, TASK_PATCH_STATE);
CHECK_OFF(struct vmpoke_task, ctx, TASK_CTX);
CHECK_OFF(struct vmpoke_task, own_int3, TASK_OWN_INT3);
CHECK_OFF(struct vmpoke_task, switches, TASK_SWITCHES);
_Static_assert(sizeof(struct vmpoke_task) == TASK_SIZE, "task size");
CHECK_OFF(struct vmpoke_task_table, tasks, TASKTAB_TASKS);
_Static_assert(VMPOKE_TASK_RUNNABLE == TS_RUNNABLE, "RUNNABLE");
_Static_assert(VMPOKE_TASK_RUNNING == TS_RUNNING, "RUNNING");
_Static_assert(VMPOKE_MAX_TASKS == 8, "timer masks the slot with 7");
_Static_assert(VMPOKE_MAX_VCPUS == 64, "_start bounds the vCPU id by 64");
_Static_assert(KSTACK_SIZE == 1 << 13, "_start shifts by 13");

CHECK_OFF(struct vmpoke_percpu, rsp0, PCPU_RSP0);
CHECK_OFF(struct vmpoke_percpu, vcpu, PCPU_VCPU);
CHECK_OFF(struct vmpoke_percpu, current_task, PCPU_CURRENT);
CHECK_OFF(struct vmpoke_percpu, ticks, PCPU_TICKS);
CHECK_OFF(struct vmpoke_percpu, foreign_bp, PCPU_FOREIGN_BP);
CHECK_OFF(struct vmpoke_percpu, mailbox, PCPU_MAILBOX);
CHECK_OFF(struct vmpoke_percpu, mailbox.fault.vector, FAULT_VECTOR);
CHECK_OFF(struct vmpoke_percpu, mailbox.fault.error_code, FAULT_ERROR);
CHECK_OFF(struct vmpoke_percpu, mailbox.fault.rip, FAULT_RIP);
CHECK_OFF(struct vmpoke_percpu, mailbox.fault.cr2, FAULT_CR2);
CHECK_OFF(struct vmpoke_percpu, mailbox.fault.rsp, FAULT_RSP);
CHECK_OFF(struct vmpoke_percpu, mailbox.fault.vcpu, FAULT_VCPU);
CHECK_OFF(struct vmpoke_percpu, mailbox.fault.task, FAULT_TASK);
_Static_assert(sizeof(struct vmpoke_percpu) == PCPU_SIZE, "percpu size");

_Static_assert(VMPOKE_PORT_BP == PORT_BP, "port bp");
_Static_assert(VMPOKE_PORT_DB == PORT_DB, "port db");
_Static_assert(VMPOKE_PORT_HCALL == PORT_HCALL, "port hcall");
_Static_assert(VMPOKE_HC_FAULT == HC_FAULT, "hc fault");
_Static_assert(VMPOKE_LAPIC_GPA + 0xb0 == LAPIC_EOI, "EOI");

CHECK_OFF(struct vmpoke_site_table, sites, SITETAB_SITES);
_Static_assert(sizeof(struct vmpoke_site_desc) == SITE_DESC_SIZE, "site");
_Static_assert(sizeof(struct vmpoke_site_table) ==
	       SITETAB_SITES + MAX_SITES * SITE_DESC_SIZE, "site table");
_Static_assert(VMPOKE_MAX_SITES == MAX_SITES, "max sites");
_Static_assert(VMPOKE_SITES_MAGIC == SITES_MAGIC, "sites magic");
_Static_assert(VMPOKE_ABI_VERSION == ABI_VERSION, "abi version");
_Static_assert(VMPOKE_BENCH_PAD_PER_FUNC == BENCH_PAD_PER_FUNC, "bench pads");
_Static_assert(VMPOKE_SITE_NOP5_JMP32 == SITE_NOP5_JMP32 &&
	       VMPOKE_SITE_NOP2_JMP8 == SITE_NOP2_JMP8 &&
	       VMPOKE_SITE_CALL32 == SITE_CALL32 &&
	       VMPOKE_SITE_JCC32 == SITE_JCC32 &&
	       VMPOKE_SITE_MULTI == SITE_MULTI, "site kinds");
_Static_assert(VMPOKE_SITEF_STRADDLE_8 == SITEF_8 &&
	       VMPOKE_SITEF_STRADDLE_LINE == SITEF_LINE &&
	       VMPOKE_SITEF_STRADDLE_PAGE == SITEF_PAGE, "site flags");
