// SPDX-License-Identifier: MIT
/*
 * site.c - poke_site_prepare(): may [addr, addr + len) be patched, and
 * what does a trap on it emulate?  The rules are kprobes' placement checks
 * (can_probe, can_optimize) applied to the guest from outside:
 *
 *  - addr lies in a function symbol, and decoding from the function start
 *    reaches addr and addr + len exactly (instruction boundaries);
 *  - bytes under our own live INT3s are recovered first, as kprobes'
 *    recover_probed_instruction(), so a live site does not look foreign;
 *  - no foreign INT3 in the range: someone else's breakpoint;
 *  - not in trap-entry text: patching the code that handles the trap is
 *    the recursion of seed 001 (docs/design.md);
 *  - a range of more than one instruction must not be a branch target or
 *    hold a CALL whose return address falls inside it (insn_jump_into_range);
 *  - the new bytes are one instruction of len, and the emulated one is a
 *    form the hook can emulate.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patcher_internal.h"
#include "symtab.h"

void site_where(struct patcher *p, uint64_t addr, char *buf, size_t len)
{
	const struct symtab *st = vmm_symtab(p->vm);
	const struct sym *s;
	uint64_t off;

	s = st ? symtab_lookup(st, addr, &off) : NULL;
	if (s)
		snprintf(buf, len, "%s+0x%" PRIx64, s->name, off);
	else
		snprintf(buf, len, "0x%" PRIx64, addr);
}

static bool site_in_entry_text(struct patcher *p, uint64_t addr, size_t len)
{
	const struct symtab *st = vmm_symtab(p->vm);
	const struct sym *lo, *hi;

	if (!st)
		return false;
	lo = symtab_find(st, VMPOKE_SYM_ENTRY_START);
	hi = symtab_find(st, VMPOKE_SYM_ENTRY_END);
	if (!lo || !hi)
		return false;
	return addr < hi->addr && addr + len > lo->addr;
}

/* Put the expected bytes of our live sites back, as the guest meant them. */
void site_recover(struct patcher *p, uint8_t *code, uint64_t base,
			 size_t size)
{
	const struct poke_snapshot *s;
	size_t i;

	s = atomic_load_explicit(&p->table.cur, memory_order_acquire);
	for (i = 0; s && i < s->n; i++) {
		const struct poke_live *e = &s->e[i];

		/* an optimized probe's head is a JMP, its entry the region */
		if (e->addr >= base && e->addr + e->len <= base + size &&
		    (code[e->addr - base] == POKE_INT3 || e->role == LIVE_PROBE))
			memcpy(code + (e->addr - base), e->old, e->len);
	}
}

static enum poke_err site_refuse(const char *where, char *msg, size_t msglen,
				 enum poke_err err, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static enum poke_err site_refuse(const char *where, char *msg, size_t msglen,
				 enum poke_err err, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (msg && msglen)
		snprintf(msg, msglen, "%s: %s", where, why);
	return err;
}

static enum poke_err site_check_scan(struct patcher *p, const char *where,
				     const struct decode_scan *sc, size_t len,
				     char *msg, size_t msglen)
{
	char w[96], t[96];

	if (!sc->at_boundary)
		return site_refuse(where, msg, msglen, POKE_E_BOUNDARY,
				   sc->stop_at && !sc->complete ?
				   "not an instruction boundary (decoding stopped earlier)" :
				   "not an instruction boundary");
	if (!sc->end_boundary)
		return site_refuse(where, msg, msglen, POKE_E_BOUNDARY,
				   "+%zu is not an instruction boundary", len);
	if (sc->int3_at) {
		site_where(p, sc->int3_at, w, sizeof(w));
		return site_refuse(where, msg, msglen, POKE_E_FOREIGN_INT3,
				   "foreign INT3 at %s", w);
	}
	if (sc->insns <= 1)
		return POKE_OK;
	if (sc->untrusted_at) {
		site_where(p, sc->untrusted_at, w, sizeof(w));
		return site_refuse(where, msg, msglen, POKE_E_JUMP_INTO,
				   "Capstone and the CPU read the branch at %s differently, "
				   "so the function cannot be decoded past it to rule out "
				   "jumps into a %u-instruction range", w, sc->insns);
	}
	if (!sc->complete) {
		site_where(p, sc->stop_at, w, sizeof(w));
		return site_refuse(where, msg, msglen, POKE_E_JUMP_INTO,
				   "cannot decode the whole function (stopped at %s) "
				   "to rule out jumps into a %u-instruction range",
				   w, sc->insns);
	}
	if (sc->jump_from) {
		site_where(p, sc->jump_from, w, sizeof(w));
		site_where(p, sc->jump_to, t, sizeof(t));
		return site_refuse(where, msg, msglen, POKE_E_JUMP_INTO,
				   "branch at %s targets %s inside the range", w, t);
	}
	if (sc->indirect_at) {
		site_where(p, sc->indirect_at, w, sizeof(w));
		return site_refuse(where, msg, msglen, POKE_E_JUMP_INTO,
				   "indirect jump at %s (a jump table) could target "
				   "the inside of the %u-instruction range", w, sc->insns);
	}
	if (sc->call_at) {
		site_where(p, sc->call_at, w, sizeof(w));
		return site_refuse(where, msg, msglen, POKE_E_JUMP_INTO,
				   "CALL at %s returns inside the range", w);
	}
	return POKE_OK;
}

enum poke_err poke_site_prepare(struct patcher *p, struct poke_site *site,
				uint64_t addr, const void *old, const void *new,
				size_t len, const void *emulate,
				char *msg, size_t msglen)
{
	const struct symtab *st = vmm_symtab(p->vm);
	enum poke_err err = POKE_OK;
	struct decode_scan sc;
	const struct sym *fn;
	uint8_t *code = NULL;
	char where[96], why[160];
	uint64_t off;

	if (msg && msglen)
		msg[0] = '\0';
	memset(site, 0, sizeof(*site));
	site_where(p, addr, where, sizeof(where));
	if (!new || !len || len > POKE_MAX_LEN)
		return site_refuse(where, msg, msglen, POKE_E_INVAL,
				   "length %zu is not 1..%d", len, POKE_MAX_LEN);
	fn = st ? symtab_lookup(st, addr, &off) : NULL;
	if (!fn || (fn->type != 'T' && fn->type != 't') || !fn->size)
		return site_refuse(where, msg, msglen, POKE_E_NOSYM,
				   "not inside a function symbol");
	if (fn->size > POKE_MAX_FUNC_SIZE || addr + len > fn->addr + fn->size)
		return site_refuse(where, msg, msglen, POKE_E_BOUNDARY,
				   "+%zu runs past the end of %s (size 0x%" PRIx64 ")",
				   len, fn->name, fn->size);
	if (site_in_entry_text(p, addr, len))
		return site_refuse(where, msg, msglen, POKE_E_ENTRY_TEXT,
				   "inside trap-entry text (%s..%s)",
				   VMPOKE_SYM_ENTRY_START, VMPOKE_SYM_ENTRY_END);
	code = malloc(fn->size);
	if (!code)
		return site_refuse(where, msg, msglen, POKE_E_NOMEM, "out of memory");
	pthread_mutex_lock(&p->lock);
	if (vmm_gva_read(p->vm, fn->addr, code, fn->size)) {
		pthread_mutex_unlock(&p->lock);
		err = site_refuse(where, msg, msglen, POKE_E_FAULT,
				  "%s is not mapped in guest memory", fn->name);
		goto out;
	}
	site_recover(p, code, fn->addr, fn->size);
	pthread_mutex_unlock(&p->lock);

	if (decode_scan_function(code, fn->size, fn->addr, addr, len, &sc)) {
		err = site_refuse(where, msg, msglen, POKE_E_HOST, "cannot start Capstone");
		goto out;
	}
	err = site_check_scan(p, where, &sc, len, msg, msglen);
	if (err)
		goto out;
	if (old && memcmp(old, code + off, len)) {
		err = site_refuse(where, msg, msglen, POKE_E_OLD_MISMATCH,
				  "guest bytes differ from the expected old bytes");
		goto out;
	}
	/*
	 * With `emulate` (static_call style) the hook runs that instruction
	 * and new need only be whole instructions: the caller promises they
	 * are equivalent, as alternative.c's callers do.
	 */
	if (emulate)
		err = decode_whole(new, len, addr, why, sizeof(why));
	else
		err = decode_one(new, len, addr, true, &site->emu, why, sizeof(why));
	if (err) {
		site_refuse(where, msg, msglen, err, "%s", why);
		goto out;
	}
	if (emulate) {
		err = decode_one(emulate, len, addr, true, &site->emu, why, sizeof(why));
		if (err) {
			site_refuse(where, msg, msglen, err, "emulate: %s", why);
			goto out;
		}
	}
	site->addr = addr;
	site->len = (uint8_t)len;
	memcpy(site->old, code + off, len);
	memcpy(site->new, new, len);
	site->old_insns = sc.insns;
	site->method = patcher_addr_is_cpl0(p, addr) ? p->cpl0_method :
		       POKE_METHOD_BREAKPOINT;
	snprintf(site->where, sizeof(site->where), "%s", where);
out:
	free(code);
	return err;
}
