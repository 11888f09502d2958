// SPDX-License-Identifier: MIT
/*
 * patcher.c - lifetime, statistics and messages of the patching engine.
 */
#include <stdlib.h>
#include <string.h>

#include "patcher_internal.h"
#include "symtab.h"

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
		[POKE_E_NOMEM]		= "out of memory",
		[POKE_E_HOST]		= "the disassembler (Capstone) could not start",
		[POKE_E_GUEST_TABLE]	= "a guest table failed validation",
	};

	if ((unsigned int)e < sizeof(text) / sizeof(text[0]) && text[e])
		return text[e];
	return "unknown error";
}

const char *poke_method_name(enum poke_method m)
{
	return m == POKE_METHOD_STOP_THE_WORLD ? "stop-the-world" : "breakpoint";
}

int poke_cpl0_parse(const char *name)
{
	if (!name || !*name || !strcmp(name, "auto"))
		return POKE_CPL0_AUTO;
	if (!strcmp(name, "breakpoint"))
		return POKE_CPL0_BREAKPOINT;
	if (!strcmp(name, "stop-the-world"))
		return POKE_CPL0_STOP_THE_WORLD;
	return -1;
}

enum poke_method poke_cpl0_decide(enum poke_cpl0_patch choice, bool cpl0_int3_trappable)
{
	switch (choice) {
	case POKE_CPL0_BREAKPOINT:
		return POKE_METHOD_BREAKPOINT;
	case POKE_CPL0_STOP_THE_WORLD:
		return POKE_METHOD_STOP_THE_WORLD;
	case POKE_CPL0_AUTO:
	default:
		return cpl0_int3_trappable ? POKE_METHOD_BREAKPOINT :
		       POKE_METHOD_STOP_THE_WORLD;
	}
}

/*
 * The method for CPL0 sites: forced by opts or VMPOKE_CPL0_PATCH, else
 * probed (once per process) on the trap path this VM uses.  -1 on a bad
 * variable.
 */
static int patcher_cpl0_setup(struct patcher *p)
{
	const struct symtab *st = vmm_symtab(p->vm);
	const struct sym *us = st ? symtab_find(st, VMPOKE_SYM_USER_TEXT_START) : NULL;
	const struct sym *ue = st ? symtab_find(st, VMPOKE_SYM_USER_TEXT_END) : NULL;
	enum poke_cpl0_patch choice = p->opts.cpl0_patch;
	const char *env = getenv("VMPOKE_CPL0_PATCH");

	if (us && ue && us->addr < ue->addr) {
		p->user_start = us->addr;
		p->user_end = ue->addr;
	}
	if (choice == POKE_CPL0_AUTO) {
		int c = poke_cpl0_parse(env);

		if (c < 0) {
			vmm_error("VMPOKE_CPL0_PATCH=%s: expected auto, breakpoint or "
				  "stop-the-world", env);
			return -1;
		}
		choice = (enum poke_cpl0_patch)c;
	}
	p->cpl0_method = poke_cpl0_decide(choice, choice == POKE_CPL0_AUTO &&
					  vmm_cpl0_int3_trappable(vmm_trap_path(p->vm)));
	return 0;
}

bool patcher_addr_is_cpl0(struct patcher *p, uint64_t addr)
{
	return !(addr >= p->user_start && addr < p->user_end);
}

bool patcher_cpl0_trappable(struct patcher *p)
{
	return p->cpl0_method == POKE_METHOD_BREAKPOINT;
}

struct patcher *patcher_create(struct vm *vm, const struct patcher_opts *opts)
{
	struct patcher *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->vm = vm;
	if (opts)
		p->opts = *opts;
	if (patcher_cpl0_setup(p)) {
		free(p);
		return NULL;
	}
	/* Zero selects the default, so a zeroed opts struct is sensible. */
	if (!p->opts.shadow_retries)
		p->opts.shadow_retries = POKE_DEFAULT_RETRIES;
	if (!p->opts.shadow_backoff_us)
		p->opts.shadow_backoff_us = POKE_DEFAULT_BACKOFF_US;
	pthread_mutex_init(&p->lock, NULL);
	traptable_init(&p->table);
	atomic_init(&p->no_ghost, p->opts.inject == POKE_INJECT_NO_GHOST);
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
	probe_destroy_all(p);
	vmm_set_trap_hook(p->vm, NULL, NULL);
	if (vmm_sync(p->vm)) {
		vmm_error("patcher: a vCPU did not acknowledge the final sync; "
			  "leaking the trap table rather than freeing it under a hook");
		return;
	}
	traptable_destroy(&p->table);
	probe_free_all(p);
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
	st->core_syncs = atomic_load(&p->core_syncs);
	st->trap_hits = atomic_load(&p->trap_hits);
	st->ghost_traps = atomic_load(&p->ghost_traps);
	st->foreign_traps = atomic_load(&p->foreign_traps);
	st->shadow_retries = atomic_load(&p->shadow_retries);
	st->shadow_aborts = atomic_load(&p->shadow_aborts);
	st->emu_faults = atomic_load(&p->emu_faults);
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
		return POKE_E_NOMEM;
	err = poke_batch_add(b, &site);
	if (!err)
		err = poke_batch_finish(b, msg, msglen);
	poke_batch_free(b);
	return err;
}
