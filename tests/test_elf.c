// SPDX-License-Identifier: MIT
/*
 * test_elf.c - elf_load on a tiny ELF built here with the system gcc, and
 * on bad images made from it by patching bytes.
 *
 * test_elf_build() is also used by test_symtab.c, so neither test
 * depends on the guest kernel being built.
 */
#include <elf.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elf_load.h"
#include "testlib.h"

#define TINY_BASE	0x100000ull
#define TINY_RAM	(8ull << 20)

/*
 * A sized function with a local label inside it, a zero-size global label
 * outside any function, data, rodata and bss: every case the symbol table
 * must tell apart.
 */
static const char tiny_src[] =
	"int tiny_bss[64];\n"
	"int tiny_data = 3;\n"
	"const int tiny_ro = 5;\n"
	"__attribute__((noinline, used)) static int tiny_helper(int x) { return x * 3 + 1; }\n"
	"__asm__(\".text\\n.globl tiny_lone\\ntiny_lone: ret\\n\");\n"
	"void _start(void)\n"
	"{\n"
	"	__asm__ volatile(\"tiny_inner: nop\");\n"
	"	for (;;)\n"
	"		tiny_bss[0] = tiny_helper(tiny_bss[0] + tiny_data + tiny_ro);\n"
	"}\n";

/* Build the tiny image into a fresh temp dir; 0 or -1 (message printed). */
int test_elf_build(char *dir, size_t dirlen, char *path, size_t pathlen);

int test_elf_build(char *dir, size_t dirlen, char *path, size_t pathlen)
{
	char src[512], cmd[2048], *out = NULL;
	FILE *f;
	int st;

	snprintf(dir, dirlen, "/tmp/vmpoke-test-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(src, sizeof(src), "%s/tiny.c", dir);
	snprintf(path, pathlen, "%s/tiny.elf", dir);
	f = fopen(src, "w");
	if (!f)
		return -1;
	fputs(tiny_src, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "${CC:-gcc} -O1 -fno-pic -fno-pie -no-pie -static -nostdlib "
		 "-fno-asynchronous-unwind-tables -fcf-protection=none "
		 "-Wl,-Ttext-segment=0x%llx -Wl,-z,max-page-size=4096 "
		 "-Wl,--build-id=none -o %s %s",
		 (unsigned long long)TINY_BASE, path, src);
	st = testlib_run(cmd, &out);
	if (st)
		fprintf(stderr, "\n  cannot build the test ELF (%s):\n%s\n", cmd, out);
	free(out);
	return st ? -1 : 0;
}

void test_elf_cleanup(const char *dir);

void test_elf_cleanup(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	testlib_run(cmd, NULL);
}

static char tdir[128], tgood[256];
static Elf64_Ehdr ghdr;

static int elf_fixture(void)
{
	FILE *f;
	size_t n;

	if (tgood[0])
		return 0;
	if (test_elf_build(tdir, sizeof(tdir), tgood, sizeof(tgood)))
		return -1;
	f = fopen(tgood, "rb");
	if (!f)
		return -1;
	n = fread(&ghdr, 1, sizeof(ghdr), f);
	fclose(f);
	return n == sizeof(ghdr) ? 0 : -1;
}

/*
 * Write dir/name: the image at good, modified by fn (may be NULL), cut to
 * len bytes (0 = whole).  Used by test_cli_bad.c too.  0 or -1.
 */
int test_elf_variant(const char *good, const char *dir, const char *name,
		     void (*fn)(unsigned char *b), size_t len, char *path, size_t pathlen);

int test_elf_variant(const char *good, const char *dir, const char *name,
		     void (*fn)(unsigned char *b), size_t len, char *path, size_t pathlen)
{
	unsigned char *b = NULL;
	size_t n = 0;
	long sz;
	FILE *f = fopen(good, "rb");

	if (!f)
		return -1;
	if (!fseek(f, 0, SEEK_END) && (sz = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) &&
	    (b = malloc(sz)))
		n = fread(b, 1, sz, f);
	fclose(f);
	if (!b || n != (size_t)sz) {
		free(b);
		return -1;
	}
	if (fn)
		fn(b);
	snprintf(path, pathlen, "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f) {
		fwrite(b, 1, len && len < n ? len : n, f);
		fclose(f);
	}
	free(b);
	return f ? 0 : -1;
}

/* Write a variant of the good image and try to load it. */
static int load_variant(const char *name, size_t len,
			void (*fn)(unsigned char *b), char *err, size_t errlen)
{
	struct elf_image img;
	char path[300];
	int ret;

	EXPECT_EQ_FATAL(test_elf_variant(tgood, tdir, name, fn, len, path,
					       sizeof(path)), 0);
	ret = elf_load(path, NULL, TINY_RAM, TINY_BASE, &img, err, errlen);
	EXPECT_TRUE_MSG(strstr(err, path) != NULL, "error does not name %s: %s", path, err);
	return ret;
}

static Elf64_Ehdr *ehdr(unsigned char *b)
{
	return (Elf64_Ehdr *)b;
}

/* The first PT_LOAD program header. */
static Elf64_Phdr *first_load(unsigned char *b)
{
	Elf64_Phdr *ph = (Elf64_Phdr *)(b + ehdr(b)->e_phoff);

	for (int i = 0; i < ehdr(b)->e_phnum; i++)
		if (ph[i].p_type == PT_LOAD)
			return &ph[i];
	return NULL;
}

static void mk_text(unsigned char *b) { memcpy(b, "hello", 5); }
static void mk_elf32(unsigned char *b) { b[EI_CLASS] = ELFCLASS32; }
static void mk_arm(unsigned char *b) { ehdr(b)->e_machine = EM_AARCH64; }
static void mk_dyn(unsigned char *b) { ehdr(b)->e_type = ET_DYN; }
static void mk_entry(unsigned char *b) { ehdr(b)->e_entry = 0x50; }
static void mk_high(unsigned char *b) { first_load(b)->p_paddr = TINY_RAM - 0x10; }
static void mk_low(unsigned char *b) { first_load(b)->p_paddr = 0x1000; }
static void mk_wrap(unsigned char *b) { first_load(b)->p_memsz = UINT64_MAX - 0x1000; }
static void mk_off(unsigned char *b) { first_load(b)->p_offset = UINT64_MAX - 2; }

static void test_elf_good(void)
{
	struct elf_image img;
	char err[512] = "";
	uint8_t *ram;

	EXPECT_EQ_FATAL(elf_fixture(), 0);
	ram = malloc(TINY_RAM);
	memset(ram, 0xaa, TINY_RAM);
	EXPECT_TRUE_MSG(elf_load(tgood, ram, TINY_RAM, TINY_BASE, &img, err,
				 sizeof(err)) == 0, "%s", err);
	EXPECT_GE(img.nr_segments, 1);
	EXPECT_GE(img.lowest, TINY_BASE);
	EXPECT_GT(img.highest, img.lowest);
	EXPECT_LE(img.highest, TINY_RAM);
	EXPECT_GE(img.entry, img.lowest);
	EXPECT_LT(img.entry, img.highest);
	/* The ELF header itself is loaded at the base with the text segment. */
	EXPECT_EQ(memcmp(ram + img.lowest, ELFMAG, SELFMAG), 0);
	/* bss (the last 256 bytes below highest) is zeroed over the 0xaa fill. */
	for (uint64_t a = img.highest - 256; a < img.highest; a++)
		if (ram[a] != 0) {
			EXPECT_TRUE_MSG(false, "bss byte at 0x%llx is 0x%x",
					(unsigned long long)a, ram[a]);
			break;
		}
	EXPECT_EQ(ram[img.highest], 0xaa);
	free(ram);
}

static void test_elf_bad(void)
{
	char err[512];

	EXPECT_EQ_FATAL(elf_fixture(), 0);
	err[0] = 0;
	EXPECT_EQ(elf_load("/nonexistent/x.img", NULL, TINY_RAM, TINY_BASE,
				 NULL, err, sizeof(err)), -ENOENT);
	EXPECT_NOT_NULL(strstr(err, "/nonexistent/x.img"));

#define BAD(name, len, fn, needle) do {						\
	err[0] = 0;								\
	EXPECT_EQ(load_variant(name, len, fn, err, sizeof(err)), -EINVAL); \
	EXPECT_TRUE_MSG(strstr(err, needle) != NULL, "%s: want '%s' in: %s",	\
			name, needle, err);					\
} while (0)
	BAD("nonelf", 5, mk_text, "not an ELF");
	BAD("elf32", 0, mk_elf32, "ELF64");
	BAD("arm", 0, mk_arm, "x86-64");
	BAD("dyn", 0, mk_dyn, "ET_EXEC");
	BAD("entry", 0, mk_entry, "entry point");
	BAD("high", 0, mk_high, "outside guest RAM");
	BAD("low", 0, mk_low, "outside guest RAM");
	BAD("wrap", 0, mk_wrap, "outside guest RAM");
	BAD("offset", 0, mk_off, "truncated");
	BAD("trunc_hdr", 40, NULL, "");
	BAD("trunc_seg", ghdr.e_phoff + ghdr.e_phnum * sizeof(Elf64_Phdr),
	    NULL, "truncated");
#undef BAD
	/* RAM too small for the image: the same check the CLI's --mem uses. */
	err[0] = 0;
	EXPECT_EQ(elf_load(tgood, NULL, TINY_BASE + 0x100, TINY_BASE, NULL,
				 err, sizeof(err)), -EINVAL);
	EXPECT_NOT_NULL(strstr(err, "outside guest RAM"));
	test_elf_cleanup(tdir);
	tgood[0] = 0;
}

TEST_SUITE(elf, "elf_load", false,
	   TEST(test_elf_good),
	   TEST(test_elf_bad))
