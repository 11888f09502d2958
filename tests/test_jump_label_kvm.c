// SPDX-License-Identifier: MIT
/*
 * test_jump_label_kvm.c - static keys flipped from outside a running guest
 * on a real /dev/kvm.  The HOT tasks run every jump-label site in each
 * iteration and check it against key->enabled (seqlock-fair), so a flip
 * that leaves text and key disagreeing, or a torn site, is a guest check
 * failure.  Their checks are shown to bite: a key written without its text
 * fails them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jump_label.h"
#include "patcher.h"
#include "symtab.h"
#include "testlib.h"
#include "test_vmm_util.h"
#include "vmm.h"

struct jenv {
	struct vm *vm;
	struct patcher *p;
	struct jl_table *t;
};

static bool jenv_start(struct jenv *e)
{
	char msg[256];

	memset(e, 0, sizeof(*e));
	if (!vmt_boot_patchable(2, &e->vm, &e->p))
		return false;
	EXPECT_TRUE_MSG(!jl_table_load(testlib_image(), vmm_symtab(e->vm), &e->t, msg,
				       sizeof(msg)), "jl_table_load: %s", msg);
	return e->t != NULL;
}

static void jenv_end(struct jenv *e)
{
	jl_table_free(e->t);
	if (e->p)
		patcher_destroy(e->p);
	if (e->vm)
		vmt_finish(e->vm);
}

static const struct jl_key *key(struct jenv *e, const char *name)
{
	const struct jl_key *k = jl_key_find(e->t, name);

	EXPECT_TRUE_MSG(k != NULL, "no static key %s", name);
	return k;
}

static struct vmpoke_static_key kread(struct jenv *e, const struct jl_key *k)
{
	struct vmpoke_static_key v = { 0 };

	EXPECT_EQ(jl_key_read(e->vm, k, &v), 0);
	return v;
}

/* Every site holds the form enabled ^ branch names, and no other byte. */
static void expect_sites(struct jenv *e, const struct jl_key *k, bool enabled)
{
	for (size_t i = 0; i < k->nr_sites; i++) {
		const struct jl_site *s = &k->sites[i];
		uint8_t b[5];

		EXPECT_EQ_FATAL(vmm_gva_read(e->vm, s->code, b, s->len), 0);
		if (enabled ^ s->branch) {
			EXPECT_EQ(b[0], s->len == 2 ? 0xeb : 0xe9);
		} else {
			EXPECT_TRUE_MSG(b[0] == (s->len == 2 ? 0x66 : 0x0f),
					"%s site %zu: first byte 0x%02x, not a NOP", k->name, i,
					b[0]);
		}
	}
}

static void let_run(struct vm *vm, uint64_t iterations)
{
	struct vmpoke_task_table *tab = malloc(sizeof(*tab));
	uint64_t start = 0, now;

	if (!tab || !vmt_read_tasks(vm, tab)) {
		free(tab);
		return;
	}
	for (unsigned int i = 0; i < tab->nr_tasks; i++)
		start += tab->tasks[i].iterations;
	for (int tries = 0; tries < 2000; tries++) {
		usleep(5000);
		if (!vmt_read_tasks(vm, tab))
			break;
		now = 0;
		for (unsigned int i = 0; i < tab->nr_tasks; i++)
			now += tab->tasks[i].iterations;
		if (now >= start + iterations)
			break;
	}
	free(tab);
}

/* Every healthy key, enabled and disabled while the tasks check it. */
static void test_jl_flip_both_ways(void)
{
	static const char *const names[] = { "jl_key_false", "jl_key_true", "jl_key_one",
					      "jl_key_16", "jl_key_256" };
	struct jl_flip_out o;
	struct jenv e;
	char msg[512];

	if (!jenv_start(&e))
		goto out;
	for (int round = 0; round < 2; round++)
		for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
			const struct jl_key *k = key(&e, names[n]);
			struct vmpoke_static_key v0, v1;

			if (!k)
				continue;
			v0 = kread(&e, k);
			expect_sites(&e, k, v0.enabled > 0);
			EXPECT_TRUE_MSG(!jl_key_set(e.p, e.vm, k, !v0.enabled, &o, msg,
						    sizeof(msg)), "%s: %s", k->name, msg);
			EXPECT_TRUE(o.changed);
			EXPECT_EQ_U64(k->nr_sites, o.sites);
			v1 = kread(&e, k);
			EXPECT_EQ(!v0.enabled, v1.enabled > 0);
			EXPECT_EQ_U64(v0.seq + 2, v1.seq);	/* odd during, even after */
			expect_sites(&e, k, v1.enabled > 0);
			/* the same state again: static_key_enable() twice is a no-op */
			EXPECT_EQ(jl_key_set(e.p, e.vm, k, v1.enabled, &o, msg,
						   sizeof(msg)), 0);
			EXPECT_TRUE(!o.changed);
			let_run(e.vm, 200);
		}
	let_run(e.vm, 2000);
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL));
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_FAULT));
out:
	jenv_end(&e);
}

/*
 * The guest's checks can fail: enabled written without the text (seq even
 * and unchanged) is seen by the tasks.
 */
static void test_jl_checks_bite(void)
{
	const struct jl_key *k;
	struct jenv e;
	int32_t one = 1;

	if (!jenv_start(&e) || !(k = key(&e, "jl_key_one")))
		goto out;
	let_run(e.vm, 200);
	EXPECT_EQ_U64(0, vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL));
	EXPECT_EQ(vmm_gva_write(e.vm, k->addr, &one, sizeof(one)), 0);
	let_run(e.vm, 200);
	EXPECT_GT(vmm_hcall_count(e.vm, VMPOKE_HC_CHECK_FAIL), 0u);
out:
	jenv_end(&e);
}

static void read_all(struct jenv *e, const struct jl_key *k, uint8_t (*b)[5])
{
	memset(b, 0, k->nr_sites * sizeof(*b));
	for (size_t i = 0; i < k->nr_sites; i++)
		EXPECT_EQ(vmm_gva_read(e->vm, k->sites[i].code, b[i], k->sites[i].len), 0);
}

/* The guest corrupted jl_key_corrupt's site at boot: refused by name. */
static void test_jl_corrupt_refused(void)
{
	const struct jl_key *k;
	struct vmpoke_static_key v0, v1;
	uint8_t before[1][5], after[1][5];
	struct jl_flip_out o;
	struct poke_stats st0, st1;
	struct jenv e;
	char msg[512];

	if (!jenv_start(&e) || !(k = key(&e, "jl_key_corrupt")))
		goto out;
	EXPECT_EQ_U64(1, k->nr_sites);
	v0 = kread(&e, k);
	read_all(&e, k, before);
	patcher_stats(e.p, &st0);
	EXPECT_EQ(-EILSEQ, jl_key_set(e.p, e.vm, k, true, &o, msg, sizeof(msg)));
	patcher_stats(e.p, &st1);
	EXPECT_STR_HAS(msg, "unexpected op at jl_corrupt_fn");
	EXPECT_STR_HAS(msg, "jl_key_corrupt");
	EXPECT_TRUE(!o.changed);
	EXPECT_EQ_U64(st0.syncs, st1.syncs);		/* no protocol step ran */
	read_all(&e, k, after);
	EXPECT_EQ(0, memcmp(before, after, sizeof(before)));
	v1 = kread(&e, k);
	EXPECT_EQ(v0.enabled, v1.enabled);
	EXPECT_EQ(v0.seq, v1.seq);
out:
	jenv_end(&e);
}

/*
 * A key whose second site no longer holds the expected JMP: the whole key
 * is refused before anything is written, the healthy sites included.
 * (The tasks see the planted NOP, so check failures are expected here.)
 */
static void test_jl_planted_unexpected_op(void)
{
	static const uint8_t nop5[5] = { 0x0f, 0x1f, 0x44, 0x00, 0x00 };
	uint8_t before[4][5], after[4][5];
	const struct jl_key *k;
	struct vmpoke_static_key v0, v1;
	struct jl_flip_out o;
	struct jenv e;
	char msg[512], where[96];
	size_t bad = 0;

	if (!jenv_start(&e) || !(k = key(&e, "jl_key_true")))
		goto out;
	EXPECT_EQ_FATAL(k->nr_sites, 4);
	/* the JMP32 site (branch 0): expected JMP when disabling */
	for (size_t i = 0; i < k->nr_sites; i++)
		if (k->sites[i].len == 5 && !k->sites[i].branch)
			bad = i;
	EXPECT_EQ(vmm_gva_write(e.vm, k->sites[bad].code, nop5, 5), 0);
	read_all(&e, k, before);
	v0 = kread(&e, k);
	EXPECT_EQ(-EILSEQ, jl_key_set(e.p, e.vm, k, false, &o, msg, sizeof(msg)));
	symtab_format(vmm_symtab(e.vm), k->sites[bad].code, where, sizeof(where));
	EXPECT_STR_HAS(msg, "unexpected op at ");
	EXPECT_STR_HAS(msg, where);
	EXPECT_STR_HAS(msg, "expected JMP32");
	read_all(&e, k, after);
	EXPECT_EQ(0, memcmp(before, after, sizeof(before)));
	v1 = kread(&e, k);
	EXPECT_EQ(v0.enabled, v1.enabled);
	EXPECT_EQ(v0.seq, v1.seq);
out:
	jenv_end(&e);
}

TEST_SUITE(jump_label_kvm, "jump_label_kvm", true,
	   TEST(test_jl_flip_both_ways), TEST(test_jl_checks_bite),
	   TEST(test_jl_corrupt_refused), TEST(test_jl_planted_unexpected_op))
