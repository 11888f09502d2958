// SPDX-License-Identifier: MIT
/*
 * test_guest_tables.c - the validated readers of the guest's tables
 * (vmm/guest_tables.c) on tables planted in a plain RAM buffer, each
 * corrupted one way at a time: bad magic, wrong version, count over
 * capacity, symbol too small, an entry pointing outside RAM.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "guest_tables.h"
#include "symtab.h"
#include "testlib.h"

#define RAM_SIZE	(4ull << 20)
#define CR3		0x1000ull
#define P_RW		0x3ull
#define PS		0x80ull
#define TASKS_GVA	0x100000ull
#define SITES_GVA	0x140000ull
#define PERCPU_GVA	0x150000ull
#define CODE_GVA	0x180000ull
#define UNMAPPED_GVA	0x800000ull		/* PD entry 4: not present */
#define BEYOND_RAM_GVA	((1ull << 30) + RAM_SIZE) /* 1 GiB page -> PA 4 MiB */
#define NR_VCPUS	4u

static struct guest_ram ram;

static void pte_set(uint64_t table, unsigned int idx, uint64_t val)
{
	memcpy(ram.host + table + 8 * idx, &val, 8);
}

/* [0, 4 MiB) identity in 2 MiB pages; [1 GiB, 2 GiB) -> PA 0 in one page. */
static void ram_setup(void)
{
	free(ram.host);
	ram.size = RAM_SIZE;
	ram.host = calloc(1, RAM_SIZE);
	EXPECT_NOT_NULL_FATAL(ram.host);
	pte_set(0x1000, 0, 0x2000 | P_RW);
	pte_set(0x2000, 0, 0x3000 | P_RW);
	pte_set(0x2000, 1, 0 | P_RW | PS);
	pte_set(0x3000, 0, 0 | P_RW | PS);
	pte_set(0x3000, 1, 0x200000 | P_RW | PS);
}

static struct vmpoke_task_table *tasks_at(uint64_t gva)
{
	return (struct vmpoke_task_table *)(ram.host + gva);
}

static struct sym tasks_plant(void)
{
	struct vmpoke_task_table *t = tasks_at(TASKS_GVA);
	struct sym s = { TASKS_GVA, sizeof(*t), 'D', VMPOKE_SYM_TASKS };

	t->magic = VMPOKE_TASKS_MAGIC;
	t->version = VMPOKE_ABI_VERSION;
	t->task_size = sizeof(struct vmpoke_task);
	t->capacity = VMPOKE_TASKS_CAPACITY;
	t->nr_tasks = 3;
	for (uint32_t i = 0; i < 3; i++) {
		t->tasks[i].id = i;
		t->tasks[i].state = VMPOKE_TASK_RUNNABLE;
		t->tasks[i].iterations = 100 + i;
		t->tasks[i].stack_lo = 0x200000 + i * 0x2000;
		t->tasks[i].stack_hi = t->tasks[i].stack_lo + 0x2000;
	}
	return s;
}

static int tasks_read(const struct sym *s, char *msg, size_t len)
{
	static struct vmpoke_task_table out;

	return gtab_tasks_read(&ram, CR3, s, &out, msg, len);
}

static void test_tasks_valid(void)
{
	static struct vmpoke_task_table out;
	struct vmpoke_task one;
	struct sym s;
	char msg[256] = "";

	ram_setup();
	s = tasks_plant();
	EXPECT_EQ(gtab_tasks_read(&ram, CR3, &s, &out, msg, sizeof(msg)), 0);
	EXPECT_EQ(out.nr_tasks, 3u);
	EXPECT_EQ(out.tasks[2].iterations, 102u);
	EXPECT_EQ(gtab_task_read(&ram, CR3, &s, 1, &one, msg, sizeof(msg)), 0);
	EXPECT_EQ(one.iterations, 101u);
	/* An entry past nr_tasks is not in use. */
	EXPECT_EQ(gtab_task_read(&ram, CR3, &s, 3, &one, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "not in use");
	EXPECT_EQ(gtab_tasks_read(&ram, CR3, NULL, &out, msg, sizeof(msg)), -ENOENT);
	EXPECT_STR_HAS(msg, VMPOKE_SYM_TASKS);
}

static void test_tasks_corrupt(void)
{
	struct vmpoke_task_table *t;
	struct sym s;
	char msg[256], want[32];

	ram_setup();
	s = tasks_plant();
	t = tasks_at(TASKS_GVA);

	t->magic ^= 1;				/* bad magic */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "magic");
	t->magic ^= 1;
	t->version = VMPOKE_ABI_VERSION + 1;	/* wrong version */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	snprintf(want, sizeof(want), "version %u", VMPOKE_ABI_VERSION + 1);
	EXPECT_STR_HAS(msg, want);
	t->version = VMPOKE_ABI_VERSION;
	t->task_size--;				/* another entry layout */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	t->task_size++;
	t->capacity--;				/* capacity not the ABI's */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	t->capacity++;
	t->nr_tasks = VMPOKE_TASKS_CAPACITY + 1;	/* count over capacity */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "nr_tasks");
	t->nr_tasks = 3;
	s.size = sizeof(*t) - 1;		/* symbol too small */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "smaller");
	s.size = 0;				/* size unknown: refused too */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	s.size = sizeof(*t);
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), 0);
}

/*
 * gtab_task_read() runs on vCPU threads (a check failure's doorbell), whose
 * stacks are 256 KiB: it must not put the whole table (147 KiB since ABI v3)
 * on the stack.  Here it runs on a 64 KiB one (without the fix: SIGSEGV).
 */
struct small_stack_read {
	struct sym s;
	struct vmpoke_task one;
	int ret;
};

static void *small_stack_reader(void *arg)
{
	struct small_stack_read *r = arg;
	char msg[256];

	r->ret = gtab_task_read(&ram, CR3, &r->s, 2, &r->one, msg, sizeof(msg));
	return NULL;
}

static void test_task_read_small_stack(void)
{
	struct small_stack_read r = { .ret = -1 };
	pthread_attr_t attr;
	pthread_t t;

	ram_setup();
	r.s = tasks_plant();
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	EXPECT_EQ_FATAL(pthread_create(&t, &attr, small_stack_reader, &r), 0);
	pthread_join(t, NULL);
	pthread_attr_destroy(&attr);
	EXPECT_EQ(r.ret, 0);
	EXPECT_EQ(r.one.iterations, 102u);
}

/* ABI version 3: an entry in use has known patch_state bits and a sane stack. */
static void test_tasks_entry_corrupt(void)
{
	struct vmpoke_task_table *t;
	struct vmpoke_task one;
	struct sym s;
	char msg[256];

	ram_setup();
	s = tasks_plant();
	t = tasks_at(TASKS_GVA);
	t->tasks[1].patch_state = VMPOKE_PATCH_PATCHED | VMPOKE_PATCH_FORCED;
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), 0);
	t->tasks[1].patch_state = 2;			/* unknown bit */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "patch_state");
	EXPECT_EQ(gtab_task_read(&ram, CR3, &s, 1, &one, msg, sizeof(msg)), -EINVAL);
	t->tasks[1].patch_state = 0;
	t->tasks[2].stack_hi = t->tasks[2].stack_lo;	/* empty */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "stack");
	t->tasks[2].stack_hi = t->tasks[2].stack_lo + VMPOKE_TASK_STACK_MAX + 16; /* too big */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	t->tasks[2].stack_hi = t->tasks[2].stack_lo + 0x2008;	/* misaligned */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EINVAL);
	t->tasks[2].stack_lo = UNMAPPED_GVA;		/* not mapped */
	t->tasks[2].stack_hi = UNMAPPED_GVA + 0x2000;
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EFAULT);
	EXPECT_STR_HAS(msg, "not in guest RAM");
	t->tasks[2].stack_lo = RAM_SIZE - 0x1000;	/* runs off the end of RAM */
	t->tasks[2].stack_hi = RAM_SIZE + 0x1000;
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EFAULT);
	t->tasks[2].state = VMPOKE_TASK_UNUSED;		/* unused: not checked */
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), 0);
}

/* The symbol says the table lies where RAM ends or nothing is mapped. */
static void test_tasks_outside_ram(void)
{
	struct sym s;
	char msg[256];

	ram_setup();
	s = tasks_plant();
	s.addr = BEYOND_RAM_GVA - 8;
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EFAULT);
	EXPECT_STR_HAS(msg, "not in guest RAM");
	s.addr = UNMAPPED_GVA;
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EFAULT);
	/* A valid header whose entries run past the end of RAM. */
	s = tasks_plant();
	memcpy(ram.host + RAM_SIZE - offsetof(struct vmpoke_task_table, tasks),
	       tasks_at(TASKS_GVA), offsetof(struct vmpoke_task_table, tasks));
	s.addr = RAM_SIZE - offsetof(struct vmpoke_task_table, tasks);
	EXPECT_EQ(tasks_read(&s, msg, sizeof(msg)), -EFAULT);
	EXPECT_STR_HAS(msg, "entries");
}

static struct sym percpu_plant(void)
{
	struct vmpoke_percpu *pc = (struct vmpoke_percpu *)(ram.host + PERCPU_GVA);
	struct sym s = { PERCPU_GVA, NR_VCPUS * sizeof(*pc), 'B', VMPOKE_SYM_PERCPU };

	for (unsigned int i = 0; i < NR_VCPUS; i++) {
		pc[i].vcpu = i;
		pc[i].rsp0 = 0x170000 + 0x1000 * i;
	}
	return s;
}

static void test_percpu(void)
{
	struct vmpoke_percpu pc;
	uint64_t frame = 0;
	struct sym s;
	char msg[256];

	ram_setup();
	s = percpu_plant();
	EXPECT_EQ(gtab_percpu_read(&ram, CR3, &s, NR_VCPUS, 2, &pc, msg, sizeof(msg)), 0);
	EXPECT_EQ(pc.vcpu, 2u);
	EXPECT_EQ(gtab_cpl0_frame(&ram, CR3, &pc, &frame), 0);
	EXPECT_EQ(frame, pc.rsp0 - VMPOKE_CPL0_FRAME_SIZE);
	/* A vCPU beyond the VM's count, and more vCPUs than the ABI has. */
	EXPECT_EQ(gtab_percpu_read(&ram, CR3, &s, NR_VCPUS, NR_VCPUS, &pc, msg,
				   sizeof(msg)), -EINVAL);
	EXPECT_EQ(gtab_percpu_read(&ram, CR3, &s, VMPOKE_MAX_VCPUS + 1, 0, &pc, msg,
				   sizeof(msg)), -EINVAL);
	/* Symbol too small for the VM's vCPUs. */
	s.size = (NR_VCPUS - 1) * sizeof(pc);
	EXPECT_EQ(gtab_percpu_read(&ram, CR3, &s, NR_VCPUS, 0, &pc, msg, sizeof(msg)),
		  -EINVAL);
	EXPECT_STR_HAS(msg, "smaller");
	EXPECT_EQ(gtab_percpu_read(&ram, CR3, NULL, NR_VCPUS, 0, &pc, msg, sizeof(msg)),
		  -ENOENT);
	/* The blocks outside RAM. */
	s = percpu_plant();
	s.addr = BEYOND_RAM_GVA - sizeof(pc);
	EXPECT_EQ(gtab_percpu_read(&ram, CR3, &s, NR_VCPUS, 1, &pc, msg, sizeof(msg)),
		  -EFAULT);
	/* rsp0 (an entry's pointer): unset, too small, outside RAM, unmapped. */
	pc.rsp0 = 0;
	EXPECT_EQ(gtab_cpl0_frame(&ram, CR3, &pc, &frame), -EFAULT);
	pc.rsp0 = VMPOKE_CPL0_FRAME_SIZE - 1;
	EXPECT_EQ(gtab_cpl0_frame(&ram, CR3, &pc, &frame), -EFAULT);
	pc.rsp0 = BEYOND_RAM_GVA + VMPOKE_CPL0_FRAME_SIZE;
	EXPECT_EQ(gtab_cpl0_frame(&ram, CR3, &pc, &frame), -EFAULT);
	pc.rsp0 = UNMAPPED_GVA + 0x100;
	EXPECT_EQ(gtab_cpl0_frame(&ram, CR3, &pc, &frame), -EFAULT);
}

/* A 40-byte interrupt frame at gva: rip, cs, rflags, rsp, ss. */
static void frame_plant(uint64_t gva, uint64_t rip, uint64_t cs, uint64_t rsp)
{
	uint64_t f[5] = { rip, cs, 0x2, rsp, cs == 0x8 ? 0x10 : 0x33 };

	memcpy(ram.host + gva, f, sizeof(f));
}

/*
 * The chain of CPL0 frames (vmpoke_abi.h, "CPL0 frames") on a planted
 * kernel stack: the timer's entry frame at rsp0 - 40 (a task interrupted
 * at a CPL3 site) and, below the task context it saved and the call into
 * sched_tick_hook(), a #BP frame from CPL0 (a breakpoint hit in the
 * static call's site).  Both interrupted RIPs must be found, innermost
 * first; a CPL3 trap's frame is the entry frame alone; no stub frame
 * leaves the entry frame; a frame not in RAM is left out.
 */
static void test_cpl0_frames_nested(void)
{
	const uint64_t site_a = CODE_GVA + 0x11, site_b = CODE_GVA + 0x203;
	struct gtab_frame f[VMPOKE_CPL0_MAX_FRAMES];
	struct vmpoke_percpu pc = { .rsp0 = 0x172000 };
	uint64_t entry = pc.rsp0 - VMPOKE_CPL0_FRAME_SIZE;
	uint64_t inner = ((entry - 15 * 8 - 8 - 0x18) & ~15ull) - VMPOKE_CPL0_FRAME_SIZE;

	ram_setup();
	frame_plant(entry, site_b, 0x2b, 0x7ff000);
	frame_plant(inner, site_a + 1, 0x8, inner + VMPOKE_CPL0_FRAME_SIZE);
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, inner, f), 2u);
	EXPECT_EQ(f[0].at, inner);
	EXPECT_EQ(f[0].rip, site_a + 1);
	EXPECT_EQ(f[0].cs, 0x8u);
	EXPECT_EQ(f[1].at, entry);
	EXPECT_EQ(f[1].rip, site_b);
	EXPECT_EQ(f[1].cs, 0x2bu);
	/* Not in a stub (the timer's callee itself): the entry frame. */
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, 0, f), 1u);
	EXPECT_EQ(f[0].at, entry);
	EXPECT_EQ(f[0].rip, site_b);
	/* The stub's frame is the entry frame: by address, or from CPL3. */
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, entry, f), 1u);
	EXPECT_EQ(f[0].at, entry);
	frame_plant(inner, site_a + 1, 0x2b, 0x7ff000);
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, inner, f), 1u);
	EXPECT_EQ(f[0].at, inner);
	/* A stub frame outside RAM, or wrapping: the entry frame still counts. */
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, BEYOND_RAM_GVA - 8, f), 1u);
	EXPECT_EQ(f[0].at, entry);
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, UINT64_MAX - 16, f), 1u);
	EXPECT_EQ(f[0].at, entry);
	/* A bad rsp0: only the stub's frame, which the stub addresses itself. */
	frame_plant(inner, site_a + 1, 0x8, inner + VMPOKE_CPL0_FRAME_SIZE);
	pc.rsp0 = UNMAPPED_GVA + 0x100;
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, inner, f), 1u);
	EXPECT_EQ(f[0].at, inner);
	pc.rsp0 = 0;
	EXPECT_EQ(gtab_cpl0_frames(&ram, CR3, &pc, 0, f), 0u);
}

static struct vmpoke_site_table *sites_at(void)
{
	return (struct vmpoke_site_table *)(ram.host + SITES_GVA);
}

static struct sym sites_plant(void)
{
	struct vmpoke_site_table *t = sites_at();
	struct sym s = { SITES_GVA, sizeof(*t), 'D', VMPOKE_SYM_SITES };

	t->magic = VMPOKE_SITES_MAGIC;
	t->version = VMPOKE_ABI_VERSION;
	t->nr_sites = 2;
	for (uint32_t i = 0; i < 2; i++) {
		t->sites[i].addr = CODE_GVA + 0x40 * i;
		t->sites[i].kind = VMPOKE_SITE_NOP5_JMP32;
		t->sites[i].len = 5;
		t->sites[i].nr_targets = 1;
		t->sites[i].target[0] = CODE_GVA + 0x100;
	}
	return s;
}

static int sites_read(const struct sym *s, char *msg, size_t len)
{
	static struct vmpoke_site_table out;

	return gtab_sites_read(&ram, CR3, s, &out, msg, len);
}

static void test_sites(void)
{
	static struct vmpoke_site_table out;
	struct vmpoke_site_table *t;
	struct sym s;
	char msg[256] = "";

	ram_setup();
	s = sites_plant();
	t = sites_at();
	EXPECT_EQ(gtab_sites_read(&ram, CR3, &s, &out, msg, sizeof(msg)), 0);
	EXPECT_EQ(out.nr_sites, 2u);
	EXPECT_EQ(out.sites[1].addr, CODE_GVA + 0x40);

	t->magic ^= 1;				/* bad magic */
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "magic");
	t->magic ^= 1;
	t->version = 99;			/* wrong version */
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "version 99");
	t->version = VMPOKE_ABI_VERSION;
	t->nr_sites = VMPOKE_MAX_SITES + 1;	/* count over capacity */
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "nr_sites");
	t->nr_sites = 2;
	s.size = sizeof(*t) - 8;		/* symbol too small */
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EINVAL);
	s.size = sizeof(*t);
	t->sites[1].kind = 9;			/* entries: unknown kind ... */
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EINVAL);
	EXPECT_STR_HAS(msg, "[1]: unknown kind 9");
	t->sites[1].kind = VMPOKE_SITE_NOP5_JMP32;
	t->sites[1].nr_targets = VMPOKE_SITE_MAX_TARGETS + 1;	/* ... targets ... */
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EINVAL);
	t->sites[1].nr_targets = 1;
	t->sites[1].len = VMPOKE_SITE_MAX_LEN + 1;		/* ... length */
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EINVAL);
	t->sites[1].len = 5;
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), 0);
}

static void test_sites_outside_ram(void)
{
	struct vmpoke_site_table *t;
	struct sym s;
	char msg[256];

	ram_setup();
	s = sites_plant();
	t = sites_at();
	/* A site whose bytes end past RAM. */
	t->sites[1].addr = BEYOND_RAM_GVA - 2;
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EFAULT);
	EXPECT_STR_HAS(msg, "[1]: site");
	t->sites[1].addr = UNMAPPED_GVA;
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EFAULT);
	t->sites[1].addr = CODE_GVA + 0x40;
	/* A target outside RAM. */
	t->sites[0].target[0] = BEYOND_RAM_GVA;
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EFAULT);
	EXPECT_STR_HAS(msg, "target[0]");
	t->sites[0].target[0] = CODE_GVA + 0x100;
	/* The table itself where nothing is mapped. */
	s.addr = UNMAPPED_GVA;
	EXPECT_EQ(sites_read(&s, msg, sizeof(msg)), -EFAULT);
	free(ram.host);
	ram.host = NULL;
}

TEST_SUITE(guest_tables, "guest_tables", false,
	   TEST(test_tasks_valid), TEST(test_tasks_corrupt), TEST(test_tasks_entry_corrupt),
	   TEST(test_task_read_small_stack), TEST(test_tasks_outside_ram),
	   TEST(test_percpu), TEST(test_cpl0_frames_nested), TEST(test_sites), TEST(test_sites_outside_ram))
