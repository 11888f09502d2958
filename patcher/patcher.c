// SPDX-License-Identifier: MIT
/*
 * patcher.c - lifetime, statistics and messages of the patching engine.
 */
#include <stdlib.h>
#include <string.h>

#include "patcher_internal.h"

#define POKE_DEFAULT_RETRIES	50
#define POKE_DEFAULT_BACKOFF_US	200

const char *poke_strerror(enum poke_err e)
{
	static const char *const text[] = {
		[POKE_OK]		= "success",
		[POKE_E_NOSYM]		= "address not inside a function symbol",
		[POKE_E_BOUNDARY]	= "not an instruction boundary",
		[POKE_E_DECODE]		= "new bytes are not one instruction of the site's length",
		[POKE_E_EMULATE]	= "instruction cannot be emulated (JMP/CALL/RET/Jcc/NOP2/NOP5 only)",
		[POKE_E_FOREIGN_INT3]	= "a foreign INT3 is already in the range",
		[POKE_E_ENTRY_TEXT]	= "inside trap-entry text",
		[POKE_E_JUMP_INTO]	= "a branch or return targets the inside of the range",
		[POKE_E_OLD_MISMATCH]	= "guest bytes differ from the expected old bytes",
		[POKE_E_OVERLAP]	= "sites overlap",
		[POKE_E_FAULT]		= "guest memory not mapped",
		[POKE_E_SHADOW_BUSY]	= "a context stayed inside the range; batch undone",
		[POKE_E_SYNC]		= "a vCPU did not acknowledge a sync",
		[POKE_E_READBACK]	= "read-back after a write differed",
		[POKE_E_INVAL]		= "invalid argument",
	};

	if ((unsigned int)e < sizeof(text) / sizeof(text[0]) && text[e])
		return text[e];
	return "unknown error";
}

struct patcher *patcher_create(struct vm *vm, const struct patcher_opts *opts)
{
	struct patcher *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->vm = vm;
	if (opts)
		p->opts = *opts;
	/* Zero selects the default, so a zeroed opts struct is sensible. */
	if (!p->opts.shadow_retries)
		p->opts.shadow_retries = POKE_DEFAULT_RETRIES;
	if (!p->opts.shadow_backoff_us)
		p->opts.shadow_backoff_us = POKE_DEFAULT_BACKOFF_US;
	pthread_mutex_init(&p->lock, NULL);
	traptable_init(&p->table);
	atomic_init(&p->no_ghost, p->opts.inject == POKE_INJECT_EARLY_RETIRE);
	if (vmm_set_trap_hook(vm, traptable_hook, p)) {
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	return p;
}

/*
 * Unhook, then wait one grace period: after a good vmm_sync() no vCPU can
 * still be inside traptable_hook() with p as its opaque pointer.  If the
 * sync fails (a vCPU is stuck) we leak rather than free under a hook.
 */
void patcher_destroy(struct patcher *p)
{
	if (!p)
		return;
	vmm_set_trap_hook(p->vm, NULL, NULL);
	if (vmm_sync(p->vm)) {
		vmm_error("patcher: a vCPU did not acknowledge the final sync; "
			  "leaking the trap table rather than freeing it under a hook");
		return;
	}
	traptable_destroy(&p->table);
	shadow_free(p);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

void patcher_stats(struct patcher *p, struct poke_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->patches = atomic_load(&p->patches);
	st->batches = atomic_load(&p->batches);
	st->syncs = atomic_load(&p->syncs);
	st->trap_hits = atomic_load(&p->trap_hits);
	st->ghost_traps = atomic_load(&p->ghost_traps);
	st->foreign_traps = atomic_load(&p->foreign_traps);
	st->shadow_retries = atomic_load(&p->shadow_retries);
	st->shadow_aborts = atomic_load(&p->shadow_aborts);
}

enum poke_err poke_single(struct patcher *p, uint64_t addr, const void *old,
			  const void *new, size_t len, char *msg, size_t msglen)
{
	struct poke_site site;
	struct poke_batch *b;
	enum poke_err err;

	err = poke_site_prepare(p, &site, addr, old, new, len, NULL, msg, msglen);
	if (err)
		return err;
	b = poke_batch_new(p);
	if (!b)
		return POKE_E_INVAL;
	err = poke_batch_add(b, &site);
	if (!err)
		err = poke_batch_finish(b, msg, msglen);
	poke_batch_free(b);
	return err;
}
