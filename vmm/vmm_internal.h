/* SPDX-License-Identifier: MIT */
/*
 * vmm_internal.h - the structs the vmm/ files share, and nothing else.
 *
 * Why one private header: struct vm and struct vcpu are touched by the
 * vCPU threads (vcpu.c, exit.c, trap.c), by the controller side (sync.c,
 * vm.c) and by helpers (gmem.c).  Fields are grouped by who writes them;
 * every field written by one thread and read by another is _Atomic or
 * protected by the lock named next to it.  The locking rule that matters
 * (see sync.c): vCPU threads only ever take park_lock, hc_lock, end_lock
 * and out_lock, each for a few instructions; a controller waiting for
 * vCPUs (sync, pause, hotplug) holds only ctl_lock, which no vCPU touches.
 */
#ifndef VMPOKE_VMM_INTERNAL_H
#define VMPOKE_VMM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "clock.h"
#include "pagewalk.h"
#include "vmm.h"

struct sym;

#define VMM_KICK_SIG		(SIGRTMIN + 1)
#define VMM_STACK_SIZE		(256u * 1024)
#define VMM_SYNC_RETRY_MS	2000u	/* re-kick a silent vCPU after this */
#define VMM_SYNC_GIVEUP_MS	10000u	/* then name it and fail */

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	_Atomic bool thread_live;	/* pthread_kill is safe */

	/* Written by the vCPU thread only. */
	_Atomic uint64_t acked_gen;	/* last sync generation acknowledged */
	_Atomic bool parked;		/* outside KVM_RUN, regs cached */
	_Atomic bool exited;		/* thread left its loop */
	_Atomic uint64_t last_rip;	/* best known RIP, for diagnostics */
	uint64_t prev_rip;		/* last_rip before the current exit */
	bool io_pending;		/* last exit was IO/MMIO: complete it */
	bool done;			/* sent VMPOKE_HC_DONE */

	/* Requests from the controller. */
	_Atomic bool offline_req;

	/* Register cache, valid while parked; under vm->park_lock. */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	bool regs_dirty;
	bool sregs_dirty;		/* vmm_vcpu_set_sregs() (tests plant a CPL) */

	/* Statistics. */
	_Atomic uint64_t exits, syncs_acked, traps, hcalls;
	_Atomic pid_t tid;		/* for the sync's priority measures */
	_Atomic bool lent_fifo;		/* SCHED_FIFO lent until its ack (sync_prio.c) */
	int stats_fd;			/* KVM binary stats, or -1 (kvm_stats.c) */
	long irq_exits_off;

	/* Hypercall interval recording (vmm_record_hcall_intervals). */
	_Atomic bool rec_armed;
	enum vmpoke_hcall rec_hc;
	uint64_t *rec_buf;
	size_t rec_cap;
	_Atomic size_t rec_n;
	uint64_t rec_last_ns;
};

struct vm {
	struct vm_config cfg;
	char image[4096];
	int kvm_fd, vm_fd;
	size_t run_size;
	struct guest_ram ram;
	struct symtab *symtab;
	uint64_t entry;
	const struct sym *percpu_sym;	/* vmpoke_percpu, in symtab */
	enum vmm_trap_path trap_path;
	bool sync_regs;			/* KVM fills run->s.regs on exit */
	struct kvm_cpuid2 *cpuid;	/* supported CPUID, per-vCPU patched */
	unsigned int nr_vcpus;
	struct vcpu vcpus[VMPOKE_MAX_VCPUS];
	bool started;

	/* Sync / pause (sync.c). */
	pthread_mutex_t ctl_lock;	/* serializes controllers; no vCPU takes it */
	_Atomic uint64_t sync_gen;
	_Atomic uint32_t event_seq;	/* futex: a vCPU acked or parked */
	_Atomic uint32_t ctl_waiters;	/* controllers waiting on event_seq */
	/* Speed of sync (sync.c): adaptive spin and scheduling priority. */
	_Atomic uint64_t sync_ewma_ns;	/* recent time for every ack to arrive */
	_Atomic int sync_prio;		/* enum vmm_sync_prio */
	_Atomic uint64_t sync_spins, sync_spin_hits;
	_Atomic bool sync_handoff;	/* no core to spare: the last acker yields */
	_Atomic uint32_t sync_done;	/* futex: low bits of the last completed gen */
	_Atomic bool sync_old;		/* VMPOKE_SYNC_OLD: no SCHED_FIFO measures */
	_Atomic bool sync_fifo_denied;	/* SCHED_FIFO not permitted here */
	_Atomic uint64_t sync_lends;	/* vCPUs lent SCHED_FIFO */
	_Atomic uint64_t sync_fast_ns;	/* floor of recent sync times (lend delay) */
	unsigned int sync_cpus_test;	/* tests: host cores to assume (0: real) */
	_Atomic bool sync_core;		/* vmm_sync_core() uses membarrier */
	_Atomic uint64_t sync_core_calls;
	_Atomic bool pause_req;
	bool paused;			/* under ctl_lock */
	pthread_mutex_t park_lock;
	pthread_cond_t park_cond;

	/* End of run. */
	_Atomic bool stop_req;		/* vmm_stop(): async-signal-safe flag */
	_Atomic uint32_t end_seq;	/* futex: outcome set or stop requested */
	pthread_mutex_t end_lock;
	struct vmm_result result;	/* under end_lock */
	_Atomic bool ended;
	_Atomic unsigned int nr_done;

	/* Hypercall counters (exit.c). */
	_Atomic uint64_t hc_count[VMPOKE_HC_MAX];
	_Atomic unsigned int hc_waiters;
	pthread_mutex_t hc_lock;
	pthread_cond_t hc_cond;
	_Atomic bool check_fail_fatal;

	pthread_mutex_t out_lock;	/* guest console lines stay whole */

	/*
	 * Trap hook (trap.c): one pointer to an immutable record, so a vCPU
	 * sees fn and opaque of the same vmm_set_trap_hook() call.  Replaced
	 * records wait on hook_retired until a later vmm_sync() succeeds.
	 */
	_Atomic(struct trap_hook *) trap_hook;
	pthread_mutex_t hook_lock;
	struct trap_hook *hook_retired;	/* under hook_lock */
	uint64_t hook_retire_seq;	/* under hook_lock */
};

struct trap_hook {
	vmm_trap_fn fn;
	void *opaque;
	struct trap_hook *next_retired;
	uint64_t retired_seq;
};

/* kvm.c */
int kvm_open_dev(char *problem, size_t len);
int kvm_check_ext(int fd, long cap);
struct kvm_cpuid2 *kvm_supported_cpuid(int kvm_fd);

/* probe.c: does an int3 give KVM_EXIT_DEBUG here?  Probed once per process. */
bool kvm_probe_int3_exit(void);

/* trap.c: hook records retired up to mark are unreachable after a sync */
uint64_t trap_hook_mark(struct vm *vm);
void trap_hook_reclaim(struct vm *vm, uint64_t mark);

/* vcpu.c */
int vcpu_create(struct vm *vm, unsigned int id);
void *vcpu_thread(void *arg);
int vcpu_get_regs(struct vcpu *v, struct kvm_regs *regs);
int vcpu_set_regs(struct vcpu *v, const struct kvm_regs *regs);

/* exit.c: 0 = continue, 1 = the run is over for this thread */
int exit_handle(struct vcpu *v);
void exit_dump_regs(struct vcpu *v, const char *why);
const char *exit_vector_name(uint64_t vector);
/* The vCPU's RIP now (its vCPU thread), or the last one seen. */
uint64_t exit_rip(struct vcpu *v);

/* hcall.c: one hypercall; 0 = resume, 1 = the run ended. */
int hcall_handle(struct vcpu *v, uint32_t cmd, uint64_t arg, bool from_mmio);

/* trap.c */
int trap_doorbell(struct vcpu *v, unsigned int port, uint8_t *reply);
enum { TRAP_DB_FOREIGN, TRAP_DB_RESUME, TRAP_DB_BAD_FRAME };
int trap_doorbell_frame(const struct guest_ram *ram, uint64_t cr3, struct kvm_regs *stub,
			struct vmm_trap *t,
			enum vmm_trap_verdict (*hook)(void *ctx, struct vmm_trap *t),
			void *ctx, bool *set_regs);
int trap_debug_exit(struct vcpu *v);
int trap_probe_doorbell(struct vcpu *v);

/* sync.c */
void sync_install_kick(void);
void sync_kick(struct vcpu *v);
void sync_kick_all(struct vm *vm);
void sync_vcpu_ack(struct vcpu *v);
void sync_vcpu_park(struct vcpu *v);
void sync_vcpu_prepare_park(struct vcpu *v);
void sync_set_run(struct kvm_run *run);
void sync_notify(struct vm *vm);
bool sync_acked(struct vcpu *v, uint64_t gen);

/* kvm_stats.c: KVM's count of the vCPU's exits for host interrupts */
void kvm_stats_open(struct vcpu *v);
void kvm_stats_close(struct vcpu *v);
bool kvm_stats_irq_exits(struct vcpu *v, uint64_t *out);

/* sync_core.c */
void sync_core_init(struct vm *vm);
bool sync_core_supported(void);		/* the kernel offers it, registered */

/* sync_prio.c: the scheduling measures of a sync with no core to spare. */
struct sync_prio {
	pid_t tid;			/* the controller's thread */
	int nice_old;			/* INT_MIN: nothing to restore */
	bool fifo;			/* the controller runs SCHED_FIFO */
};
bool sync_old_env(void);
void sync_prio_begin(struct vm *vm, struct sync_prio *sp);	/* before the kick */
void sync_prio_wait(struct vm *vm, struct sync_prio *sp);	/* before the wait */
void sync_prio_end(struct sync_prio *sp);
uint64_t sync_prio_lend_after(struct vm *vm);
unsigned int sync_prio_lend(struct vm *vm, uint64_t gen);
void sync_prio_vcpu_ack(struct vcpu *v);

/* run.c */
/* End the run (first caller wins); d, if set, supplies fault/check/result_code. */
void vm_end(struct vm *vm, enum vmm_outcome o, int vcpu,
	    const struct vmm_result *d, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

#endif /* VMPOKE_VMM_INTERNAL_H */
