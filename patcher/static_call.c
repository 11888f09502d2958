// SPDX-License-Identifier: MIT
/*
 * static_call.c - static calls from outside the guest: the trampolines,
 * keys, sites and targets read from the image, and static_call_update()
 * as one text_poke_bp batch (arch/x86/kernel/static_call.c:
 * __static_call_validate() and __static_call_transform()).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "patcher.h"
#include "static_call.h"
#include "symtab.h"
#include "vmm.h"

static const uint8_t sc_sig[3] = { 0x0f, 0xb9, 0xcc };
static const uint8_t sc_nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
static const uint8_t sc_ret[5] = { 0xc3, 0xcc, 0xcc, 0xcc, 0xcc };
static const uint8_t sc_null_tramp[5] = { 0xc3, 0xcc, 0x90, 0x90, 0x90 };

static bool sc_in(const struct elf_section *s, uint64_t addr, uint64_t n)
{
	return addr >= s->addr && addr - s->addr <= s->size && n <= s->size - (addr - s->addr);
}

static int32_t sc_le32(const uint8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return v;
}

static bool sc_is_func(const struct sym *s)
{
	return s && (s->type == 'T' || s->type == 't');
}

static int sc_bad(char *msg, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int sc_bad(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* The forms a site (or, tramp, the trampoline's first 5 bytes) may hold. */
static bool sc_form_ok(const uint8_t *b, bool tail, bool tramp)
{
	if (tramp)
		return b[0] == 0xe9 || !memcmp(b, sc_ret, 5) || !memcmp(b, sc_null_tramp, 5);
	if (tail)
		return b[0] == 0xe9 || !memcmp(b, sc_ret, 5);
	return b[0] == 0xe8 || !memcmp(b, sc_nop5, 5);
}

static void sc_encode(uint8_t *out, uint8_t op, uint64_t from, uint64_t to)
{
	int32_t rel = (int32_t)(int64_t)(to - (from + 5));

	out[0] = op;
	memcpy(out + 1, &rel, 4);
}

static int sc_name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct sc_call *)a)->name, ((const struct sc_call *)b)->name);
}

static struct sc_call *sc_by_key(struct sc_table *t, uint64_t key)
{
	for (size_t i = 0; i < t->nr_calls; i++)
		if (t->calls[i].key == key)
			return &t->calls[i];
	return NULL;
}

static int sc_calls(const struct elf_section *text, const struct symtab *st,
		    struct sc_table *t, char *msg, size_t len)
{
	size_t n = symtab_count(st), plen = strlen(VMPOKE_SC_TRAMP_PREFIX);

	for (size_t i = 0; i < n; i++) {
		const struct sym *s = symtab_at(st, i), *k;
		char kname[96];
		struct sc_call *c;
		const uint8_t *b;

		if (strncmp(s->name, VMPOKE_SC_TRAMP_PREFIX, plen) || !s->name[plen])
			continue;
		if (!sc_is_func(s) || !sc_in(text, s->addr, 8) || (s->addr & 3))
			return sc_bad(msg, len, "%s: not a 4-aligned function of 8 bytes in "
				      "the text", s->name);
		b = text->data + (s->addr - text->addr);
		if (memcmp(b + 5, sc_sig, 3))
			return sc_bad(msg, len, "%s: no signature 0f b9 cc at +5 (found %02x "
				      "%02x %02x)", s->name, b[5], b[6], b[7]);
		if (!sc_form_ok(b, true, true))
			return sc_bad(msg, len, "%s: neither JMP rel32 nor the NULL form "
				      "(first byte 0x%02x)", s->name, b[0]);
		snprintf(kname, sizeof(kname), VMPOKE_SC_KEY_PREFIX "%s", s->name + plen);
		k = symtab_find(st, kname);
		if (!k || (k->type != 'D' && k->type != 'd' && k->type != 'B' && k->type != 'b') ||
		    k->size != sizeof(struct vmpoke_static_call_key) || (k->addr & 7))
			return sc_bad(msg, len, "%s: no key %s (an 8-aligned %zu-byte object)",
				      s->name, kname, sizeof(struct vmpoke_static_call_key));
		if (strlen(s->name + plen) >= sizeof(c->name))
			return sc_bad(msg, len, "%s: name too long", s->name);
		/* an update of one would retarget the other (found by fuzz_elf) */
		for (size_t j = 0; j < t->nr_calls; j++)
			if (t->calls[j].key == k->addr || t->calls[j].tramp == s->addr)
				return sc_bad(msg, len, "%s: shares its %s with __SCT__%s",
					      s->name, t->calls[j].key == k->addr ?
					      "key" : "trampoline", t->calls[j].name);
		c = realloc(t->calls, (t->nr_calls + 1) * sizeof(*c));
		if (!c)
			return sc_bad(msg, len, "out of memory");
		t->calls = c;
		c = &t->calls[t->nr_calls++];
		memset(c, 0, sizeof(*c));
		snprintf(c->name, sizeof(c->name), "%s", s->name + plen);
		c->tramp = s->addr;
		c->key = k->addr;
	}
	return 0;
}

static int sc_sites(const struct elf_section *sec, const struct elf_section *text,
		    const struct symtab *st, struct sc_table *t, char *msg, size_t len)
{
	size_t n;

	if (sec->size % sizeof(struct vmpoke_static_call_site) || (sec->addr & 3))
		return sc_bad(msg, len, VMPOKE_SEC_SC_SITES ": %" PRIu64 " bytes: not "
			      "4-aligned 8-byte entries", sec->size);
	n = sec->size / sizeof(struct vmpoke_static_call_site);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = sec->data + i * 8;
		uint64_t ea = sec->addr + i * 8, off;
		int32_t kraw = sc_le32(e + 4);
		uint64_t addr = ea + (uint64_t)(int64_t)sc_le32(e);
		uint64_t key = ea + 4 + (uint64_t)(int64_t)(kraw & ~3);
		bool tail = kraw & VMPOKE_SC_TAIL;
		const struct sym *fs = symtab_lookup(st, addr, &off);
		struct sc_call *c = sc_by_key(t, key);
		struct sc_site *ns;
		char where[96];

		symtab_format(st, addr, where, sizeof(where));
		if (!c)
			return sc_bad(msg, len, VMPOKE_SEC_SC_SITES "[%zu] (site %s): key 0x%"
				      PRIx64 " is no " VMPOKE_SC_KEY_PREFIX " key of a trampoline",
				      i, where, key);
		if (!sc_in(text, addr, 5) || !sc_is_func(fs) || (fs->size && off + 5 > fs->size))
			return sc_bad(msg, len, VMPOKE_SEC_SC_SITES "[%zu] (site %s): not 5 "
				      "bytes inside a function", i, where);
		if (!sc_form_ok(text->data + (addr - text->addr), tail, false))
			return sc_bad(msg, len, VMPOKE_SEC_SC_SITES "[%zu] (site %s): not a %s "
				      "(first byte 0x%02x)", i, where,
				      tail ? "JMP rel32 or RET" : "CALL rel32 or NOP5",
				      text->data[addr - text->addr]);
		ns = realloc(c->sites, (c->nr_sites + 1) * sizeof(*ns));
		if (!ns)
			return sc_bad(msg, len, "out of memory");
		c->sites = ns;
		c->sites[c->nr_sites++] = (struct sc_site){ addr, tail, i };
	}
	return 0;
}

static int sc_targets(const struct elf_section *sec, const struct symtab *st,
		      struct sc_table *t, char *msg, size_t len)
{
	size_t n;

	if (sec->size % sizeof(struct vmpoke_static_call_target))
		return sc_bad(msg, len, VMPOKE_SEC_SC_TARGETS ": %" PRIu64 " bytes: not "
			      "8-byte entries", sec->size);
	n = sec->size / sizeof(struct vmpoke_static_call_target);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *e = sec->data + i * 8;
		uint64_t ea = sec->addr + i * 8, off = 1;
		uint64_t key = ea + (uint64_t)(int64_t)sc_le32(e);
		uint64_t fn = ea + 4 + (uint64_t)(int64_t)sc_le32(e + 4);
		const struct sym *fs = symtab_lookup(st, fn, &off);
		struct sc_call *c = sc_by_key(t, key);

		if (!c)
			return sc_bad(msg, len, VMPOKE_SEC_SC_TARGETS "[%zu]: key 0x%" PRIx64
				      " is no " VMPOKE_SC_KEY_PREFIX " key", i, key);
		if (!sc_is_func(fs) || off)
			return sc_bad(msg, len, VMPOKE_SEC_SC_TARGETS "[%zu]: 0x%" PRIx64
				      " is not the start of a function", i, fn);
		if (c->nr_targets == SC_MAX_TARGETS)
			return sc_bad(msg, len, VMPOKE_SEC_SC_TARGETS "[%zu]: %s has more than "
				      "%d targets", i, c->name, SC_MAX_TARGETS);
		c->targets[c->nr_targets++] = fn;
	}
	return 0;
}

/* The code one update rewrites: a trampoline's 8 bytes or a site's 5. */
struct sc_range {
	uint64_t addr, len;
	const char *call;
	size_t entry;			/* in .static_call_sites; SIZE_MAX: trampoline */
};

static int sc_range_cmp(const void *a, const void *b)
{
	const struct sc_range *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void sc_range_name(const struct sc_range *r, char *buf, size_t len)
{
	if (r->entry == SIZE_MAX)
		snprintf(buf, len, "the trampoline of %s", r->call);
	else
		snprintf(buf, len, VMPOKE_SEC_SC_SITES "[%zu] (%s)", r->entry, r->call);
}

/*
 * No byte in two ranges: a site listed twice, under two keys, or inside a
 * trampoline would have one update undo another's, or refuse them all as
 * an overlapping batch (found by fuzz_elf).
 */
static int sc_overlaps(const struct sc_table *t, const struct symtab *st, char *msg,
		       size_t len)
{
	struct sc_range *r;
	size_t n = 0, k = 0;
	int ret = 0;

	for (size_t i = 0; i < t->nr_calls; i++)
		n += 1 + t->calls[i].nr_sites;
	r = calloc(n ? n : 1, sizeof(*r));
	if (!r)
		return sc_bad(msg, len, "out of memory");
	for (size_t i = 0; i < t->nr_calls; i++) {
		const struct sc_call *c = &t->calls[i];

		r[k++] = (struct sc_range){ c->tramp, 8, c->name, SIZE_MAX };
		for (size_t j = 0; j < c->nr_sites; j++)
			r[k++] = (struct sc_range){ c->sites[j].addr, 5, c->name,
						    c->sites[j].entry };
	}
	qsort(r, n, sizeof(*r), sc_range_cmp);
	for (size_t i = 1; i < n && !ret; i++)
		if (r[i].addr < r[i - 1].addr + r[i - 1].len) {
			char a[96], b[96], where[96];

			sc_range_name(&r[i - 1], a, sizeof(a));
			sc_range_name(&r[i], b, sizeof(b));
			symtab_format(st, r[i].addr, where, sizeof(where));
			ret = sc_bad(msg, len, "%s at %s overlaps %s", b, where, a);
		}
	free(r);
	return ret;
}

int sc_table_parse(const struct elf_section *sites, const struct elf_section *targets,
		   const struct elf_section *text, const struct symtab *st,
		   struct sc_table **out, char *msg, size_t len)
{
	struct sc_table *t = calloc(1, sizeof(*t));
	int ret;

	*out = NULL;
	if (!t)
		return sc_bad(msg, len, "out of memory");
	ret = sc_calls(text, st, t, msg, len);
	if (!ret && sites)
		ret = sc_sites(sites, text, st, t, msg, len);
	if (!ret)
		ret = sc_overlaps(t, st, msg, len);
	if (!ret && targets)
		ret = sc_targets(targets, st, t, msg, len);
	if (ret) {
		sc_table_free(t);
		return ret;
	}
	if (t->nr_calls)
		qsort(t->calls, t->nr_calls, sizeof(*t->calls), sc_name_cmp);
	*out = t;
	return 0;
}

int sc_table_load(const char *image, const struct symtab *st, struct sc_table **out,
		  char *msg, size_t len)
{
	struct elf_section sites, targets, text;
	int rs, rt, ret;

	rs = elf_section_read(image, VMPOKE_SEC_SC_SITES, &sites, msg, len);
	if (rs && rs != -ENOENT)
		return rs;
	rt = elf_section_read(image, VMPOKE_SEC_SC_TARGETS, &targets, msg, len);
	if (rt && rt != -ENOENT) {
		free(sites.data);
		return rt;
	}
	ret = elf_section_read(image, ".text", &text, msg, len);
	if (!ret)
		ret = sc_table_parse(rs ? NULL : &sites, rt ? NULL : &targets, &text, st, out,
				     msg, len);
	free(sites.data);
	free(targets.data);
	free(text.data);
	return ret;
}

void sc_table_free(struct sc_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nr_calls; i++)
		free(t->calls[i].sites);
	free(t->calls);
	free(t);
}

const struct sc_call *sc_call_find(const struct sc_table *t, const char *name)
{
	struct sc_call k;

	if (!t || !name || strlen(name) >= sizeof(k.name))
		return NULL;
	snprintf(k.name, sizeof(k.name), "%s", name);
	return t->nr_calls ? bsearch(&k, t->calls, t->nr_calls, sizeof(k), sc_name_cmp) : NULL;
}

int sc_key_read(struct vm *vm, const struct sc_call *c, struct vmpoke_static_call_key *out)
{
	return vmm_gva_read(vm, c->key, out, sizeof(*out));
}

struct sc_commit {
	struct vm *vm;
	uint64_t addr, func;
	int err;
};

static void sc_commit(void *opaque)
{
	struct sc_commit *c = opaque;

	c->err = vmm_gva_write(c->vm, c->addr, &c->func, sizeof(c->func));
}

static int sc_seq_write(struct vm *vm, const struct sc_call *c, uint32_t seq)
{
	return vmm_gva_write(vm, c->key + offsetof(struct vmpoke_static_call_key, seq), &seq,
			     sizeof(seq));
}

/* One site (or the trampoline): checked, and queued unless already there. */
static int sc_queue(struct patcher *p, struct vm *vm, struct poke_batch *b, uint64_t addr,
		    bool tail, bool tramp, const uint8_t *new, const char *call,
		    struct sc_update_out *out, char *msg, size_t len)
{
	struct poke_site ps;
	uint8_t cur[8];
	char where[96];

	symtab_format(vmm_symtab(vm), addr, where, sizeof(where));
	if (vmm_gva_read(vm, addr, cur, tramp ? 8 : 5)) {
		snprintf(msg, len, "%s: not mapped", where);
		return -EFAULT;
	}
	if (tramp && memcmp(cur + 5, sc_sig, 3)) {
		snprintf(msg, len, "trampoline %s of %s: no signature 0f b9 cc at +5 "
			 "(found %02x %02x %02x); nothing written", where, call, cur[5],
			 cur[6], cur[7]);
		return -EILSEQ;
	}
	if (!sc_form_ok(cur, tail, tramp)) {
		snprintf(msg, len, "unexpected op at %s (%s of %s): %02x %02x %02x %02x %02x "
			 "is no %s; nothing written", where, tramp ? "trampoline" : "site",
			 call, cur[0], cur[1], cur[2], cur[3], cur[4],
			 tramp || tail ? "JMP rel32 or RET" : "CALL rel32 or NOP5");
		return -EILSEQ;
	}
	if (!memcmp(cur, new, 5))
		return 0;	/* idempotent, as __static_call_transform() */
	if (poke_site_prepare(p, &ps, addr, cur, new, 5, NULL, msg, len) != POKE_OK)
		return -EINVAL;
	if (poke_batch_add(b, &ps) != POKE_OK) {
		snprintf(msg, len, "%s: cannot queue", where);
		return -ENOMEM;
	}
	out->sites++;
	out->stw += ps.method == POKE_METHOD_STOP_THE_WORLD;
	return 0;
}

int sc_update(struct patcher *p, struct vm *vm, const struct sc_call *c, uint64_t target,
	      struct sc_update_out *out, char *msg, size_t len)
{
	struct sc_commit cm = { .vm = vm, .addr = c->key, .func = target };
	struct vmpoke_static_call_key key;
	struct poke_stats st0, st1;
	uint64_t t0 = clock_now_ns();
	struct poke_batch *b;
	uint8_t new[5];
	bool allowed = !target;
	enum poke_err e;
	uint32_t seq;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	msg[0] = 0;
	for (size_t i = 0; i < c->nr_targets; i++)
		allowed |= c->targets[i] == target;
	if (!allowed) {
		char where[96];

		symtab_format(vmm_symtab(vm), target, where, sizeof(where));
		snprintf(msg, len, "%s is not a target of %s (its " VMPOKE_SEC_SC_TARGETS
			 " lists %zu)", where, c->name, c->nr_targets);
		return -EINVAL;
	}
	if (sc_key_read(vm, c, &key)) {
		snprintf(msg, len, "%s: key not mapped", c->name);
		return -EFAULT;
	}
	b = poke_batch_new(p);
	if (!b) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	if (target)
		sc_encode(new, 0xe9, c->tramp, target);
	else
		memcpy(new, sc_ret, 5);
	ret = sc_queue(p, vm, b, c->tramp, true, true, new, c->name, out, msg, len);
	for (size_t i = 0; !ret && i < c->nr_sites; i++) {
		const struct sc_site *s = &c->sites[i];

		if (target)
			sc_encode(new, s->tail ? 0xe9 : 0xe8, s->addr, target);
		else
			memcpy(new, s->tail ? sc_ret : sc_nop5, 5);
		ret = sc_queue(p, vm, b, s->addr, s->tail, false, new, c->name, out, msg, len);
	}
	if (ret)
		goto out;
	poke_batch_on_commit(b, sc_commit, &cm);
	seq = (key.seq | 1) + (key.seq & 1 ? 2 : 0);
	if (sc_seq_write(vm, c, seq)) {
		snprintf(msg, len, "%s: cannot write its seq", c->name);
		ret = -EFAULT;
		goto out;
	}
	patcher_stats(p, &st0);
	e = out->sites ? poke_batch_finish(b, msg, len) : POKE_OK;
	patcher_stats(p, &st1);
	if (!out->sites)
		sc_commit(&cm);
	if (e != POKE_OK || cm.err) {
		cm.func = key.func;
		sc_commit(&cm);
		if (!msg[0])
			snprintf(msg, len, "%s: %s", c->name, cm.err ? "cannot write func" :
				 poke_strerror(e));
		ret = -EIO;
	}
	out->syncs = st1.syncs - st0.syncs;
	sc_seq_write(vm, c, seq + 1);
out:
	out->us = (double)(clock_now_ns() - t0) / CLOCK_NS_PER_US;
	poke_batch_free(b);
	return ret;
}
