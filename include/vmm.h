/* SPDX-License-Identifier: MIT */
/*
 * vmm.h - the VMM: one KVM VM, one thread per vCPU, guest memory access,
 * and the sync/pause primitives the patcher builds its protocol on.
 *
 * The VMM knows nothing of patching.  It offers:
 *   - vmm_sync():  the stand-in for the kernel's IPI-sync;
 *   - vmm_pause()/vmm_resume(): stop the world to read/write registers;
 *   - vmm_vcpu_offline()/online(): hotplug;
 *   - guest-virtual memory read/write through a page-table walk;
 *   - a trap hook that the patcher registers, called on the vCPU's own
 *     thread when the guest hits INT3 (either trap source).
 * Errors are negative errno values; messages go through vmm_error().
 */
#ifndef VMPOKE_VMM_H
#define VMPOKE_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "vmpoke_abi.h"

struct vm;
struct symtab;

/* Exit codes of the vmpoke command; documented in README and vmpoke.1. */
enum vmpoke_exit {
	VMPOKE_EXIT_OK		= 0,
	VMPOKE_EXIT_GUEST	= 1,	/* fault, self-check, triple fault, timeout */
	VMPOKE_EXIT_USAGE	= 2,	/* usage or input error */
	VMPOKE_EXIT_HOST	= 3,	/* host or KVM error */
	VMPOKE_EXIT_SIGNAL	= 4,	/* stopped by SIGINT/SIGTERM */
};

/* Which way a guest INT3 reaches the VMM. */
enum vmm_trap_path {
	VMM_TRAP_AUTO		= 0,	/* probe at start-up */
	VMM_TRAP_DEBUG_EXIT	= 1,	/* (a) KVM_EXIT_DEBUG via USE_SW_BP */
	VMM_TRAP_DOORBELL	= 2,	/* (b) guest #BP stub rings VMPOKE_PORT_BP */
};

struct vm_config {
	const char *image;		/* ELF64 x86-64 guest image */
	unsigned int nr_vcpus;		/* 1..VMPOKE_MAX_VCPUS */
	uint64_t mem_mib;		/* guest RAM in MiB */
	unsigned int tasks;		/* per vCPU, 1..VMPOKE_MAX_TASKS */
	unsigned int hz;		/* scheduler tick, 0 = none */
	enum vmpoke_scenario scenario;
	uint64_t iterations;		/* per task, 0 = until stopped */
	uint64_t seed;
	enum vmm_trap_path trap_path;
	bool quiet;			/* no guest console echo */
};

/* How a run ended. */
enum vmm_outcome {
	VMM_RUNNING = 0,
	VMM_DONE,			/* every vCPU reported VMPOKE_HC_DONE */
	VMM_GUEST_FAULT,		/* VMPOKE_HC_FAULT */
	VMM_GUEST_CHECK,		/* VMPOKE_HC_CHECK_FAIL */
	VMM_GUEST_SELFCHECK,		/* DONE with a non-zero result */
	VMM_TRIPLE_FAULT,		/* KVM_EXIT_SHUTDOWN */
	VMM_INTERNAL_ERROR,		/* KVM_EXIT_INTERNAL_ERROR */
	VMM_UNEXPECTED_EXIT,		/* unknown IO/MMIO/exit reason */
	VMM_TIMEOUT,
	VMM_STOPPED,			/* vmm_stop() or a signal */
	VMM_HOST_ERROR,
};

struct vmm_result {
	enum vmm_outcome outcome;
	int vcpu;			/* the vCPU that ended the run, or -1 */
	struct vmpoke_fault fault;	/* for VMM_GUEST_FAULT */
	struct vmpoke_check check;	/* for VMM_GUEST_CHECK */
	uint64_t result_code;		/* guest's DONE argument */
	char message[512];		/* symbolized, one line */
};

struct vmm_vcpu_stats {
	uint64_t exits;
	uint64_t syncs_acked;		/* sync generations acknowledged */
	uint64_t traps;			/* INT3s handed to the trap hook */
	uint64_t hcalls;
	/*
	 * KVM's own count of this vCPU's exits for host interrupts (its
	 * binary statistics, "irq_exits"), where kvm_stats says KVM has it:
	 * the witness that a core sync's IPIs took the vCPU out of guest mode.
	 */
	uint64_t irq_exits;
	bool kvm_stats;
	bool online;
};

/* --- lifetime ---------------------------------------------------------- */

/*
 * Open /dev/kvm, create the VM, load and check the image, build page tables
 * and boot info, create vCPUs (threads not yet started).  On failure prints
 * a message naming the input and returns NULL with *exit_code set.
 */
struct vm *vmm_create(const struct vm_config *cfg, int *exit_code);
int vmm_start(struct vm *vm);		/* spawn vCPU threads */
/* Wait for the run to end, at most timeout_ms (0 = forever). */
enum vmm_outcome vmm_wait(struct vm *vm, unsigned int timeout_ms,
			  struct vmm_result *res);
/*
 * Start the vCPUs and wait until every one has reported READY (its tasks
 * run), at most timeout_ms: the boot every workload command needs.  0;
 * -ETIMEDOUT; -ESRCH if the run ended first (then *res, if given, holds
 * its outcome, read without pausing anything); or vmm_start()'s error.
 */
int vmm_start_ready(struct vm *vm, unsigned int timeout_ms, struct vmm_result *res);
void vmm_stop(struct vm *vm);		/* ask every vCPU to leave; async-safe */
void vmm_destroy(struct vm *vm);	/* joins threads, frees everything */

unsigned int vmm_nr_vcpus(const struct vm *vm);
/* Guest text made safe for a terminal, in place, up to len or the NUL. */
void vmm_sanitize_text(char *s, size_t len);
const struct symtab *vmm_symtab(const struct vm *vm);
enum vmm_trap_path vmm_trap_path(const struct vm *vm);
/* Registers come with every exit (KVM_CAP_SYNC_REGS), not by ioctl. */
bool vmm_has_sync_regs(const struct vm *vm);
void vmm_vcpu_stats(struct vm *vm, unsigned int id, struct vmm_vcpu_stats *st);
/* Map an outcome to the documented exit code. */
int vmm_outcome_exit_code(enum vmm_outcome o);

/* --- sync, pause, hotplug --------------------------------------------- */

/*
 * vmm_sync - every vCPU that is in guest mode, or halted inside KVM_RUN,
 * when the call starts is kicked out at least once; returns when every
 * online vCPU has acknowledged a generation >= the one this call started.
 * Returns 0, or -ETIMEDOUT after naming the laggard vCPU and its RIP.
 * Must not be called from a vCPU thread (-EDEADLK).
 *
 * Why this is enough where Linux runs sync_core() on every CPU: see
 * docs/protocol.md, "Why a sync is enough".  In short, an ack means the vCPU
 * left guest mode after the bytes were written and entered it again; on
 * hardware KVM that VM entry, and the IRETQ that ends our #BP stub, are
 * serializing, so the vCPU fetches the new bytes; on kvm_pvm host writes
 * are visible at once and CPL0 is emulated from one fresh snapshot per
 * instruction.  The torture test is the experiment that checks it.
 */
/*
 * How vmm_sync() waits, for bench sync: whether it may spin on the acks
 * (only with a core free beyond one per online vCPU, checked per call), and
 * which scheduling-priority measure it took on its caller's thread.
 */
enum vmm_sync_prio {
	VMM_SYNC_PRIO_NONE = 0,		/* not tried yet, or nothing possible */
	VMM_SYNC_PRIO_CONTROLLER,	/* the controller thread runs at nice -10 */
	VMM_SYNC_PRIO_VCPUS_LOWER,	/* not permitted: vCPU threads at nice +5 */
	VMM_SYNC_PRIO_FIFO,		/* the controller runs SCHED_FIFO, lends it */
};
struct vmm_sync_info {
	unsigned int host_cpus;		/* this process's affinity */
	bool spin;			/* the last sync could spin */
	enum vmm_sync_prio prio;
	uint64_t spins, spin_hits;	/* syncs that spun / that the spin finished */
	uint64_t lends;			/* late vCPUs lent SCHED_FIFO until their ack */
	bool core;			/* vmm_sync_core() is membarrier here */
	uint64_t core_syncs;		/* vmm_sync_core() calls that used it */
};
void vmm_sync_info(struct vm *vm, struct vmm_sync_info *info);
/*
 * The behaviour before SCHED_FIFO (vmm/sync_prio.c): the controller at
 * nice -10 and the last acker's hand-off.  Default from VMPOKE_SYNC_OLD;
 * `bench sync --ab` switches it per round to compare both in one VM.
 */
#define VMM_SYNC_OLD_ENV	"VMPOKE_SYNC_OLD"
void vmm_sync_set_old(struct vm *vm, bool old);
int vmm_sync(struct vm *vm);
/* The same; on -ETIMEDOUT *laggard is the vCPU named (else -1). */
int vmm_sync_laggard(struct vm *vm, int *laggard);

/*
 * vmm_sync_core - the sync between two phases of a code patch, as the
 * kernel's text_poke_sync(): every vCPU that was in guest mode when the
 * call began has left it (a host IPI through membarrier's SYNC_CORE
 * command) and fetches code afresh.  It waits for no vCPU thread to come
 * round its loop, so unlike vmm_sync() it is no grace period for data
 * that vCPU threads read in user space (trap hooks): free such data only
 * after a vmm_sync().  Where the kernel lacks the command, or
 * VMPOKE_SYNC_CORE=0, or vmm_sync_set_core(vm, false), it is vmm_sync().
 * vmm_sync_set_core(vm, true) fails with -EOPNOTSUPP where the kernel
 * lacks it.  Docs: docs/protocol.md, "The core sync".
 */
#define VMM_SYNC_CORE_ENV	"VMPOKE_SYNC_CORE"
int vmm_sync_core(struct vm *vm);
bool vmm_sync_core_enabled(struct vm *vm);
int vmm_sync_set_core(struct vm *vm, bool on);

/* Is the caller a vCPU thread (e.g. inside a trap hook)?  Such a caller
 * must not sync, pause or take a lock a controller holds while it syncs. */
bool vmm_on_vcpu_thread(void);

/*
 * vmm_pause - stop the world: every online vCPU leaves guest mode, completes
 * any pending IO/MMIO exit, saves its registers and parks.  Offline vCPUs are
 * already parked.  vmm_resume() applies register changes and lets them go.
 * Pauses do not nest.
 */
int vmm_pause(struct vm *vm);
void vmm_resume(struct vm *vm);

/* Registers of a paused (or offline) vCPU: cached copies, owned by the VMM. */
int vmm_vcpu_get_regs(struct vm *vm, unsigned int id, struct kvm_regs *regs);
int vmm_vcpu_set_regs(struct vm *vm, unsigned int id, const struct kvm_regs *regs);
int vmm_vcpu_get_sregs(struct vm *vm, unsigned int id, struct kvm_sregs *sregs);
int vmm_vcpu_set_sregs(struct vm *vm, unsigned int id, const struct kvm_sregs *sregs);

/* Hotplug: an offline vCPU's thread stops entering the guest. */
int vmm_vcpu_offline(struct vm *vm, unsigned int id);
int vmm_vcpu_online(struct vm *vm, unsigned int id);
bool vmm_vcpu_is_online(struct vm *vm, unsigned int id);

/* --- guest memory ------------------------------------------------------ */

/* Through the guest's page tables (boot CR3); -EFAULT if unmapped/outside RAM. */
int vmm_gva_read(struct vm *vm, uint64_t gva, void *buf, size_t len);
int vmm_gva_write(struct vm *vm, uint64_t gva, const void *buf, size_t len);
/* Could code at cpl (0 or 3) make this access?  0, -EFAULT or -EACCES. */
int vmm_gva_access_ok(struct vm *vm, uint64_t gva, size_t len, bool write,
		      unsigned int cpl);
int vmm_gva_to_gpa(struct vm *vm, uint64_t gva, uint64_t *gpa);
/* Host pointer for [gpa, gpa+len) if it lies in guest RAM, else NULL. */
void *vmm_gpa_ptr(struct vm *vm, uint64_t gpa, size_t len);

/*
 * The guest's exported tables, through the one validated reader each
 * (include/guest_tables.h: its rules, and -ENOENT/-EINVAL/-EFAULT with
 * msg naming the table and field).  Tables are large: callers allocate.
 */
int vmm_tasks_read(struct vm *vm, struct vmpoke_task_table *out, char *msg, size_t msglen);
int vmm_task_read(struct vm *vm, uint32_t id, struct vmpoke_task *out, char *msg,
		  size_t msglen);
int vmm_percpu_read(struct vm *vm, unsigned int id, struct vmpoke_percpu *out, char *msg,
		    size_t msglen);
int vmm_sites_read(struct vm *vm, struct vmpoke_site_table *out, char *msg, size_t msglen);
/* The address of vCPU id's CPL0 frame (rsp0 - VMPOKE_CPL0_FRAME_SIZE). */
int vmm_cpl0_frame(struct vm *vm, unsigned int id, uint64_t *frame);
/*
 * vCPU id's CPL0 frames, innermost first (vmpoke_abi.h, "CPL0 frames";
 * gtab_cpl0_frames() in guest_tables.h): out holds VMPOKE_CPL0_MAX_FRAMES.
 */
struct gtab_frame;
unsigned int vmm_cpl0_frames(struct vm *vm, unsigned int id, uint64_t stub_frame,
			     struct gtab_frame *out);

/* Symbolize a guest address: "sym+0xoff (0xaddr)" or "0xaddr". */
const char *vmm_symbolize(const struct vm *vm, uint64_t addr, char *buf, size_t len);

/* --- guest events ------------------------------------------------------ */

/* Count of hypercalls/doorbells of kind hc seen so far (all vCPUs). */
uint64_t vmm_hcall_count(struct vm *vm, enum vmpoke_hcall hc);
/* Block (condvar) until vmm_hcall_count(hc) >= target or timeout; 0 / -ETIMEDOUT. */
int vmm_wait_hcall(struct vm *vm, enum vmpoke_hcall hc, uint64_t target,
		   unsigned int timeout_ms);
/*
 * Guest check failures do not end the run when this is set (torture counts
 * them instead); they are counted in vmm_hcall_count(VMPOKE_HC_CHECK_FAIL).
 */
void vmm_set_check_fail_fatal(struct vm *vm, bool fatal);

/* --- traps -------------------------------------------------------------- */

/*
 * One INT3 hit, as the trap hook sees it.  addr is the address of the INT3
 * byte.  The hook edits rip/rsp (and guest memory for CALL/RET) and returns
 * a verdict.  The VMM writes rip/rsp back to the exception frame (doorbell
 * path) or to the vCPU registers (debug-exit path).
 */
struct vmm_trap {
	struct vm *vm;
	unsigned int vcpu;
	enum vmm_trap_path path;
	uint64_t addr;			/* the INT3 byte */
	uint64_t rip;			/* in: addr + 1; out: where to resume */
	uint64_t rsp;			/* interrupted stack pointer */
	uint64_t rflags;		/* interrupted flags (read-only unless regs_dirty) */
	/*
	 * Every register of the interrupted context (rip = addr + 1, rsp and
	 * rflags as above), at no extra exit: the sync_regs copy of this exit
	 * where KVM offers KVM_CAP_SYNC_REGS, else the one KVM_GET_REGS the
	 * trap path makes anyway.  A hook that changes general-purpose
	 * registers or the arithmetic flags in *regs sets regs_dirty; rip and
	 * rsp are always taken from the fields above.
	 */
	struct kvm_regs *regs;
	bool regs_dirty;
	/*
	 * Privilege of the interrupted code (the frame's CS on path b, CS on
	 * path a): rsp is that code's own stack either way, and emulated
	 * stack accesses are checked against the page tables as that CPL.
	 */
	unsigned int cpl;
};

enum vmm_trap_verdict {
	VMM_TRAP_HANDLED = 0,		/* resume at trap->rip / trap->rsp */
	VMM_TRAP_FOREIGN = 1,		/* not ours: hand on to the guest */
};

/*
 * Called on the trapping vCPU's own thread.  It must not block on anything a
 * thread inside vmm_sync()/vmm_pause() may hold: see docs/design.md.
 * Without a hook every INT3 is foreign.
 */
typedef enum vmm_trap_verdict (*vmm_trap_fn)(struct vmm_trap *trap, void *opaque);
/*
 * Install fn (NULL: none).  Atomic for the vCPUs: each trap sees one whole
 * (fn, opaque) pair.  The caller may free what the old opaque points to
 * only after a later vmm_sync() succeeded.  0, or -ENOMEM.
 */
int vmm_set_trap_hook(struct vm *vm, vmm_trap_fn fn, void *opaque);

/* --- trap paths --------------------------------------------------------- */

/* "auto", "debug-exit", "doorbell", as users spell them; -1 if unknown. */
int vmm_trap_path_parse(const char *name);
const char *vmm_trap_path_name(enum vmm_trap_path p);

/*
 * The one switch that forces the trap path: the environment variable
 * VMPOKE_TRAP_PATH applies to every VM whose config says VMM_TRAP_AUTO, so
 * every command, library user and test honours it (commands set it from
 * --trap-path).  VMM_TRAP_AUTO when unset or empty; -1 when it names no
 * trap path.
 */
#define VMM_TRAP_PATH_ENV	"VMPOKE_TRAP_PATH"
int vmm_trap_path_env(void);

/* What auto picks where KVM_EXIT_DEBUG on int3 does (or does not) work. */
enum vmm_trap_path vmm_trap_path_auto(bool debug_exit_works);
/*
 * The path a VM with config path cfg takes on such a host: cfg, else the
 * one VMPOKE_TRAP_PATH forces (*forced set), else auto's.  May be
 * debug-exit where it does not work: vmm_create() refuses that.
 */
enum vmm_trap_path vmm_trap_path_resolve(enum vmm_trap_path cfg, bool debug_exit_works,
					 bool *forced);

/* --- host probing (vmpoke doctor, trap-path auto-detection) ------------- */

struct vmm_host_caps {
	bool kvm_ok;			/* /dev/kvm opened, API version 12 */
	int api_version;
	char problem[256];		/* why not, and what to do */
	bool cap_irqchip, cap_immediate_exit, cap_set_guest_debug;
	bool cap_user_memory, cap_pit2;
	/* Found by running tiny probe VMs: */
	bool debug_exit_on_int3;	/* USE_SW_BP gives KVM_EXIT_DEBUG */
	bool singlestep_exits;		/* SINGLESTEP gives KVM_EXIT_DEBUG */
	bool cpl0_int3;			/* a CPL0 INT3 traps on the path a run takes */
	double exit_roundtrip_us;	/* median CPL0 `out` round trip */
	double kick_us;			/* median kick -> KVM_RUN returns */
	bool sync_core;			/* membarrier SYNC_CORE: vmm_sync_core() can use it */
};

/*
 * Can vmpoke trap an INT3 in CPL0 code on this host, on `path`?  A probe VM,
 * once per process and path (cached).  Where not (kvm_pvm: the CPL0 int3
 * ends the guest with KVM_EXIT_INTERNAL_ERROR), CPL0 code must be patched
 * without INT3 (stop-the-world).
 */
bool vmm_cpl0_int3_trappable(enum vmm_trap_path path);

/* Fills caps; never exits the process.  0, or -errno if KVM is unusable. */
int vmm_probe_host(struct vmm_host_caps *caps);

/*
 * Latency recording for benchmarks: while armed, the vCPU thread stores the
 * nanoseconds between consecutive hypercalls of kind hc on vCPU `id` into
 * buf (at most n, a ring is not needed).  Returns samples recorded so far.
 */
void vmm_record_hcall_intervals(struct vm *vm, unsigned int id,
				enum vmpoke_hcall hc, uint64_t *buf, size_t n);
size_t vmm_recorded_intervals(struct vm *vm, unsigned int id);

/* --- diagnostics -------------------------------------------------------- */

void vmm_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vmm_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* VMPOKE_VMM_H */
