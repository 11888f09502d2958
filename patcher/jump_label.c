// SPDX-License-Identifier: MIT
/*
 * jump_label.c - static keys from outside the guest: __jump_table parsed
 * from the image (kernel/jump_label.c's view of it), and
 * static_key_enable()/disable() as one text_poke_bp batch per key
 * (arch/x86/kernel/jump_label.c: __jump_label_patch() +
 * arch_jump_label_transform_queue()/apply()).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "jump_label.h"
#include "patcher.h"
#include "symtab.h"
#include "vmm.h"

#define JL_ENTRY_SIZE	16

static const uint8_t jl_nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
static const uint8_t jl_nop2[2] = { 0x66, 0x90 };

/* The JMP form of a site (EB rel8 or E9 rel32 to target). */
static void jl_jmp(const struct jl_site *s, uint8_t *out)
{
	int64_t rel = (int64_t)(s->target - (s->code + s->len));

	if (s->len == 2) {
		out[0] = 0xeb;
		out[1] = (uint8_t)(int8_t)rel;
	} else {
		int32_t r32 = (int32_t)rel;

		out[0] = 0xe9;
		memcpy(out + 1, &r32, 4);
	}
}

static void jl_nop(const struct jl_site *s, uint8_t *out)
{
	memcpy(out, s->len == 2 ? jl_nop2 : jl_nop5, s->len);
}

static int le32(const uint8_t *p)
{
	int32_t v;

	memcpy(&v, p, 4);
	return v;
}

static bool is_func(char t)
{
	return t == 'T' || t == 't' || t == 'W' || t == 'w';
}

static bool is_object(char t)
{
	return t == 'D' || t == 'd' || t == 'B' || t == 'b';
}

/*
 * Length and form of the site in the image, as arch_jump_entry_size()
 * decodes it; *jmp is set for the JMP forms, whose destination must be the
 * entry's target.
 */
static int jl_decode(const uint8_t *b, size_t avail, uint64_t code, uint8_t *len,
		     bool *jmp, uint64_t *dest)
{
	if (avail >= 5 && !memcmp(b, jl_nop5, 5)) {
		*len = 5;
		*jmp = false;
	} else if (avail >= 5 && b[0] == 0xe9) {
		*len = 5;
		*jmp = true;
		*dest = code + 5 + (uint64_t)(int64_t)le32(b + 1);
	} else if (avail >= 2 && !memcmp(b, jl_nop2, 2)) {
		*len = 2;
		*jmp = false;
	} else if (avail >= 2 && b[0] == 0xeb) {
		*len = 2;
		*jmp = true;
		*dest = code + 2 + (uint64_t)(int64_t)(int8_t)b[1];
	} else {
		return -1;
	}
	return 0;
}

static bool in_sec(const struct elf_section *s, uint64_t addr, uint64_t n)
{
	return addr >= s->addr && addr - s->addr <= s->size && n <= s->size - (addr - s->addr);
}

static int jl_bad(char *msg, size_t len, size_t i, const struct symtab *st,
		  uint64_t code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int jl_bad(char *msg, size_t len, size_t i, const struct symtab *st,
		  uint64_t code, const char *fmt, ...)
{
	char where[96], why[192];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	symtab_format(st, code, where, sizeof(where));
	snprintf(msg, len, VMPOKE_SEC_JUMP_TABLE "[%zu] (site %s): %s", i, where, why);
	return -EINVAL;
}

static int jl_site_cmp(const void *a, const void *b)
{
	const struct jl_site *x = a, *y = b;

	return x->code < y->code ? -1 : x->code > y->code;
}

struct jl_raw {
	struct jl_site site;
	uint64_t key;
};

static int jl_raw_cmp(const void *a, const void *b)
{
	const struct jl_raw *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return jl_site_cmp(&x->site, &y->site);
}

/* One entry, fully checked; fills r. */
static int jl_entry(const struct elf_section *jt, const struct elf_section *text,
		    const struct symtab *st, size_t i, struct jl_raw *r, char *msg, size_t len)
{
	const uint8_t *e = jt->data + i * JL_ENTRY_SIZE;
	uint64_t ea = jt->addr + i * JL_ENTRY_SIZE, dest = 0, off;
	const struct sym *fs, *ks;
	int64_t kraw;
	bool jmp;

	memcpy(&kraw, e + 8, 8);
	r->site.entry = i;
	r->site.code = ea + (uint64_t)(int64_t)le32(e);
	r->site.target = ea + 4 + (uint64_t)(int64_t)le32(e + 4);
	r->site.branch = kraw & VMPOKE_JUMP_BRANCH;
	r->site.init = kraw & VMPOKE_JUMP_INIT;
	r->key = ea + 8 + ((uint64_t)kraw & ~3ull);
	if (!in_sec(text, r->site.code, 2))
		return jl_bad(msg, len, i, st, r->site.code, "code 0x%" PRIx64 " is outside "
			      "the text [0x%" PRIx64 ", 0x%" PRIx64 ")", r->site.code,
			      text->addr, text->addr + text->size);
	fs = symtab_lookup(st, r->site.code, &off);
	if (!fs || !is_func(fs->type))
		return jl_bad(msg, len, i, st, r->site.code, "code is not inside a function");
	if (jl_decode(text->data + (r->site.code - text->addr),
		      text->size - (r->site.code - text->addr), r->site.code,
		      &r->site.len, &jmp, &dest))
		return jl_bad(msg, len, i, st, r->site.code, "not a NOP2, NOP5, JMP8 or "
			      "JMP32 (first byte 0x%02x)",
			      text->data[r->site.code - text->addr]);
	if (fs->size && off + r->site.len > fs->size)
		return jl_bad(msg, len, i, st, r->site.code, "the %u-byte site runs past "
			      "the end of %s", r->site.len, fs->name);
	if (!in_sec(text, r->site.target, 1))
		return jl_bad(msg, len, i, st, r->site.code, "target 0x%" PRIx64 " is "
			      "outside the text", r->site.target);
	if (jmp && dest != r->site.target)
		return jl_bad(msg, len, i, st, r->site.code, "the JMP goes to 0x%" PRIx64
			      ", the entry's target is 0x%" PRIx64, dest, r->site.target);
	if (r->site.len == 2) {
		int64_t rel = (int64_t)(r->site.target - (r->site.code + 2));

		if (rel < -128 || rel > 127)
			return jl_bad(msg, len, i, st, r->site.code, "target 0x%" PRIx64
				      " is out of JMP8 range", r->site.target);
	}
	ks = symtab_lookup(st, r->key, &off);
	if (!ks || off || !is_object(ks->type) ||
	    ks->size != sizeof(struct vmpoke_static_key) || (r->key & 7))
		return jl_bad(msg, len, i, st, r->site.code, "key 0x%" PRIx64 " is not an "
			      "8-aligned %zu-byte static key object", r->key,
			      sizeof(struct vmpoke_static_key));
	return 0;
}

/* Group the sorted entries into keys. */
static int jl_group(struct jl_raw *raw, size_t n, const struct symtab *st,
		    struct jl_table *t, char *msg, size_t len)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++)
		t->nr_keys += !i || raw[i].key != raw[i - 1].key;
	t->keys = calloc(t->nr_keys ? t->nr_keys : 1, sizeof(*t->keys));
	t->all = calloc(n ? n : 1, sizeof(*t->all));
	if (!t->keys || !t->all) {
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	for (i = 0; i < n; i++) {
		struct jl_key *key;

		if (i && raw[i].key == raw[i - 1].key && raw[i].site.code == raw[i - 1].site.code)
			return jl_bad(msg, len, raw[i].site.entry, st, raw[i].site.code,
				      "the same site as entry %zu", raw[i - 1].site.entry);
		if (!i || raw[i].key != raw[i - 1].key) {
			const char *name = symtab_lookup(st, raw[i].key, NULL)->name;

			/* Keys are found by name: a cut name would find none, or another. */
			if (strlen(name) >= sizeof(key->name))
				return jl_bad(msg, len, raw[i].site.entry, st, raw[i].site.code,
					      "key name longer than %zu bytes",
					      sizeof(key->name) - 1);
			key = &t->keys[k++];
			key->addr = raw[i].key;
			key->sites = &t->all[i];
			snprintf(key->name, sizeof(key->name), "%s", name);
		}
		t->all[i] = raw[i].site;
		t->keys[k - 1].nr_sites++;
	}
	return 0;
}

static int jl_key_name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct jl_key *)a)->name, ((const struct jl_key *)b)->name);
}

int jl_table_parse(const struct elf_section *jt, const struct elf_section *text,
		   const struct symtab *st, struct jl_table **out, char *msg, size_t len)
{
	struct jl_table *t;
	struct jl_raw *raw = NULL;
	size_t i, n;
	int ret;

	*out = NULL;
	if (jt->size % JL_ENTRY_SIZE || (jt->addr & 7)) {
		snprintf(msg, len, VMPOKE_SEC_JUMP_TABLE ": %" PRIu64 " bytes at 0x%" PRIx64
			 ": not 8-aligned %d-byte entries", jt->size, jt->addr, JL_ENTRY_SIZE);
		return -EINVAL;
	}
	n = jt->size / JL_ENTRY_SIZE;
	t = calloc(1, sizeof(*t));
	raw = calloc(n ? n : 1, sizeof(*raw));
	if (!t || !raw) {
		free(t);
		free(raw);
		snprintf(msg, len, "out of memory");
		return -ENOMEM;
	}
	t->nr_entries = n;
	for (i = 0; i < n; i++) {
		ret = jl_entry(jt, text, st, i, &raw[i], msg, len);
		if (ret)
			goto fail;
	}
	/* sites overlapping across keys: two keys would rewrite one byte */
	qsort(raw, n, sizeof(*raw), jl_raw_cmp);
	ret = jl_group(raw, n, st, t, msg, len);
	if (ret)
		goto fail;
	for (i = 0; i < t->nr_keys; i++) {
		const struct jl_key *k = &t->keys[i];

		for (size_t j = 1; j < k->nr_sites; j++)
			if (k->sites[j].code < k->sites[j - 1].code + k->sites[j - 1].len) {
				ret = jl_bad(msg, len, k->sites[j].entry, st, k->sites[j].code,
					     "overlaps the site of entry %zu",
					     k->sites[j - 1].entry);
				goto fail;
			}
	}
	qsort(t->keys, t->nr_keys, sizeof(*t->keys), jl_key_name_cmp);
	for (i = 1; i < t->nr_keys; i++)
		if (!strcmp(t->keys[i].name, t->keys[i - 1].name)) {
			snprintf(msg, len, VMPOKE_SEC_JUMP_TABLE ": keys at 0x%" PRIx64 " and 0x%"
				 PRIx64 " have one name, %s", t->keys[i - 1].addr,
				 t->keys[i].addr, t->keys[i].name);
			ret = -EINVAL;
			goto fail;
		}
	free(raw);
	*out = t;
	return 0;
fail:
	free(raw);
	jl_table_free(t);
	return ret;
}

int jl_table_load(const char *image, const struct symtab *st, struct jl_table **out,
		  char *msg, size_t len)
{
	struct elf_section jt, text;
	int ret;

	ret = elf_section_read(image, VMPOKE_SEC_JUMP_TABLE, &jt, msg, len);
	if (ret == -ENOENT) {
		*out = calloc(1, sizeof(**out));
		return *out ? 0 : -ENOMEM;
	}
	if (ret)
		return ret;
	ret = elf_section_read(image, ".text", &text, msg, len);
	if (!ret)
		ret = jl_table_parse(&jt, &text, st, out, msg, len);
	free(jt.data);
	free(text.data);
	return ret;
}

void jl_table_free(struct jl_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nr_keys; i++) {
		free(t->keys[i].prep[0]);
		free(t->keys[i].prep[1]);
	}
	free(t->keys);
	free(t->all);
	free(t);
}

const struct jl_key *jl_key_find(const struct jl_table *t, const char *name)
{
	struct jl_key k;

	if (!t || !name || strlen(name) >= sizeof(k.name))
		return NULL;
	snprintf(k.name, sizeof(k.name), "%s", name);
	return bsearch(&k, t->keys, t->nr_keys, sizeof(*t->keys), jl_key_name_cmp);
}

int jl_key_read(struct vm *vm, const struct jl_key *k, struct vmpoke_static_key *out)
{
	return vmm_gva_read(vm, k->addr, out, sizeof(*out));
}

struct jl_commit {
	struct vm *vm;
	uint64_t addr;
	int32_t enabled;
	int err;
};

static void jl_commit(void *opaque)
{
	struct jl_commit *c = opaque;

	c->err = vmm_gva_write(c->vm, c->addr + offsetof(struct vmpoke_static_key, enabled),
			       &c->enabled, sizeof(c->enabled));
}

static int jl_seq_write(struct vm *vm, const struct jl_key *k, uint32_t seq)
{
	return vmm_gva_write(vm, k->addr + offsetof(struct vmpoke_static_key, seq),
			     &seq, sizeof(seq));
}

static void jl_hex(const uint8_t *b, size_t n, char *out, size_t len)
{
	size_t o = 0;

	out[0] = 0;
	for (size_t i = 0; i < n && o + 4 < len; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%02x", i ? " " : "", b[i]);
}

/* __jump_label_patch()'s check, for every site before anything is written. */
static int jl_check_sites(struct patcher *p, struct vm *vm, const struct jl_key *k,
			  bool enable, struct poke_site *ps, bool prepared, char *msg,
			  size_t len)
{
	for (size_t i = 0; i < k->nr_sites; i++) {
		const struct jl_site *s = &k->sites[i];
		bool jmp_new = enable ^ s->branch;
		uint8_t cur[5], old[5], new[5];
		char where[96], hc[24], ho[24];
		enum poke_err e;

		if (jmp_new) {
			jl_nop(s, old);
			jl_jmp(s, new);
		} else {
			jl_jmp(s, old);
			jl_nop(s, new);
		}
		symtab_format(vmm_symtab(vm), s->code, where, sizeof(where));
		if (vmm_gva_read(vm, s->code, cur, s->len)) {
			snprintf(msg, len, "%s (site %zu of %s): not mapped", where, i, k->name);
			return -EFAULT;
		}
		if (memcmp(cur, old, s->len)) {
			jl_hex(cur, s->len, hc, sizeof(hc));
			jl_hex(old, s->len, ho, sizeof(ho));
			snprintf(msg, len, "unexpected op at %s (site %zu of %s): found %s, "
				 "expected %s (%s); nothing written", where, i, k->name, hc,
				 jmp_new ? (s->len == 2 ? "NOP2" : "NOP5") :
				 (s->len == 2 ? "JMP8" : "JMP32"), ho);
			return -EILSEQ;
		}
		if (prepared)
			continue;
		e = poke_site_prepare(p, &ps[i], s->code, old, new, s->len, NULL, msg, len);
		if (e != POKE_OK)
			return -EINVAL;
	}
	return 0;
}

int jl_key_set(struct patcher *p, struct vm *vm, const struct jl_key *k, bool enable,
	       struct jl_flip_out *out, char *msg, size_t len)
{
	struct jl_key *mk = (struct jl_key *)k;	/* the prepared-site cache */
	bool prepared;
	struct jl_commit c = { .vm = vm, .addr = k->addr, .enabled = enable };
	struct vmpoke_static_key key;
	struct poke_stats st0, st1;
	struct poke_site *ps;
	struct poke_batch *b;
	uint64_t t0 = clock_now_ns();
	enum poke_err e;
	uint32_t seq;
	int ret;

	memset(out, 0, sizeof(*out));
	msg[0] = 0;
	if (jl_key_read(vm, k, &key)) {
		snprintf(msg, len, "%s: key at 0x%" PRIx64 " not mapped", k->name, k->addr);
		return -EFAULT;
	}
	/* static_key_enable() on an enabled key does nothing */
	if ((key.enabled > 0) == enable)
		return 0;
	if (mk->prep_for != p) {
		free(mk->prep[0]);
		free(mk->prep[1]);
		mk->prep[0] = mk->prep[1] = NULL;
		mk->prep_for = p;
	}
	prepared = mk->prep[enable];
	ps = prepared ? mk->prep[enable] : calloc(k->nr_sites ? k->nr_sites : 1, sizeof(*ps));
	b = poke_batch_new(p);
	if (!ps || !b) {
		snprintf(msg, len, "out of memory");
		ret = -ENOMEM;
		goto out;
	}
	ret = jl_check_sites(p, vm, k, enable, ps, prepared, msg, len);
	if (ret)
		goto out;
	if (!prepared) {
		mk->prep[enable] = ps;
		prepared = true;
	}
	for (size_t i = 0; i < k->nr_sites; i++)
		if (poke_batch_add(b, &ps[i]) != POKE_OK) {
			snprintf(msg, len, "%s: cannot queue site %zu", k->name, i);
			ret = -ENOMEM;
			goto out;
		}
	poke_batch_on_commit(b, jl_commit, &c);
	/* seqlock: odd for the whole batch, so racing guest checks accept both */
	seq = (key.seq | 1) + (key.seq & 1 ? 2 : 0);
	if (jl_seq_write(vm, k, seq)) {
		snprintf(msg, len, "%s: cannot write its seq", k->name);
		ret = -EFAULT;
		goto out;
	}
	patcher_stats(p, &st0);
	e = poke_batch_finish(b, msg, len);
	patcher_stats(p, &st1);
	if (e != POKE_OK || c.err) {
		/* the text went back: so must the key, before seq is even again */
		c.enabled = key.enabled;
		jl_commit(&c);
		if (!msg[0])
			snprintf(msg, len, "%s: %s", k->name, c.err ? "cannot write enabled"
				 : poke_strerror(e));
		ret = -EIO;
	} else {
		out->changed = true;
		out->sites = k->nr_sites;
	}
	out->syncs = st1.syncs - st0.syncs;
	jl_seq_write(vm, k, seq + 1);
out:
	out->us = (double)(clock_now_ns() - t0) / CLOCK_NS_PER_US;
	poke_batch_free(b);
	if (!prepared)
		free(ps);
	return ret;
}
