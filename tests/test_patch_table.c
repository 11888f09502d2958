// SPDX-License-Identifier: MIT
/*
 * test_patch_table.c - the live-site table the trap hook searches, no VM:
 * lookups for one site, out-of-order adds, more sites than alternative.c's
 * 256-entry chunk (2aebf5ee43bf), and RCU-style reclamation order.
 */
#include <stdlib.h>
#include <string.h>

#include "testlib.h"
#include "../patcher/patcher_internal.h"

static struct poke_site mk(uint64_t addr, uint8_t len)
{
	struct poke_site s;

	memset(&s, 0, sizeof(s));
	s.addr = addr;
	s.len = len;
	s.emu.kind = POKE_EMU_JMP;
	s.emu.len = len;
	s.emu.target = addr ^ 0xabc000;	/* distinct per site */
	return s;
}

static const struct poke_snapshot *cur(struct poke_table *t)
{
	return atomic_load(&t->cur);
}

static void test_table_one_site(void)
{
	struct poke_table t;
	struct poke_site s = mk(0x401000, 5);
	const struct poke_live *e;

	traptable_init(&t);
	EXPECT_NULL(traptable_lookup(cur(&t), 0x401000));
	EXPECT_EQ(traptable_add(&t, &s, 1), 0);
	e = traptable_lookup(cur(&t), 0x401000);
	EXPECT_NOT_NULL_FATAL(e);
	EXPECT_EQ_U64(s.emu.target, e->emu.target);
	/* Only the INT3 byte (the head) is a key. */
	EXPECT_NULL(traptable_lookup(cur(&t), 0x401001));
	EXPECT_NULL(traptable_lookup(cur(&t), 0x400fff));
	EXPECT_EQ(traptable_remove(&t, &s, 1), 0);
	EXPECT_NULL(traptable_lookup(cur(&t), 0x401000));
	traptable_destroy(&t);
}

static void test_table_out_of_order(void)
{
	struct poke_site a[3] = { mk(0x403000, 5), mk(0x401000, 2), mk(0x402000, 6) };
	struct poke_site late = mk(0x400800, 5);
	struct poke_table t;
	size_t i;

	traptable_init(&t);
	EXPECT_EQ(traptable_add(&t, a, 3), 0);
	EXPECT_EQ(traptable_add(&t, &late, 1), 0);	/* lower than all */
	for (i = 0; i < 3; i++) {
		const struct poke_live *e = traptable_lookup(cur(&t), a[i].addr);

		EXPECT_NOT_NULL_FATAL(e);
		EXPECT_EQ_U64(a[i].emu.target, e->emu.target);
	}
	EXPECT_NOT_NULL(traptable_lookup(cur(&t), late.addr));
	for (i = 1; i < cur(&t)->n; i++)
		EXPECT_LT(cur(&t)->e[i - 1].addr, cur(&t)->e[i].addr);
	traptable_destroy(&t);
}

static int site_addr_cmp(const void *a, const void *b)
{
	const struct poke_site *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void test_table_many_sites(void)
{
	enum { N = 700 };	/* more than any 256-entry chunk */
	struct poke_site *s = calloc(N, sizeof(*s));
	struct poke_table t;
	size_t i, found = 0;

	EXPECT_NOT_NULL_FATAL(s);
	/* A scrambled order: 3 * i mod N visits every slot once (gcd 1). */
	for (i = 0; i < N; i++)
		s[i] = mk(0x500000 + 16 * ((3 * i) % N), 5);
	traptable_init(&t);
	EXPECT_EQ(traptable_add(&t, s, N / 2), 0);
	EXPECT_EQ(traptable_add(&t, s + N / 2, N - N / 2), 0);
	for (i = 0; i < N; i++) {
		const struct poke_live *e = traptable_lookup(cur(&t), s[i].addr);

		found += e && e->emu.target == s[i].emu.target;
		EXPECT_NULL(traptable_lookup(cur(&t), s[i].addr + 1));
	}
	EXPECT_EQ_U64(N, found);
	/* Removing the first half (scrambled addresses) leaves exactly the rest. */
	EXPECT_EQ(traptable_remove(&t, s, N / 2), 0);
	for (i = 0, found = 0; i < N; i++) {
		bool live = traptable_lookup(cur(&t), s[i].addr) != NULL;

		EXPECT_TRUE_MSG(live == (i >= N / 2), "site %zu at 0x%llx: live %d",
				i, (unsigned long long)s[i].addr, live);
		found += live;
	}
	EXPECT_EQ_U64(N - N / 2, found);
	/* Removing nothing, and removing what is not there, change nothing. */
	EXPECT_EQ(traptable_remove(&t, s, 0), 0);
	EXPECT_EQ(traptable_remove(&t, s, N / 2), 0);
	EXPECT_EQ_U64(N - N / 2, cur(&t)->n);
	/* The rest, removed in address order (the merge path), empties it. */
	qsort(s + N / 2, N - N / 2, sizeof(*s), site_addr_cmp);
	EXPECT_EQ(traptable_remove(&t, s + N / 2, N - N / 2), 0);
	EXPECT_EQ_U64(0, cur(&t)->n);
	traptable_destroy(&t);
	free(s);
}

/*
 * A snapshot replaced after a grace period started must survive that
 * grace period: a hook may have loaded it after the sync's kick.
 */
static void test_table_reclaim_order(void)
{
	struct poke_site a = mk(0x401000, 5), b = mk(0x402000, 5);
	const struct poke_snapshot *held;
	struct poke_table t;
	uint64_t mark;

	traptable_init(&t);
	EXPECT_EQ(traptable_add(&t, &a, 1), 0);		/* S1 */
	EXPECT_EQ_U64(0, traptable_pending(&t));
	EXPECT_EQ(traptable_add(&t, &b, 1), 0);		/* S2, S1 retired */
	EXPECT_EQ_U64(1, traptable_pending(&t));
	mark = traptable_mark(&t);				/* sync starts */
	held = cur(&t);						/* a hook loads S2 */
	EXPECT_EQ(traptable_remove(&t, &a, 1), 0);	/* S3, S2 retired */
	EXPECT_EQ_U64(2, traptable_pending(&t));
	traptable_reclaim(&t, mark);				/* sync returned */
	/* S1 is gone, S2 (held) still pending. */
	EXPECT_EQ_U64(1, traptable_pending(&t));
	EXPECT_EQ_U64(1, t.freed);
	EXPECT_PTR_EQ(t.retired, held);
	EXPECT_NOT_NULL(traptable_lookup(held, b.addr));
	/* The next grace period frees S2 too. */
	traptable_reclaim(&t, traptable_mark(&t));
	EXPECT_EQ_U64(0, traptable_pending(&t));
	EXPECT_EQ_U64(2, t.freed);
	EXPECT_NOT_NULL(traptable_lookup(cur(&t), b.addr));
	EXPECT_NULL(traptable_lookup(cur(&t), a.addr));
	traptable_destroy(&t);
}

/*
 * When a sync must be the acknowledged one: 16 retired snapshots, or
 * 1 MiB of them, whichever comes first (the core syncs free nothing).
 */
static void test_table_reclaim_due(void)
{
	struct poke_site a = mk(0x401000, 5), *many;
	size_t n;
	struct poke_table t;

	traptable_init(&t);
	/* Add, then remove, until 16 snapshots are retired: due only then. */
	for (unsigned int i = 0; i < 64 && traptable_pending(&t) < 16; i++) {
		EXPECT_TRUE_MSG(!traptable_reclaim_due(&t), "due at %zu retired",
				traptable_pending(&t));
		EXPECT_EQ(i & 1 ? traptable_remove(&t, &a, 1) : traptable_add(&t, &a, 1), 0);
	}
	EXPECT_EQ_U64(16, traptable_pending(&t));
	EXPECT_TRUE(traptable_reclaim_due(&t));
	traptable_reclaim(&t, traptable_mark(&t));
	EXPECT_EQ_U64(0, traptable_pending(&t));
	EXPECT_TRUE(!traptable_reclaim_due(&t));
	/* One big table replaced once is already 1 MiB of dead copies. */
	n = (1u << 20) / sizeof(struct poke_live) + 1;
	many = calloc(n, sizeof(*many));
	EXPECT_NOT_NULL_FATAL(many);
	for (size_t i = 0; i < n; i++)
		many[i] = mk(0x1000000 + 16ull * i, 5);
	EXPECT_EQ(traptable_add(&t, many, n), 0);
	EXPECT_EQ(traptable_remove(&t, many, n), 0);	/* the big one retired */
	EXPECT_TRUE_MSG(traptable_pending(&t) < 16, "%zu retired", traptable_pending(&t));
	EXPECT_TRUE(traptable_reclaim_due(&t));
	free(many);
	traptable_destroy(&t);
}

/*
 * The interleaving that misfiled a live site as foreign: the hook searches
 * a snapshot without the site, then a batch publishes the site and writes
 * its INT3, then the hook reads the byte.  The fake byte read plays the
 * batch's part.
 */
struct race_ctx {
	struct poke_table *t;
	struct poke_site site;
	uint8_t byte, next;	/* at the site and just after it */
	bool publish;
};

static int race_read_byte(void *ctx, uint64_t addr, uint8_t *byte)
{
	struct race_ctx *r = ctx;

	if (r->publish)
		EXPECT_EQ(traptable_add(r->t, &r->site, 1), 0);
	r->publish = false;
	*byte = addr == r->site.addr ? r->byte : r->next;
	return 0;
}

static void test_table_classify(void)
{
	struct poke_table t;
	struct race_ctx r = { .t = &t, .site = mk(0x401000, 5) };
	const struct poke_live *e;

	traptable_init(&t);
	/* Published between the hook's lookup and its byte read: ours. */
	r.publish = true;
	r.byte = 0xcc;
	EXPECT_EQ_U64(TRAP_LIVE, traptable_classify(&t, 0x401000, true, false,
						     race_read_byte, &r, &e));
	EXPECT_NOT_NULL(e);
	EXPECT_EQ(traptable_remove(&t, &r.site, 1), 0);
	/* A 0xCC nobody published: foreign, with or without ghosts. */
	r.publish = false;
	EXPECT_EQ_U64(TRAP_FOREIGN, traptable_classify(&t, 0x401000, true, false,
							race_read_byte, &r, &e));
	/* Retired and rewritten: a ghost, unless ghost handling is off. */
	r.byte = 0xe9;
	EXPECT_EQ_U64(TRAP_GHOST, traptable_classify(&t, 0x401000, true, false,
						      race_read_byte, &r, &e));
	EXPECT_EQ_U64(TRAP_FOREIGN, traptable_classify(&t, 0x401000, false, false,
							race_read_byte, &r, &e));
	/*
	 * The guest's own two-byte "int $3": foreign where addr is the
	 * instruction (debug exit), a ghost where it is return address - 1.
	 */
	r.byte = 0xcd;
	r.next = 0x03;
	EXPECT_EQ_U64(TRAP_FOREIGN, traptable_classify(&t, 0x401000, true, true,
							race_read_byte, &r, &e));
	EXPECT_EQ_U64(TRAP_GHOST, traptable_classify(&t, 0x401000, true, false,
						      race_read_byte, &r, &e));
	r.next = 0x80;		/* int $0x80 is no #BP: a ghost either way */
	EXPECT_EQ_U64(TRAP_GHOST, traptable_classify(&t, 0x401000, true, true,
						      race_read_byte, &r, &e));
	traptable_destroy(&t);
}

/*
 * How CPL0 sites are written: VMPOKE_CPL0_PATCH forces it, auto follows the
 * host probe, faked here both ways (kvm_pvm answers "no", the nested KVM
 * and hardware "yes").
 */
static void test_cpl0_decision(void)
{
	EXPECT_EQ(poke_cpl0_parse(NULL), POKE_CPL0_AUTO);
	EXPECT_EQ(poke_cpl0_parse(""), POKE_CPL0_AUTO);
	EXPECT_EQ(poke_cpl0_parse("auto"), POKE_CPL0_AUTO);
	EXPECT_EQ(poke_cpl0_parse("breakpoint"), POKE_CPL0_BREAKPOINT);
	EXPECT_EQ(poke_cpl0_parse("stop-the-world"), POKE_CPL0_STOP_THE_WORLD);
	EXPECT_EQ(poke_cpl0_parse("stop_the_world"), -1);
	EXPECT_EQ(poke_cpl0_parse("Breakpoint"), -1);
	EXPECT_EQ(poke_cpl0_decide(POKE_CPL0_AUTO, false), POKE_METHOD_STOP_THE_WORLD);
	EXPECT_EQ(poke_cpl0_decide(POKE_CPL0_AUTO, true), POKE_METHOD_BREAKPOINT);
	EXPECT_EQ(poke_cpl0_decide(POKE_CPL0_BREAKPOINT, false), POKE_METHOD_BREAKPOINT);
	EXPECT_EQ(poke_cpl0_decide(POKE_CPL0_STOP_THE_WORLD, true), POKE_METHOD_STOP_THE_WORLD);
	EXPECT_STREQ(poke_method_name(POKE_METHOD_BREAKPOINT), "breakpoint");
	EXPECT_STREQ(poke_method_name(POKE_METHOD_STOP_THE_WORLD), "stop-the-world");
}

TEST_SUITE(patch_table, "patch_table", false,
	   TEST(test_cpl0_decision),
	   TEST(test_table_classify),
	   TEST(test_table_one_site),
	   TEST(test_table_out_of_order),
	   TEST(test_table_many_sites),
	   TEST(test_table_reclaim_order),
	   TEST(test_table_reclaim_due))
