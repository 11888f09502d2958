// SPDX-License-Identifier: MIT
/*
 * test_cli_bad.c - the vmpoke binary end to end on bad input, --help and
 * syms: exit codes and that each message names the input.  No KVM: input
 * is checked before /dev/kvm is opened.
 */
#include <elf.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

int test_elf_build(char *dir, size_t dirlen, char *path, size_t pathlen);
void test_elf_cleanup(const char *dir);
int test_elf_variant(const char *good, const char *dir, const char *name,
		     void (*fn)(unsigned char *b), size_t len, char *path, size_t pathlen);

/* Run "vmpoke ARGS"; check the exit code and that each needle is in the output. */
static void expect_cli(int want, const char *args, const char *needle1, const char *needle2)
{
	char cmd[1024], *out = NULL;
	int rc;

	snprintf(cmd, sizeof(cmd), "%s %s", testlib_vmpoke(), args);
	rc = testlib_run(cmd, &out);
	EXPECT_TRUE_MSG(rc == want, "'%s' exited %d, want %d; output:\n%s", cmd, rc, want, out);
	if (needle1)
		EXPECT_TRUE_MSG(strstr(out, needle1) != NULL, "'%s': no '%s' in:\n%s", cmd,
				needle1, out);
	if (needle2)
		EXPECT_TRUE_MSG(strstr(out, needle2) != NULL, "'%s': no '%s' in:\n%s", cmd,
				needle2, out);
	EXPECT_TRUE_MSG(!strstr(out, "Sanitizer") && !strstr(out, "runtime error"),
			"'%s' crashed:\n%s", cmd, out);
	free(out);
}

static Elf64_Phdr *phdrs(unsigned char *b)
{
	return (Elf64_Phdr *)(b + ((Elf64_Ehdr *)b)->e_phoff);
}

static void mk_text(unsigned char *b) { memcpy(b, "#!/bin/sh\n", 10); }
static void mk_elf32(unsigned char *b) { b[EI_CLASS] = ELFCLASS32; }
static void mk_i386(unsigned char *b) { ((Elf64_Ehdr *)b)->e_machine = EM_386; }
static void mk_entry(unsigned char *b) { ((Elf64_Ehdr *)b)->e_entry = 0xdead0000; }

static void mk_outside(unsigned char *b)
{
	for (int i = 0; i < ((Elf64_Ehdr *)b)->e_phnum; i++)
		if (phdrs(b)[i].p_type == PT_LOAD) {
			phdrs(b)[i].p_paddr = 0x7ff00000;
			return;
		}
}

/* 16 MiB of extra bss on the last segment: too big for --mem 8. */
static void mk_bigbss(unsigned char *b)
{
	Elf64_Phdr *last = NULL;

	for (int i = 0; i < ((Elf64_Ehdr *)b)->e_phnum; i++)
		if (phdrs(b)[i].p_type == PT_LOAD)
			last = &phdrs(b)[i];
	last->p_memsz += 16u << 20;
}

static void test_cli_bad_images(void)
{
	static const struct {
		const char *name;
		void (*fn)(unsigned char *b);
		size_t len;
		const char *why;
	} bad[] = {
		{ "text.img", mk_text, 10, "not an ELF" },
		{ "elf32.img", mk_elf32, 0, "ELF64" },
		{ "i386.img", mk_i386, 0, "x86-64" },
		{ "trunc.img", NULL, 200, "truncated" },
		{ "outside.img", mk_outside, 0, "outside guest RAM" },
		{ "entry.img", mk_entry, 0, "entry point" },
	};
	char dir[128], good[256], path[300], args[600];

	EXPECT_EQ_FATAL(test_elf_build(dir, sizeof(dir), good, sizeof(good)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		EXPECT_EQ_FATAL(test_elf_variant(good, dir, bad[i].name, bad[i].fn,
						       bad[i].len, path, sizeof(path)), 0);
		snprintf(args, sizeof(args), "run %s", path);
		expect_cli(2, args, path, bad[i].why);
		snprintf(args, sizeof(args), "bench sync --rounds 5 %s", path);
		expect_cli(2, args, path, bad[i].why);
	}
	EXPECT_EQ_FATAL(test_elf_variant(good, dir, "bigbss.img", mk_bigbss, 0, path,
					       sizeof(path)), 0);
	snprintf(args, sizeof(args), "run %s --mem 8", path);
	expect_cli(2, args, path, "--mem");
	expect_cli(2, "run /nonexistent/guest.img", "/nonexistent/guest.img", NULL);
	expect_cli(2, "run /tmp", "/tmp", NULL);
	snprintf(args, sizeof(args), "run %s --json /nonexistent/dir/out.json", good);
	expect_cli(2, args, "/nonexistent/dir/out.json", NULL);
	test_elf_cleanup(dir);
}

static void test_cli_bad_args(void)
{
	expect_cli(2, "run x.img --vcpus 0", "--vcpus", "0");
	expect_cli(2, "run x.img --vcpus 65", "--vcpus", "65");
	expect_cli(2, "run x.img --vcpus two", "--vcpus", "two");
	expect_cli(2, "run x.img --mem lots", "--mem", "lots");
	expect_cli(2, "run x.img --iterations 10k", "--iterations", "10k");
	expect_cli(2, "run x.img --timeout -1", "--timeout", "-1");
	expect_cli(2, "run x.img --scenario warp", "--scenario", "warp");
	expect_cli(2, "run x.img --trap-path magic", "--trap-path", "magic");
	/* --trap-path is every command's, before or after the command name. */
	expect_cli(2, "syms x.img --trap-path int3", "--trap-path", "int3");
	expect_cli(2, "--trap-path=int3 doctor", "--trap-path", "int3");
	expect_cli(2, "torture x.img --trap-path", "--trap-path", "needs a value");
	expect_cli(2, "bench poke --trap-path=", "--trap-path", "unknown trap path");
	expect_cli(2, "run x.img --frobnicate", "--frobnicate", NULL);
	expect_cli(2, "run", "IMAGE", NULL);
	expect_cli(2, "bench sync --vcpus 1,,2", "--vcpus", "1,,2");
	expect_cli(2, "bench sync --rounds 0", "--rounds", NULL);
	expect_cli(2, "bench warp", "warp", NULL);
	expect_cli(2, "doctor extra", "extra", NULL);
	expect_cli(2, "syms", "IMAGE", NULL);
	expect_cli(2, "syms /nonexistent.img", "/nonexistent.img", NULL);
	expect_cli(2, "syms /etc/hostname", "/etc/hostname", "not an ELF");
	expect_cli(2, "warp", "warp", NULL);
	expect_cli(2, "", "Usage", NULL);
}

static void test_cli_help(void)
{
	expect_cli(0, "--help", "Usage: vmpoke COMMAND", NULL);
	expect_cli(0, "help", "Usage: vmpoke COMMAND", NULL);
	expect_cli(0, "--version", "vmpoke ", NULL);
	expect_cli(0, "run --help", "Usage: vmpoke run", "--timeout");
	expect_cli(0, "help run", "Usage: vmpoke run", NULL);
	expect_cli(0, "syms --help", "Usage: vmpoke syms", NULL);
	expect_cli(0, "doctor --help", "Usage: vmpoke doctor", NULL);
	expect_cli(0, "bench --help", "Usage: vmpoke bench", NULL);
	expect_cli(0, "bench sync --help", "Usage: vmpoke bench sync", "--rounds");
	expect_cli(0, "help bench sync", "Usage: vmpoke bench sync", NULL);
}

static void test_cli_syms(void)
{
	char dir[128], good[256], args[600], *out = NULL, cmd[700];

	EXPECT_EQ_FATAL(test_elf_build(dir, sizeof(dir), good, sizeof(good)), 0);
	snprintf(args, sizeof(args), "syms %s", good);
	expect_cli(0, args, " T _start", " B tiny_bss");
	/* GLOB keeps only matching names. */
	snprintf(cmd, sizeof(cmd), "%s syms %s 'tiny_h*'", testlib_vmpoke(), good);
	EXPECT_EQ(testlib_run(cmd, &out), 0);
	EXPECT_NOT_NULL(strstr(out, " t tiny_helper\n"));
	EXPECT_NULL(strstr(out, "_start"));
	free(out);
	test_elf_cleanup(dir);
}

TEST_SUITE(cli_bad, "cli_bad_input", false,
	   TEST(test_cli_bad_images),
	   TEST(test_cli_bad_args),
	   TEST(test_cli_help),
	   TEST(test_cli_syms))
