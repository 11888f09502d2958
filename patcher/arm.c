// SPDX-License-Identifier: MIT
/*
 * arm.c - arming and disarming a persistent trap entry (a probe's head,
 * the lab's live site) through the protocol, in the same order as
 * batch.c: publish the entry before its INT3 is written, sync; on the way
 * out put the original first byte back, sync, and retire the entry only
 * then, with a second sync as the grace period for its snapshot.
 *
 * Between arm and disarm the head stays INT3: the final head of the
 * protocol is INT3 itself (kprobes' arm_kprobe()), so no tail is written
 * and the bytes after the head are never touched.  Every hit goes through
 * the trap hook, which never puts the original bytes back.
 */
#include <stdio.h>

#include "patcher_internal.h"

/* One sync of the protocol; poke_sync() says which kind does what. */
static enum poke_err arm_sync(struct patcher *p, enum poke_sync_kind kind, const char *where,
			      const char *after, char *msg, size_t msglen)
{
	int laggard;

	if (poke_sync(p, kind, &laggard)) {
		snprintf(msg, msglen, "%s: sync after %s timed out", where, after);
		return POKE_E_SYNC;
	}
	return POKE_OK;
}

static enum poke_err arm_write(struct patcher *p, uint64_t addr, uint8_t byte,
			       const char *where, char *msg, size_t msglen)
{
	uint8_t back;

	if (vmm_gva_write(p->vm, addr, &byte, 1) ||
	    vmm_gva_read(p->vm, addr, &back, 1)) {
		snprintf(msg, msglen, "%s: guest memory not mapped", where);
		return POKE_E_FAULT;
	}
	if (back != byte) {
		snprintf(msg, msglen, "%s: read-back 0x%02x after writing 0x%02x",
			 where, back, byte);
		return POKE_E_READBACK;
	}
	return POKE_OK;
}

/* Caller holds p->lock. */
enum poke_err poke_arm_locked(struct patcher *p, const struct poke_live *e,
			      const char *where, char *msg, size_t msglen)
{
	enum poke_err err;

	if (traptable_add_live(&p->table, e, 1)) {
		snprintf(msg, msglen, "%s: out of memory", where);
		return POKE_E_NOMEM;
	}
	err = arm_write(p, e->addr, POKE_INT3, where, msg, msglen);
	if (!err)
		err = arm_sync(p, POKE_SYNC_PHASE, where, "INT3", msg, msglen);
	if (err) {
		/*
		 * Undo in the same order as a disarm: byte first, then entry.
		 * The caller frees what the entry points to unless the error
		 * is POKE_E_SYNC (a vCPU that never acknowledged may hold it),
		 * so otherwise an acknowledged sync comes first, and if even
		 * that fails the error becomes POKE_E_SYNC.
		 */
		if (!arm_write(p, e->addr, e->old[0], where, NULL, 0))
			arm_sync(p, POKE_SYNC_DRAIN, where, "undo", NULL, 0);
		traptable_remove_addrs(&p->table, &e->addr, 1);
		if (err != POKE_E_SYNC && arm_sync(p, POKE_SYNC_GRACE, where, "retire", NULL, 0))
			err = POKE_E_SYNC;
	}
	return err;
}

enum poke_err poke_disarm_locked(struct patcher *p, const struct poke_live *e,
				 const char *where, char *msg, size_t msglen)
{
	enum poke_err err;

	err = arm_write(p, e->addr, e->old[0], where, msg, msglen);
	if (!err)
		err = arm_sync(p, POKE_SYNC_DRAIN, where, "restoring the first byte", msg, msglen);
	if (err)
		return err;	/* the entry stays: a vCPU may still trap there */
	traptable_remove_addrs(&p->table, &e->addr, 1);
	/* The caller frees the entry's probe next: no hook may still hold it. */
	return arm_sync(p, POKE_SYNC_GRACE, where, "retire", msg, msglen);
}

/*
 * Replace bytes[0..len) at addr through the protocol, from an armed head
 * (INT3 at addr, its entry published): INT3 (again), sync, the tail
 * bytes[1..len), sync, head bytes[0], sync.  Optimized probes use it both
 * ways (optprobe.c): in, the JMP to the detour; out, the original tail
 * with head INT3, so the probe is armed again.  Caller holds p->lock and
 * has made sure no context is inside (addr, addr + len).
 */
enum poke_err poke_rewrite_locked(struct patcher *p, uint64_t addr, const uint8_t *bytes,
				  size_t len, const char *where, char *msg, size_t msglen)
{
	enum poke_err err;

	err = arm_write(p, addr, POKE_INT3, where, msg, msglen);
	if (!err)
		err = arm_sync(p, POKE_SYNC_PHASE, where, "INT3", msg, msglen);
	for (size_t i = 1; !err && i < len; i++)
		err = arm_write(p, addr + i, bytes[i], where, msg, msglen);
	if (!err && len > 1)
		err = arm_sync(p, POKE_SYNC_PHASE, where, "the tail", msg, msglen);
	if (!err && bytes[0] != POKE_INT3) {
		err = arm_write(p, addr, bytes[0], where, msg, msglen);
		if (!err)
			err = arm_sync(p, POKE_SYNC_PHASE, where, "the head", msg, msglen);
	}
	return err;
}

enum poke_err poke_arm(struct patcher *p, const struct poke_live *e,
		       const char *where, char *msg, size_t msglen)
{
	enum poke_err err;

	pthread_mutex_lock(&p->lock);
	err = poke_arm_locked(p, e, where, msg, msglen);
	pthread_mutex_unlock(&p->lock);
	return err;
}

enum poke_err poke_disarm(struct patcher *p, const struct poke_live *e,
			  const char *where, char *msg, size_t msglen)
{
	enum poke_err err;

	pthread_mutex_lock(&p->lock);
	err = poke_disarm_locked(p, e, where, msg, msglen);
	pthread_mutex_unlock(&p->lock);
	return err;
}
