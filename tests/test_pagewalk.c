// SPDX-License-Identifier: MIT
/*
 * test_pagewalk.c - the VMM's page-table walk on tables built in a buffer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pagewalk.h"
#include "testlib.h"

#define RAM_SIZE	(4ull << 20)	/* 4 MiB */
#define P		0x1ull
#define PS		0x80ull

/* Tables: PML4 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000. */
static struct guest_ram ram;

static void pte_set(uint64_t table, unsigned int idx, uint64_t val)
{
	memcpy(ram.host + table + 8 * idx, &val, 8);
}

static void ram_setup(void)
{
	free(ram.host);
	ram.size = RAM_SIZE;
	ram.host = calloc(1, RAM_SIZE);
	EXPECT_NOT_NULL_FATAL(ram.host);
	pte_set(0x1000, 0, 0x2000 | P | 2);
	pte_set(0x2000, 0, 0x3000 | P | 2);
	pte_set(0x3000, 0, 0x4000 | P | 2);
	/* 4K: VA 0x10000 -> PA 0x20000, VA 0x11000 -> PA 0x7000 (not contiguous). */
	pte_set(0x4000, 0x10, 0x20000 | P | 2);
	pte_set(0x4000, 0x11, 0x7000 | P | 2);
	/* VA 0x12000 maps, VA 0x13000 is not present. */
	pte_set(0x4000, 0x12, 0x8000 | P | 2);
	/* 2M: VA 0x200000 -> PA 0x200000 */
	pte_set(0x3000, 1, 0x200000 | P | PS | 2);
}

static void test_pagewalk_4k(void)
{
	uint64_t gpa = 0, psz = 0;

	ram_setup();
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x10123, &gpa, &psz), 0);
	EXPECT_EQ_U64(0x20123, gpa);
	EXPECT_EQ_U64(4096, psz);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x11fff, &gpa, &psz), 0);
	EXPECT_EQ_U64(0x7fff, gpa);
}

static void test_pagewalk_2m(void)
{
	uint64_t gpa = 0, psz = 0;

	ram_setup();
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x2abcde, &gpa, &psz), 0);
	EXPECT_EQ_U64(0x2abcde, gpa);
	EXPECT_EQ_U64(2ull << 20, psz);
}

static void test_pagewalk_1g(void)
{
	uint64_t gpa = 0, psz = 0;

	ram_setup();
	/* VA 1 GiB + x -> PA 0 + x: a 1 GiB page whose RAM is only 4 MiB. */
	pte_set(0x2000, 1, 0 | P | PS | 2);
	EXPECT_EQ(pt_walk(&ram, 0x1000, (1ull << 30) + 0x5008, &gpa, &psz), 0);
	EXPECT_EQ_U64(0x5008, gpa);
	EXPECT_EQ_U64(1ull << 30, psz);
	/* The part of the same page beyond RAM must fault. */
	EXPECT_EQ(pt_walk(&ram, 0x1000, (1ull << 30) + RAM_SIZE, &gpa, &psz), -EFAULT);
}

static void test_pagewalk_not_present(void)
{
	uint64_t gpa, psz;

	ram_setup();
	/* PT level */
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x13000, &gpa, &psz), -EFAULT);
	/* PD level */
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x400000, &gpa, &psz), -EFAULT);
	/* PDPT level */
	EXPECT_EQ(pt_walk(&ram, 0x1000, 2ull << 30, &gpa, &psz), -EFAULT);
	/* PML4 level */
	EXPECT_EQ(pt_walk(&ram, 0x1000, 1ull << 39, &gpa, &psz), -EFAULT);
	/* Clearing P on the PDE hides everything under it. */
	pte_set(0x3000, 0, 0x4000);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x10000, &gpa, &psz), -EFAULT);
}

static void test_pagewalk_noncanonical(void)
{
	uint64_t gpa, psz;

	ram_setup();
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x0000800000010000ull, &gpa, &psz), -EFAULT);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x8000000000010000ull, &gpa, &psz), -EFAULT);
}

static void test_pagewalk_hostile_tables(void)
{
	uint64_t gpa, psz;

	ram_setup();
	/* CR3 beyond RAM */
	EXPECT_EQ(pt_walk(&ram, 0x7fff000, 0x10000, &gpa, &psz), -EFAULT);
	/* PD pointer far outside RAM */
	pte_set(0x2000, 0, 0x000ffffffffff000ull | P);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x10000, &gpa, &psz), -EFAULT);
	ram_setup();
	/* The last table page in RAM is fine; a table one page past it is not. */
	pte_set(0x3000, 0, (RAM_SIZE - 0x1000) | P);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x10000, &gpa, &psz), -EFAULT);
	pte_set(RAM_SIZE - 0x1000, 0x10, 0x5000 | P);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x10000, &gpa, &psz), 0);
	EXPECT_EQ_U64(0x5000, gpa);
	pte_set(0x3000, 0, RAM_SIZE | P);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x10000, &gpa, &psz), -EFAULT);
	/* A leaf pointing outside RAM */
	ram_setup();
	pte_set(0x4000, 0x10, (RAM_SIZE + 0x1000) | P);
	EXPECT_EQ(pt_walk(&ram, 0x1000, 0x10000, &gpa, &psz), -EFAULT);
}

/*
 * Found by fuzz_guest_tables: with less than 8 bytes of RAM, "off >
 * size - 8" wrapped and an entry was read past the buffer.  Here the 8
 * bytes past a 3-byte RAM hold a present 1 GiB entry at every level, so
 * the old check walked to it and "translated".
 */
static void test_pagewalk_ram_smaller_than_entry(void)
{
	uint64_t buf[2] = { 0x83, 0 }, gpa = 0, psz = 0;
	struct guest_ram tiny = { (uint8_t *)buf, 3 };

	EXPECT_EQ(pt_walk(&tiny, 0, 0, &gpa, &psz), -EFAULT);
	tiny.size = 0;
	EXPECT_EQ(pt_walk(&tiny, 0, 0, &gpa, &psz), -EFAULT);
	tiny.size = 8;		/* one entry fits: a 1 GiB page at 0 */
	EXPECT_EQ(pt_walk(&tiny, 0, 0, &gpa, &psz), 0);
	EXPECT_EQ_U64(1ull << 30, psz);
}

static void test_pagewalk_cross_page_write(void)
{
	const char msg[] = "0123456789abcdef";
	char back[sizeof(msg)];

	ram_setup();
	/* 8 bytes at the end of VA page 0x10000, 9 at the start of 0x11000. */
	EXPECT_EQ(gva_write(&ram, 0x1000, 0x10ff8, msg, sizeof(msg)), 0);
	EXPECT_EQ(memcmp(ram.host + 0x20ff8, msg, 8), 0);
	EXPECT_EQ(memcmp(ram.host + 0x7000, msg + 8, sizeof(msg) - 8), 0);
	EXPECT_EQ(gva_read(&ram, 0x1000, 0x10ff8, back, sizeof(back)), 0);
	EXPECT_EQ(memcmp(back, msg, sizeof(msg)), 0);
}

static void test_pagewalk_fault_writes_nothing(void)
{
	uint8_t buf[32], zero[32] = { 0 };

	ram_setup();
	memset(buf, 0xcc, sizeof(buf));
	/* VA 0x12ff0..0x1300f: second page not present. */
	EXPECT_EQ(gva_write(&ram, 0x1000, 0x12ff0, buf, sizeof(buf)), -EFAULT);
	EXPECT_EQ(memcmp(ram.host + 0x8ff0, zero, 16), 0);
	EXPECT_EQ(gva_read(&ram, 0x1000, 0x12ff0, buf, sizeof(buf)), -EFAULT);
	/* Address-space wrap-around is a fault, not a wrap. */
	EXPECT_EQ(gva_read(&ram, 0x1000, UINT64_MAX - 3, buf, 8), -EFAULT);
	free(ram.host);
	ram.host = NULL;
}

/*
 * The rights the CPU would check for an emulated stack access: U/S and
 * R/W must be set at every level for CPL3, R/W for CPL0 only with CR0.WP.
 */
static void test_access_rights(void)
{
	ram_setup();
	pte_set(0x1000, 0, 0x2000 | P | 2 | 4);
	pte_set(0x2000, 0, 0x3000 | P | 2 | 4);
	pte_set(0x3000, 0, 0x4000 | P | 2 | 4);
	pte_set(0x4000, 0x10, 0x20000 | P | 2 | 4);	/* user, writable */
	pte_set(0x4000, 0x11, 0x7000 | P | 4);		/* user, read-only */
	pte_set(0x4000, 0x12, 0x8000 | P | 2);		/* supervisor */
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x10ff8, 8, true, true, false), 0);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x11ff8, 8, false, true, false), 0);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x11ff8, 8, true, true, false), -EACCES);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x11ff8, 8, true, false, false), 0);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x11ff8, 8, true, false, true), -EACCES);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x12000, 8, false, true, false), -EACCES);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x12000, 8, true, false, true), 0);
	/* Straddling into the read-only page, and into an unmapped one. */
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x10ffc, 8, true, true, false), -EACCES);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x12ffc, 8, false, false, false), -EFAULT);
	/* A level above the PTE without U/S: no user access at all. */
	pte_set(0x3000, 0, 0x4000 | P | 2);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x10ff8, 8, false, true, false), -EACCES);
}

/*
 * Found by fuzz_guest_tables: a large page whose frame starts in RAM but
 * runs past its end was "allowed" to its last byte, where gva_read()
 * (which stops at the end of RAM) faults.
 */
static void test_access_stops_at_end_of_ram(void)
{
	ram_setup();
	ram.size = 3ull << 20;	/* the 2 MiB page at 0x200000 now ends outside RAM */
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x2ffff0, 16, false, false, false), 0);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x2ffff8, 16, false, false, false), -EFAULT);
	EXPECT_EQ(gva_access_ok(&ram, 0x1000, 0x2ffff8, 16, true, false, false), -EFAULT);
	ram.size = RAM_SIZE;
}

TEST_SUITE(pagewalk, "pagewalk", false,
	   TEST(test_access_rights),
	   TEST(test_access_stops_at_end_of_ram),
	   TEST(test_pagewalk_4k),
	   TEST(test_pagewalk_2m),
	   TEST(test_pagewalk_1g),
	   TEST(test_pagewalk_not_present),
	   TEST(test_pagewalk_noncanonical),
	   TEST(test_pagewalk_hostile_tables),
	   TEST(test_pagewalk_ram_smaller_than_entry),
	   TEST(test_pagewalk_cross_page_write),
	   TEST(test_pagewalk_fault_writes_nothing))
