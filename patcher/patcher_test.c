// SPDX-License-Identifier: MIT
/*
 * patcher_test.c - test-only arm/disarm of one live site.  See
 * patcher_test.h.  Uses only what patcher_internal.h exposes, in the same
 * order as batch.c: publish before the INT3 is written, retire only after
 * the original byte is back and every vCPU has synced.
 */
#include <stdio.h>

#include "patcher_internal.h"
#include "patcher_test.h"

static enum poke_err test_sync(struct patcher *p, const struct poke_site *site,
			       const char *after, char *msg, size_t msglen)
{
	uint64_t mark = traptable_mark(&p->table);

	if (vmm_sync(p->vm)) {
		snprintf(msg, msglen, "%s: sync after %s timed out", site->where,
			 after);
		return POKE_E_SYNC;
	}
	traptable_reclaim(&p->table, mark);
	return POKE_OK;
}

static enum poke_err test_write(struct patcher *p, const struct poke_site *site,
				uint8_t byte, char *msg, size_t msglen)
{
	if (vmm_gva_write(p->vm, site->addr, &byte, 1)) {
		snprintf(msg, msglen, "%s: guest memory not mapped", site->where);
		return POKE_E_FAULT;
	}
	return POKE_OK;
}

enum poke_err patcher_arm_for_test(struct patcher *p, const struct poke_site *site,
				   char *msg, size_t msglen)
{
	enum poke_err err;

	pthread_mutex_lock(&p->lock);
	if (traptable_add(&p->table, site, 1)) {
		snprintf(msg, msglen, "%s: out of memory", site->where);
		pthread_mutex_unlock(&p->lock);
		return POKE_E_INVAL;
	}
	err = test_write(p, site, POKE_INT3, msg, msglen);
	if (!err)
		err = test_sync(p, site, "INT3", msg, msglen);
	if (err)
		traptable_remove(&p->table, site, 1);
	pthread_mutex_unlock(&p->lock);
	return err;
}

enum poke_err patcher_disarm_for_test(struct patcher *p, const struct poke_site *site,
				      char *msg, size_t msglen)
{
	enum poke_err err;

	pthread_mutex_lock(&p->lock);
	err = test_write(p, site, site->old[0], msg, msglen);
	if (!err)
		err = test_sync(p, site, "restoring the first byte", msg, msglen);
	if (!err) {
		traptable_remove(&p->table, site, 1);
		err = test_sync(p, site, "retire", msg, msglen);
	}
	pthread_mutex_unlock(&p->lock);
	return err;
}
