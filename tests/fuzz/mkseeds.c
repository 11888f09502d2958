// SPDX-License-Identifier: MIT
/*
 * mkseeds.c - write the seeds of fuzz_guest_tables and fuzz_decode from
 * the real guest (make fuzz-seeds; needs /dev/kvm).  It boots the guest,
 * waits until every vCPU is READY, pauses it, and writes
 *   OUT/fuzz_guest_tables/<table>: the page-table pages plus the first
 *       bytes of one exported table (all-tables: all three), with the
 *       tables' real symbols;
 *   OUT/fuzz_decode/site-<n>: each site of vmpoke_sites with its function's
 *       real bytes and the alternative instruction torture writes there;
 *   OUT/fuzz_decode/probe-<fn>: each lib_* function, probed at its start.
 * The input formats are described in fuzz_guest_tables.c and fuzz_decode.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patcher.h"
#include "symtab.h"
#include "vmm.h"
#include "vmpoke_abi.h"

#define SEED_MAX	(64u << 10)
#define TABLE_BYTES	8192u		/* fuzz_guest_tables' GT_COPY_MAX */

struct seed {
	uint8_t b[SEED_MAX];
	size_t n;
};

static void put(struct seed *s, uint64_t v, size_t bytes)
{
	for (size_t i = 0; i < bytes && s->n < SEED_MAX; i++)
		s->b[s->n++] = (uint8_t)(v >> (8 * i));
}

static void put_bytes(struct seed *s, const void *p, size_t len)
{
	if (len > SEED_MAX - s->n)
		len = SEED_MAX - s->n;
	memcpy(s->b + s->n, p, len);
	s->n += len;
}

static int save(const char *dir, const char *target, const char *name,
		const struct seed *s)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%s", dir, target, name);
	f = fopen(path, "wb");
	if (!f || fwrite(s->b, 1, s->n, f) != s->n) {
		fprintf(stderr, "mkseeds: cannot write %s\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	return fclose(f);
}

/* The page-table pages, as chunks at their guest-physical addresses. */
static void put_page_tables(struct seed *s, struct vm *vm)
{
	for (uint64_t at = VMPOKE_PML4_GPA; at <= VMPOKE_PT_GPA; at += 4096) {
		put(s, at, 4);
		put(s, 4096, 2);
		put_bytes(s, vmm_gpa_ptr(vm, at, 4096), 4096);
	}
}

/* The first TABLE_BYTES of a table, as a chunk at its guest-physical address. */
static int put_table(struct seed *s, struct vm *vm, const struct sym *sym)
{
	uint64_t len = sym->size < TABLE_BYTES ? sym->size : TABLE_BYTES, gpa;
	uint8_t *bytes = malloc(len);

	if (!bytes || vmm_gva_to_gpa(vm, sym->addr, &gpa) ||
	    vmm_gva_read(vm, sym->addr, bytes, len)) {
		fprintf(stderr, "mkseeds: cannot read %s\n", sym->name);
		free(bytes);
		return -1;
	}
	put(s, gpa, 4);
	put(s, len, 2);
	put_bytes(s, bytes, len);
	free(bytes);
	return 0;
}

/*
 * fuzz_guest_tables: the header (addresses around the table `name`, the
 * three table symbols, vCPU `pick` of 2, task `pick`), the page tables and
 * the bytes of one table, or of all three (name NULL).
 */
static int seed_tables(struct vm *vm, const char *dir, const char *name, unsigned int pick)
{
	static const char *const tables[] = { VMPOKE_SYM_TASKS, VMPOKE_SYM_PERCPU,
					      VMPOKE_SYM_SITES };
	const struct symtab *st = vmm_symtab(vm);
	const struct sym *sym = symtab_find(st, name ? name : VMPOKE_SYM_TASKS), *t;
	struct seed *s = calloc(1, sizeof(*s));
	int ret = -1;

	if (!s || !sym) {
		fprintf(stderr, "mkseeds: no symbol %s\n", name);
		goto out;
	}
	put(s, VMPOKE_PML4_GPA, 8);
	put(s, 8u << 20, 4);			/* fuzz_guest_tables' RAM size */
	put(s, sym->addr, 8);			/* the table, */
	put(s, sym->size < TABLE_BYTES ? sym->size : TABLE_BYTES, 2);
	put(s, sym->addr + (sym->size < TABLE_BYTES ? sym->size : TABLE_BYTES) - 8, 8);
	put(s, 8, 2);				/* its last word, */
	put(s, sym->addr - 4096, 8);		/* the page before it, */
	put(s, 64, 2);
	put(s, 0, 8);				/* and NULL, not present */
	put(s, 8, 2);
	put(s, 7, 1);				/* all three symbols */
	for (size_t i = 0; i < 3; i++) {
		t = symtab_find(st, tables[i]);
		if (!t)
			goto out;
		put(s, t->addr, 8);
		put(s, t->size, 4);
	}
	put(s, 2, 1);				/* nr_vcpus */
	put(s, pick % 2, 1);			/* vcpu */
	put(s, pick, 2);			/* task */
	put_page_tables(s, vm);
	for (size_t i = 0; i < 3; i++)
		if ((!name || !strcmp(name, tables[i])) &&
		    put_table(s, vm, symtab_find(st, tables[i])))
			goto out;
	ret = save(dir, "fuzz_guest_tables", name ? name : "all-tables", s);
out:
	free(s);
	return ret;
}

static void put_rel32(uint8_t *b, uint64_t from_next, uint64_t to)
{
	uint32_t rel = (uint32_t)(to - from_next);

	memcpy(b, &rel, 4);
}

/* The instruction torture writes over a site (vmpoke_abi.h's site kinds). */
static size_t site_alternative(const struct vmpoke_site_desc *d, const uint8_t *orig,
			       uint8_t *alt)
{
	uint64_t to = d->target[d->nr_targets > 1 ? 1 : 0];

	memset(alt, 0xcc, POKE_MAX_LEN);	/* INT3 padding */
	switch (d->kind) {
	case VMPOKE_SITE_NOP2_JMP8:
		alt[0] = 0xeb;
		alt[1] = (uint8_t)(d->target[0] - (d->addr + 2));
		return 2;
	case VMPOKE_SITE_CALL32:
		alt[0] = 0xe8;
		put_rel32(alt + 1, d->addr + 5, to);
		return 5;
	case VMPOKE_SITE_JCC32:
		alt[0] = 0x0f;
		alt[1] = orig[1];
		put_rel32(alt + 2, d->addr + 6, to);
		return 6;
	default:	/* NOP5_JMP32, MULTI: JMP rel32, INT3-padded to len */
		alt[0] = 0xe9;
		put_rel32(alt + 1, d->addr + 5, d->target[0]);
		return d->len;
	}
}

static int seed_site(struct vm *vm, const char *dir, const struct vmpoke_site_desc *d,
		     unsigned int i)
{
	const struct sym *fn;
	struct seed *s = calloc(1, sizeof(*s));
	uint8_t orig[POKE_MAX_LEN], alt[POKE_MAX_LEN], *code = NULL;
	uint64_t off, ret_addr;
	char name[32];
	size_t len;
	int ret = -1;

	fn = symtab_lookup(vmm_symtab(vm), d->addr, &off);
	if (!s || !fn || !fn->size || d->len > POKE_MAX_LEN ||
	    !(code = malloc(fn->size)) || vmm_gva_read(vm, fn->addr, code, fn->size) ||
	    vmm_gva_read(vm, d->addr, orig, d->len))
		goto out;
	len = site_alternative(d, orig, alt);
	put(s, 1 | 4, 1);			/* emulatable, with the old bytes */
	put(s, len, 1);
	put(s, off, 2);
	put(s, 0, 2);
	put(s, fn->addr, 8);
	put(s, 0x10, 8);			/* rsp: low bits, see fuzz_decode.c */
	put(s, 0x246, 8);			/* rflags: ZF PF IF */
	ret_addr = d->addr + d->len;
	for (int k = 0; k < 4; k++)		/* a stack of return addresses */
		put(s, ret_addr, 8);
	put_bytes(s, alt, POKE_MAX_LEN);
	put_bytes(s, orig, POKE_MAX_LEN < fn->size - off ? POKE_MAX_LEN : fn->size - off);
	s->n = 94;				/* header size, whatever orig's length */
	put_bytes(s, code, fn->size);
	snprintf(name, sizeof(name), "site-%02u", i);
	ret = save(dir, "fuzz_decode", name, s);
out:
	if (ret)
		fprintf(stderr, "mkseeds: site %u at 0x%llx skipped\n", i,
			(unsigned long long)d->addr);
	free(code);
	free(s);
	return ret;
}

/* fuzz_decode, probe half: each lib_* function, probed at its first instruction. */
static int seed_probes(struct vm *vm, const char *dir)
{
	const struct symtab *st = vmm_symtab(vm);
	int bad = 0;

	for (size_t i = 0; i < symtab_count(st); i++) {
		const struct sym *fn = symtab_at(st, i);
		struct seed *s;
		uint8_t *code;
		char name[96];

		if (strncmp(fn->name, "lib_", 4) || fn->type != 'T' || !fn->size ||
		    fn->size > SEED_MAX / 2)
			continue;
		s = calloc(1, sizeof(*s));
		code = malloc(fn->size);
		if (!s || !code || vmm_gva_read(vm, fn->addr, code, fn->size)) {
			bad = 1;
		} else {
			put(s, 0, 1);			/* flags */
			put(s, 1, 1);			/* len */
			put(s, 0, 4);			/* off, off2 */
			put(s, fn->addr, 8);
			put(s, 0x10, 8);		/* rsp */
			put(s, 0x246, 8);		/* rflags */
			for (int k = 0; k < 4; k++)	/* stack: return addresses */
				put(s, fn->addr + fn->size, 8);
			s->n = 94;			/* new, emulate: zero */
			put_bytes(s, code, fn->size);
			snprintf(name, sizeof(name), "probe-%s", fn->name);
			bad |= save(dir, "fuzz_decode", name, s);
		}
		free(code);
		free(s);
	}
	return bad;
}

int main(int argc, char **argv)
{
	struct vm_config cfg = { .nr_vcpus = 2, .mem_mib = 64, .tasks = 3,
				 .scenario = VMPOKE_SCN_IDLE, .quiet = true };
	static struct vmpoke_site_table st;
	char msg[256];
	struct vm *vm;
	int code = 0, bad = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: mkseeds IMAGE CORPUS_DIR\n");
		return 2;
	}
	cfg.image = argv[1];
	vm = vmm_create(&cfg, &code);
	if (!vm)
		return code ? code : 3;
	if (vmm_start(vm) || vmm_wait_hcall(vm, VMPOKE_HC_READY, cfg.nr_vcpus, 30000) ||
	    vmm_pause(vm)) {
		fprintf(stderr, "mkseeds: the guest did not come up\n");
		vmm_destroy(vm);
		return 1;
	}
	bad |= seed_tables(vm, argv[2], VMPOKE_SYM_TASKS, 1);
	bad |= seed_tables(vm, argv[2], VMPOKE_SYM_PERCPU, 0);
	bad |= seed_tables(vm, argv[2], VMPOKE_SYM_SITES, 0);
	bad |= seed_tables(vm, argv[2], NULL, 5);
	if (vmm_sites_read(vm, &st, msg, sizeof(msg))) {
		fprintf(stderr, "mkseeds: %s\n", msg);
		bad = 1;
	} else {
		for (unsigned int i = 0; i < st.nr_sites; i++)
			bad |= seed_site(vm, argv[2], &st.sites[i], i);
	}
	bad |= seed_probes(vm, argv[2]);
	vmm_resume(vm);
	vmm_stop(vm);
	vmm_destroy(vm);
	return bad ? 1 : 0;
}
