// SPDX-License-Identifier: MIT
/*
 * sync.c - kick, sync, pause/resume and hotplug: the VMM's stand-in for the
 * kernel's IPI-sync that text_poke_bp relies on.
 *
 * WHY IT IS ENOUGH where Linux runs sync_core() on every CPU (the full
 * argument: docs/protocol.md, "Why a sync is enough").  An ack proves the
 * vCPU left guest mode after the write and re-enters only after the ack.
 * On hardware KVM it re-enters through VM entry, and a vCPU that trapped
 * on our INT3 leaves the #BP stub through IRETQ, which is serializing; on
 * kvm_pvm host writes reach running vCPUs at once and CPL0 is emulated
 * from one snapshot of the bytes per instruction.  That the vCPU then
 * fetches the new bytes is an assumption the torture test checks.
 *
 * THE PRIMITIVE.  A kick is pthread_kill(thread, VMM_KICK_SIG); the handler
 * sets the target thread's kvm_run->immediate_exit = 1 (through a TLS
 * pointer).  KVM polls immediate_exit when KVM_RUN starts and a pending
 * signal forces an exit from guest mode, so either way KVM_RUN returns
 * -EINTR.  The handler is installed process-wide once, before any vCPU
 * thread exists, and vCPU threads are created with every signal blocked and
 * then unblock only VMM_KICK_SIG: a kick can never hit a thread that has no
 * handler (the KVM selftests bug fixed in bf1e15a8), and SIGINT/SIGTERM go to
 * the CLI's main thread.
 *
 * Each vCPU loop iteration does, in this order:
 *   1. run->immediate_exit = 0;
 *   2. full fence (seq_cst);
 *   3. g = load(vm->sync_gen);  store(v->acked_gen, g);  if that completes
 *      generation g (every vCPU acked, parked or exited), wake controllers;
 *   4. check stop / pause / offline requests (park if asked);
 *   5. KVM_RUN.
 * vmm_sync() does: g = ++vm->sync_gen (seq_cst); kick every vCPU; wait
 * until every vCPU has acked_gen >= g or is parked.
 *
 * Why no kick is lost: consider the kick for generation g.  If its handler
 * ran before step 1 of some iteration, that iteration's step 3 happens after
 * the increment (the increment precedes pthread_kill), so it acks >= g.  If
 * the handler ran after step 1, immediate_exit stays 1 until the next step 1,
 * so the KVM_RUN of this iteration returns -EINTR at once (or the thread was
 * already past the check and the signal itself kicks it out of guest mode),
 * and the next iteration's step 3 acks >= g.  Either way an ack >= g follows
 * in bounded time; nothing depends on timing.
 *
 * Why an ack means what vmm_sync promises ("was not in guest mode since the
 * call started, or will enter only after it"): the ack of g is stored at
 * step 3, after the vCPU left KVM_RUN (or never entered it), and the next
 * KVM_RUN (step 5) comes after it.  Since g was loaded at step 3 the bump
 * happened before step 3, so any guest-mode stretch that overlapped the
 * bump has ended, and every later one starts after the ack: exactly the
 * exit-and-re-enter the kernel gets from an IPI.  A parked vCPU is outside
 * KVM_RUN and re-runs step 3 before it enters again, so it counts as synced.
 *
 * Waiting without spinning: every park, and every ack that completes a
 * generation, bumps vm->event_seq and, if a controller announced itself in
 * ctl_waiters, FUTEX_WAKEs it.  A controller announces itself, loads
 * event_seq, checks the acks, and FUTEX_WAITs on the loaded value with a
 * timeout; all seq_cst, so a completing ack it missed in the check has
 * changed event_seq and the wait returns at once (Dekker on two words).
 * Of two vCPUs acking the last two acks at once, each stores its ack and
 * then scans the others (seq_cst), so at least one sees the generation
 * complete and wakes; the timed wait bounds any other surprise.
 *
 * No deadlock (seed 003, docs/design.md): controllers (sync, pause, hotplug) serialize on
 * ctl_lock, which no vCPU thread ever takes; while they wait they hold
 * nothing else.  vCPU threads take park_lock only around short critical
 * sections that never wait on a controller.  So a vCPU handling an exit (or
 * running the trap hook) can always finish and ack.  A vCPU that does not
 * ack in VMM_SYNC_RETRY_MS is kicked again; after VMM_SYNC_GIVEUP_MS the
 * call names it and its last known RIP and returns -ETIMEDOUT.
 *
 * Pause: pause_req plus a kick; the vCPU completes a pending IO/MMIO exit
 * with an immediate_exit KVM_RUN (api.rst: registers are inconsistent
 * until then), caches regs/sregs, marks itself parked and waits on
 * park_cond.  Register writes go to the cache; the vCPU applies them with
 * KVM_SET_REGS itself before it runs again (vCPU ioctls from the owner
 * thread only).  Hotplug is the same park, per vCPU, via offline_req.
 * Requests are raised, and a parked vCPU decides to leave and clears
 * "parked", under park_lock: otherwise a pause right after a resume could
 * see the previous park's stale flag while the vCPU is already on its way
 * out (seen in the 1000-round pause test before this rule).
 */
#include <errno.h>
#include <sched.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "vmm_internal.h"

static __thread struct kvm_run *tls_run;

static void sync_kick_handler(int sig)
{
	struct kvm_run *run = tls_run;

	(void)sig;
	if (run)
		run->immediate_exit = 1;
	atomic_signal_fence(memory_order_seq_cst);
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void sync_do_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sync_kick_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: KVM_RUN must return -EINTR */
	sigaction(VMM_KICK_SIG, &sa, NULL);
}

void sync_install_kick(void)
{
	pthread_once(&kick_once, sync_do_install);
}

void sync_set_run(struct kvm_run *run)
{
	tls_run = run;
}

void sync_kick(struct vcpu *v)
{
	if (atomic_load(&v->thread_live))
		pthread_kill(v->thread, VMM_KICK_SIG);
}

void sync_kick_all(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		sync_kick(&vm->vcpus[i]);
}

static long sync_futex(_Atomic uint32_t *addr, int op, uint32_t val,
		       const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

/* Async-signal-safe: an atomic add and a syscall. */
void sync_notify(struct vm *vm)
{
	atomic_fetch_add(&vm->event_seq, 1);
	if (atomic_load(&vm->ctl_waiters))
		sync_futex(&vm->event_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
}

bool sync_acked(struct vcpu *v, uint64_t gen)
{
	return atomic_load(&v->acked_gen) >= gen || atomic_load(&v->parked) ||
	       atomic_load(&v->exited);
}

static bool sync_all_acked(struct vm *vm, uint64_t gen)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		if (!sync_acked(&vm->vcpus[i], gen))
			return false;
	return true;
}

/*
 * With no core to spare (as many busy vCPUs as host cores), the controller
 * woken by the completing ack would wait for a scheduler tick to get a
 * core (milliseconds: PLATFORM.md), while this thread goes straight back
 * into guest mode.  So the last acker lends it its core: it sleeps until
 * the controller has seen the generation complete, at most
 * SYNC_HANDOFF_NS.  It has acked and is outside guest mode, so nothing
 * waits on it, and it holds no lock.
 */
#define SYNC_HANDOFF_NS	200000L

static void sync_vcpu_handoff(struct vm *vm, uint64_t g)
{
	struct timespec ts = { 0, SYNC_HANDOFF_NS };
	uint32_t seen = atomic_load(&vm->sync_done);

	if (!atomic_load(&vm->sync_handoff) || !atomic_load(&vm->ctl_waiters) ||
	    seen == (uint32_t)g)
		return;
	sync_futex(&vm->sync_done, FUTEX_WAIT_PRIVATE, seen, &ts);
}

/*
 * Step 3 of the loop above.  Only the ack that completes a generation
 * wakes the controller: waking it for each vCPU costs a context switch
 * per vCPU for nothing.  Two vCPUs acking at once each store, then scan
 * (both seq_cst), so at least one of them sees the other's ack and
 * wakes; parking and exiting notify by themselves, and the controller's
 * timed wait re-checks regardless.
 */
void sync_vcpu_ack(struct vcpu *v)
{
	uint64_t g;

	atomic_thread_fence(memory_order_seq_cst);
	g = atomic_load(&v->vm->sync_gen);
	if (g != atomic_load_explicit(&v->acked_gen, memory_order_relaxed)) {
		atomic_store(&v->acked_gen, g);
		atomic_fetch_add_explicit(&v->syncs_acked, 1, memory_order_relaxed);
		if (sync_all_acked(v->vm, g)) {
			sync_notify(v->vm);
			sync_vcpu_handoff(v->vm, g);
		}
	}
	sync_prio_vcpu_ack(v);
}

static uint64_t sync_now_ms(void)
{
	return clock_now_ns() / 1000000u;
}

/*
 * Wait until done(vm, i, arg) holds for every vCPU.  Re-kicks laggards after
 * VMM_SYNC_RETRY_MS; gives up after VMM_SYNC_GIVEUP_MS naming the first.
 */
static int sync_wait_all(struct vm *vm, bool (*done)(struct vcpu *, uint64_t),
			 uint64_t arg, const char *what, int *laggard)
{
	uint64_t start = sync_now_ms(), last_kick = start;
	int ret = 0;

	atomic_fetch_add(&vm->ctl_waiters, 1);
	for (;;) {
		uint32_t seq = atomic_load(&vm->event_seq);
		struct vcpu *lag = NULL;
		uint64_t now;
		struct timespec ts;

		for (unsigned int i = 0; i < vm->nr_vcpus && !lag; i++)
			if (!done(&vm->vcpus[i], arg))
				lag = &vm->vcpus[i];
		if (!lag)
			break;
		now = sync_now_ms();
		if (now - start >= VMM_SYNC_GIVEUP_MS) {
			char sym[160];

			vmm_error("%s: vcpu %u did not respond within %u ms; "
				  "last known rip %s", what, lag->id,
				  VMM_SYNC_GIVEUP_MS,
				  vmm_symbolize(vm, atomic_load(&lag->last_rip),
						sym, sizeof(sym)));
			if (laggard)
				*laggard = (int)lag->id;
			ret = -ETIMEDOUT;
			break;
		}
		if (now - last_kick >= VMM_SYNC_RETRY_MS) {
			for (unsigned int i = 0; i < vm->nr_vcpus; i++)
				if (!done(&vm->vcpus[i], arg))
					sync_kick(&vm->vcpus[i]);
			last_kick = now;
		}
		ts.tv_sec = 0;
		ts.tv_nsec = 100 * 1000000L;	/* bounds the retry check only */
		sync_futex(&vm->event_seq, FUTEX_WAIT_PRIVATE, seq, &ts);
	}
	atomic_fetch_sub(&vm->ctl_waiters, 1);
	return ret;
}

bool vmm_on_vcpu_thread(void)
{
	return tls_run != NULL;
}

/* A vCPU waiting for itself would wait forever: refuse, loudly. */
static bool sync_from_vcpu(const char *what)
{
	if (!tls_run)
		return false;
	vmm_error("%s called from a vCPU thread (e.g. a trap hook): refused", what);
	return true;
}

/* --- speed of sync ------------------------------------------------------ */

#define SYNC_SPIN_MIN_NS	2000ull		/* bounds of the adaptive spin */
#define SYNC_SPIN_MAX_NS	50000ull

static uint64_t sync_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The cores this process may run on, re-read at most once a second (a
 * test may make a VM assume fewer).
 */
static unsigned int sync_host_cpus(struct vm *vm)
{
	static _Atomic unsigned int cpus;
	static _Atomic uint64_t when;
	uint64_t now = sync_now_ns();
	cpu_set_t set;

	if (vm->sync_cpus_test)
		return vm->sync_cpus_test;
	if (!atomic_load(&cpus) || now - atomic_load(&when) > 1000000000ull) {
		CPU_ZERO(&set);
		atomic_store(&cpus, sched_getaffinity(0, sizeof(set), &set) ? 1u :
			     (unsigned int)CPU_COUNT(&set));
		atomic_store(&when, now);
	}
	return atomic_load(&cpus);
}

static unsigned int sync_online(struct vm *vm)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		n += !atomic_load(&vm->vcpus[i].offline_req) &&
		     !atomic_load(&vm->vcpus[i].exited);
	return n;
}

/*
 * A bounded adaptive spin on the acks before sleeping, as adaptive mutexes
 * spin on a running owner: only when the host has a core for the caller
 * beyond one per online vCPU (the caller checks) (on 2 cores with 2 busy vCPUs a spin would
 * steal the very core a vCPU needs to ack), and for about twice as long as
 * recent syncs took to complete, 2..50 us.  Not announced in ctl_waiters,
 * so the vCPUs' completing ack skips its FUTEX_WAKE; the futex wait
 * follows if the spin gives up.  True if every vCPU acked.
 */
static bool sync_spin(struct vm *vm, uint64_t gen)
{
	uint64_t budget = 2 * atomic_load(&vm->sync_ewma_ns), t0;

	budget = budget < SYNC_SPIN_MIN_NS ? SYNC_SPIN_MIN_NS :
		 budget > SYNC_SPIN_MAX_NS ? SYNC_SPIN_MAX_NS : budget;
	atomic_fetch_add(&vm->sync_spins, 1);
	t0 = sync_now_ns();
	do {
		unsigned int i;

		for (i = 0; i < vm->nr_vcpus && sync_acked(&vm->vcpus[i], gen); i++)
			;
		if (i == vm->nr_vcpus) {
			atomic_fetch_add(&vm->sync_spin_hits, 1);
			return true;
		}
		__builtin_ia32_pause();
	} while (sync_now_ns() - t0 < budget);
	return false;
}

void vmm_sync_info(struct vm *vm, struct vmm_sync_info *info)
{
	info->host_cpus = sync_host_cpus(vm);
	info->spin = info->host_cpus > sync_online(vm);
	info->prio = (enum vmm_sync_prio)atomic_load(&vm->sync_prio);
	info->spins = atomic_load(&vm->sync_spins);
	info->spin_hits = atomic_load(&vm->sync_spin_hits);
	info->lends = atomic_load(&vm->sync_lends);
	info->core = atomic_load(&vm->sync_core);
	info->core_syncs = atomic_load(&vm->sync_core_calls);
}

int vmm_sync(struct vm *vm)
{
	return vmm_sync_laggard(vm, NULL);
}

/*
 * Until every vCPU acked gen or ns passed: true if they all did.  The
 * futex wait of sync_wait_all(), with a deadline instead of re-kicks.
 */
static bool sync_wait_until(struct vm *vm, uint64_t gen, uint64_t ns)
{
	uint64_t end = sync_now_ns() + ns, now;
	bool done;

	atomic_fetch_add(&vm->ctl_waiters, 1);
	for (;;) {
		uint32_t seq = atomic_load(&vm->event_seq);
		struct timespec ts = { 0, 0 };

		done = sync_all_acked(vm, gen);
		now = sync_now_ns();
		if (done || now >= end)
			break;
		ts.tv_nsec = (long)(end - now);
		sync_futex(&vm->event_seq, FUTEX_WAIT_PRIVATE, seq, &ts);
	}
	atomic_fetch_sub(&vm->ctl_waiters, 1);
	return done;
}

int vmm_sync_laggard(struct vm *vm, int *laggard)
{
	struct sync_prio sp = { .fifo = false };
	uint64_t gen, mark, t0;
	bool spare, handoff;
	int ret = 0;

	if (laggard)
		*laggard = -1;
	if (sync_from_vcpu("vmm_sync"))
		return -EDEADLK;
	mark = trap_hook_mark(vm);
	if (!vm->started) {
		trap_hook_reclaim(vm, mark);	/* no vCPU thread, no hook caller */
		return 0;
	}
	pthread_mutex_lock(&vm->ctl_lock);
	t0 = sync_now_ns();
	spare = sync_host_cpus(vm) > sync_online(vm);
	/* No core to spare: priorities (sync_prio.c), from before the kick. */
	if (!spare)
		sync_prio_begin(vm, &sp);
	handoff = !spare && !sp.fifo;
	atomic_store(&vm->sync_handoff, handoff);
	gen = atomic_fetch_add(&vm->sync_gen, 1) + 1;
	sync_kick_all(vm);
	if (!spare || !sync_spin(vm, gen)) {
		if (sp.fifo && !sync_wait_until(vm, gen, sync_prio_lend_after(vm)))
			sync_prio_lend(vm, gen);
		if (!spare)
			sync_prio_wait(vm, &sp);
		ret = sync_wait_all(vm, sync_acked, gen, "sync", laggard);
	}
	if (!spare)
		sync_prio_end(&sp);
	/* Give the last acker its core back (sync_vcpu_handoff()). */
	atomic_store(&vm->sync_done, (uint32_t)gen);
	if (handoff)
		sync_futex(&vm->sync_done, FUTEX_WAKE_PRIVATE, INT_MAX, NULL);
	if (!ret) {
		uint64_t took = sync_now_ns() - t0, avg = atomic_load(&vm->sync_ewma_ns);

		atomic_store(&vm->sync_ewma_ns, avg ? (7 * avg + took) / 8 : took);
		/* A floor that rises slowly: what an uncontended sync takes. */
		avg = atomic_load(&vm->sync_fast_ns);
		atomic_store(&vm->sync_fast_ns, !avg || took < avg ? took :
			     avg + (took - avg) / 64);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	/* The grace period of replaced trap hooks (trap.c). */
	if (!ret)
		trap_hook_reclaim(vm, mark);
	return ret;
}

/* --- vCPU side of pause/offline ---------------------------------------- */

/* Complete a pending IO/MMIO exit and cache registers (own thread). */
void sync_vcpu_prepare_park(struct vcpu *v)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;

	if (v->io_pending) {
		v->run->immediate_exit = 1;
		if (ioctl(v->fd, KVM_RUN, 0) == 0 && v->run->exit_reason != KVM_EXIT_INTR)
			vmm_error("vcpu %u: completing IO: unexpected exit %u",
				  v->id, v->run->exit_reason);
		v->run->immediate_exit = 0;
		v->io_pending = false;
	}
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0) {
		vmm_error("vcpu %u: KVM_GET_REGS/SREGS: %s", v->id, strerror(errno));
		return;
	}
	pthread_mutex_lock(&v->vm->park_lock);
	v->regs = regs;
	v->sregs = sregs;
	v->regs_dirty = v->sregs_dirty = false;
	pthread_mutex_unlock(&v->vm->park_lock);
	atomic_store(&v->last_rip, regs.rip);
}

static bool sync_should_park(struct vcpu *v)
{
	return (atomic_load(&v->vm->pause_req) || atomic_load(&v->offline_req)) &&
	       !atomic_load(&v->vm->stop_req);
}

void sync_vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	bool dirty, sdirty;

	sync_vcpu_prepare_park(v);
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(&v->parked, true);
	sync_notify(vm);
	while (sync_should_park(v))
		pthread_cond_wait(&vm->park_cond, &vm->park_lock);
	/*
	 * Decide to leave and stop counting as parked in one critical section:
	 * requests are raised under park_lock too (sync_request), so a
	 * controller that raised one after this point sees parked == false
	 * and waits for the next park, never for a stale one.
	 */
	dirty = v->regs_dirty;
	regs = v->regs;
	sdirty = v->sregs_dirty;
	sregs = v->sregs;
	v->regs_dirty = v->sregs_dirty = false;
	atomic_store(&v->parked, false);
	pthread_mutex_unlock(&vm->park_lock);
	if (sdirty && ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		vmm_error("vcpu %u: KVM_SET_SREGS: %s", v->id, strerror(errno));
	if (dirty && ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		vmm_error("vcpu %u: KVM_SET_REGS: %s", v->id, strerror(errno));
}

/* --- controller side ---------------------------------------------------- */

static bool sync_is_parked(struct vcpu *v, uint64_t unused)
{
	(void)unused;
	return atomic_load(&v->parked) || atomic_load(&v->exited);
}

static bool sync_is_parked_one(struct vcpu *v, uint64_t id)
{
	return v->id != id || sync_is_parked(v, 0);
}

/* Raise a pause/offline request; under park_lock, see sync_vcpu_park(). */
static void sync_request(struct vm *vm, _Atomic bool *req)
{
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(req, true);
	pthread_mutex_unlock(&vm->park_lock);
}

static void sync_release(struct vm *vm)
{
	pthread_mutex_lock(&vm->park_lock);
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
}

int vmm_pause(struct vm *vm)
{
	int ret;

	if (sync_from_vcpu("vmm_pause"))
		return -EDEADLK;
	if (!vm->started)
		return -EINVAL;
	pthread_mutex_lock(&vm->ctl_lock);
	if (vm->paused) {
		pthread_mutex_unlock(&vm->ctl_lock);
		return -EBUSY;
	}
	sync_request(vm, &vm->pause_req);
	sync_kick_all(vm);
	ret = sync_wait_all(vm, sync_is_parked, 0, "pause", NULL);
	if (ret) {
		atomic_store(&vm->pause_req, false);
		sync_release(vm);
	} else {
		vm->paused = true;
	}
	pthread_mutex_unlock(&vm->ctl_lock);
	return ret;
}

void vmm_resume(struct vm *vm)
{
	pthread_mutex_lock(&vm->ctl_lock);
	if (vm->paused) {
		pthread_mutex_lock(&vm->park_lock);
		atomic_store(&vm->pause_req, false);
		vm->paused = false;
		pthread_cond_broadcast(&vm->park_cond);
		pthread_mutex_unlock(&vm->park_lock);
	}
	pthread_mutex_unlock(&vm->ctl_lock);
}

/*
 * The cache is readable while the vCPU is paused or offline and parked, or
 * gone.  The request is checked too, so that after vmm_resume() the answer
 * is -EBUSY at once, not only once the thread got round to leaving.
 */
static struct vcpu *sync_parked_vcpu(struct vm *vm, unsigned int id)
{
	struct vcpu *v;

	if (id >= vm->nr_vcpus)
		return NULL;
	v = &vm->vcpus[id];
	if (atomic_load(&v->exited))
		return v;
	if (!atomic_load(&vm->pause_req) && !atomic_load(&v->offline_req))
		return NULL;
	return atomic_load(&v->parked) ? v : NULL;
}

/* Copy a field of the register cache out (len bytes at offset off of struct vcpu). */
static int sync_cache_read(struct vm *vm, unsigned int id, void *out, size_t off,
			   size_t len)
{
	struct vcpu *v = sync_parked_vcpu(vm, id);

	if (!v)
		return id >= vm->nr_vcpus ? -EINVAL : -EBUSY;
	pthread_mutex_lock(&vm->park_lock);
	memcpy(out, (const char *)v + off, len);
	pthread_mutex_unlock(&vm->park_lock);
	return 0;
}

int vmm_vcpu_get_regs(struct vm *vm, unsigned int id, struct kvm_regs *regs)
{
	return sync_cache_read(vm, id, regs, offsetof(struct vcpu, regs), sizeof(*regs));
}

int vmm_vcpu_get_sregs(struct vm *vm, unsigned int id, struct kvm_sregs *sregs)
{
	return sync_cache_read(vm, id, sregs, offsetof(struct vcpu, sregs),
			       sizeof(*sregs));
}

int vmm_vcpu_set_regs(struct vm *vm, unsigned int id, const struct kvm_regs *regs)
{
	struct vcpu *v = sync_parked_vcpu(vm, id);

	if (!v)
		return id >= vm->nr_vcpus ? -EINVAL : -EBUSY;
	pthread_mutex_lock(&vm->park_lock);
	v->regs = *regs;
	v->regs_dirty = true;
	pthread_mutex_unlock(&vm->park_lock);
	return 0;
}

int vmm_vcpu_set_sregs(struct vm *vm, unsigned int id, const struct kvm_sregs *sregs)
{
	struct vcpu *v = sync_parked_vcpu(vm, id);

	if (!v)
		return id >= vm->nr_vcpus ? -EINVAL : -EBUSY;
	pthread_mutex_lock(&vm->park_lock);
	v->sregs = *sregs;
	v->sregs_dirty = true;
	pthread_mutex_unlock(&vm->park_lock);
	return 0;
}

int vmm_vcpu_offline(struct vm *vm, unsigned int id)
{
	struct vcpu *v;
	int ret;

	if (id >= vm->nr_vcpus)
		return -EINVAL;
	if (sync_from_vcpu("vmm_vcpu_offline"))
		return -EDEADLK;
	v = &vm->vcpus[id];
	pthread_mutex_lock(&vm->ctl_lock);
	sync_request(vm, &v->offline_req);
	if (!vm->started) {
		pthread_mutex_unlock(&vm->ctl_lock);
		return 0;
	}
	sync_kick(v);
	ret = sync_wait_all(vm, sync_is_parked_one, id, "offline", NULL);
	pthread_mutex_unlock(&vm->ctl_lock);
	return ret;
}

int vmm_vcpu_online(struct vm *vm, unsigned int id)
{
	if (id >= vm->nr_vcpus)
		return -EINVAL;
	pthread_mutex_lock(&vm->ctl_lock);
	pthread_mutex_lock(&vm->park_lock);
	atomic_store(&vm->vcpus[id].offline_req, false);
	pthread_cond_broadcast(&vm->park_cond);
	pthread_mutex_unlock(&vm->park_lock);
	pthread_mutex_unlock(&vm->ctl_lock);
	return 0;
}

bool vmm_vcpu_is_online(struct vm *vm, unsigned int id)
{
	return id < vm->nr_vcpus && !atomic_load(&vm->vcpus[id].offline_req);
}
