// SPDX-License-Identifier: MIT
/*
 * test_vmm_boot.c - booting the real guest: every vCPU and every task
 * makes progress and the run ends VMM_DONE; config errors; stop; timeout;
 * host probing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "testlib.h"
#include "test_vmm_util.h"

/* --- no KVM needed --------------------------------------------------------- */

static void expect_create_fails(const struct vm_config *cfg, int want)
{
	int code = -1;
	struct vm *vm = vmm_create(cfg, &code);

	EXPECT_TRUE_MSG(vm == NULL, "vmm_create accepted a bad config");
	if (vm)
		vmm_destroy(vm);
	EXPECT_EQ_U64(want, code);
}

static void test_config_rejects(void)
{
	struct vm_config cfg;

	vmt_config(&cfg, 0, VMPOKE_SCN_HOT, 1);
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
	vmt_config(&cfg, VMPOKE_MAX_VCPUS + 1, VMPOKE_SCN_HOT, 1);
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
	vmt_config(&cfg, 1, VMPOKE_SCN_HOT, 1);
	cfg.tasks = 0;
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
	vmt_config(&cfg, 1, VMPOKE_SCN_HOT, 1);
	cfg.tasks = VMPOKE_MAX_TASKS + 1;
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
	vmt_config(&cfg, 1, VMPOKE_SCN_MAX, 1);
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
	vmt_config(&cfg, 1, VMPOKE_SCN_HOT, 1);
	cfg.mem_mib = 1;
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
}

/* Without /dev/kvm a valid config fails with the host exit code, no crash. */
/* Guest console text cannot reach the terminal as escape sequences. */
static void test_sanitize_text(void)
{
	char s[] = "ok\x1b[2Jcls\ttab\nline\x7f\x80\x01";
	char cut[] = "ab\x1b\x1b";

	vmm_sanitize_text(s, sizeof(s));
	EXPECT_STREQ(s, "ok?[2Jcls\ttab\nline???");
	vmm_sanitize_text(cut, 3);	/* only within len */
	EXPECT_STREQ(cut, "ab?\x1b");
}

static void test_no_kvm_exit_code(void)
{
	struct vm_config cfg;
	struct vmm_host_caps caps;
	int r;

	r = vmm_probe_host(&caps);
	if (!testlib_kvm_problem()) {
		EXPECT_EQ_U64(0, r);
		EXPECT_TRUE(caps.kvm_ok);
		return;
	}
	EXPECT_LT(r, 0);
	EXPECT_FALSE(caps.kvm_ok);
	EXPECT_TRUE_MSG(strstr(caps.problem, "/dev/kvm") != NULL, "problem: %s",
			caps.problem);
	vmt_config(&cfg, 1, VMPOKE_SCN_HOT, 1);
	expect_create_fails(&cfg, VMPOKE_EXIT_HOST);
}

static void test_exit_codes(void)
{
	EXPECT_EQ_U64(VMPOKE_EXIT_OK, vmm_outcome_exit_code(VMM_DONE));
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(VMM_GUEST_FAULT));
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(VMM_GUEST_CHECK));
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(VMM_GUEST_SELFCHECK));
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(VMM_TRIPLE_FAULT));
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(VMM_INTERNAL_ERROR));
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(VMM_UNEXPECTED_EXIT));
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(VMM_TIMEOUT));
	EXPECT_EQ_U64(VMPOKE_EXIT_SIGNAL, vmm_outcome_exit_code(VMM_STOPPED));
	EXPECT_EQ_U64(VMPOKE_EXIT_HOST, vmm_outcome_exit_code(VMM_HOST_ERROR));
}

TEST_SUITE(vmm_config, "vmm_config", false,
	   TEST(test_config_rejects), TEST(test_sanitize_text), TEST(test_no_kvm_exit_code),
	   TEST(test_exit_codes))

/* --- real KVM ------------------------------------------------------------- */

static void boot_n(unsigned int n)
{
	struct vmpoke_task_table *tab;
	struct vm_config cfg;
	struct vmm_result res;
	enum vmm_outcome o;
	struct vm *vm;

	if (!testlib_require_kvm())
		return;
	vmt_config(&cfg, n, VMPOKE_SCN_HOT, 500);
	vm = vmt_boot(&cfg);
	if (!vm)
		return;
	o = vmm_wait(vm, VMT_WAIT_MS, &res);
	EXPECT_TRUE_MSG(o == VMM_DONE, "outcome %d: %s", o, res.message);
	EXPECT_EQ_U64(VMPOKE_EXIT_OK, vmm_outcome_exit_code(o));
	EXPECT_EQ_U64(n, vmm_hcall_count(vm, VMPOKE_HC_READY));
	EXPECT_EQ_U64(n, vmm_hcall_count(vm, VMPOKE_HC_DONE));
	EXPECT_EQ_U64(n * cfg.tasks, vmm_hcall_count(vm, VMPOKE_HC_TASK_DONE));
	tab = malloc(sizeof(*tab));
	EXPECT_NOT_NULL_FATAL(tab);
	if (vmt_read_tasks(vm, tab)) {
		for (unsigned int v = 0; v < n; v++) {
			struct vmm_vcpu_stats st;

			vmm_vcpu_stats(vm, v, &st);
			EXPECT_TRUE_MSG(st.hcalls >= 3, "vcpu %u: %llu hypercalls",
					v, (unsigned long long)st.hcalls);
			for (unsigned int t = 0; t < cfg.tasks; t++) {
				const struct vmpoke_task *tk =
					&tab->tasks[v * VMPOKE_MAX_TASKS + t];

				EXPECT_EQ_U64(v, tk->vcpu);
				EXPECT_EQ_U64(VMPOKE_TASK_DONE, tk->state);
				EXPECT_TRUE_MSG(tk->iterations >= cfg.iterations,
						"vcpu %u task %u: %llu iterations", v, t,
						(unsigned long long)tk->iterations);
			}
		}
	}
	free(tab);
	vmm_destroy(vm);
}

static void test_boot_1(void) { boot_n(1); }
static void test_boot_2(void) { boot_n(2); }
static void test_boot_4(void) { boot_n(4); }

static void test_mem_too_small(void)
{
	struct vm_config cfg;

	if (!testlib_require_kvm())
		return;
	vmt_config(&cfg, 1, VMPOKE_SCN_HOT, 1);
	cfg.mem_mib = 2;
	/* The image's stacks for 64 vCPUs do not fit in 1 MiB above 1 MiB. */
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
	cfg.mem_mib = 64;
	cfg.image = "/nonexistent/guest.img";
	expect_create_fails(&cfg, VMPOKE_EXIT_USAGE);
}

static void test_stop(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_IDLE);
	struct vmm_result res;
	enum vmm_outcome o;

	if (!vm)
		return;
	vmm_stop(vm);
	o = vmm_wait(vm, VMT_WAIT_MS, &res);
	EXPECT_TRUE_MSG(o == VMM_STOPPED, "outcome %d: %s", o, res.message);
	EXPECT_EQ_U64(VMPOKE_EXIT_SIGNAL, vmm_outcome_exit_code(o));
	vmm_destroy(vm);
}

/*
 * A run that ends while someone waits for a hypercall count it will never
 * reach wakes the waiter (-ESRCH) at once.  Before, only a hypercall woke
 * it, so a guest that faulted before its last READY held a campaign's boot
 * for the whole READY timeout, then reported a host error instead of the
 * fault.  The ud scenario's fault ends the run; 1000 READYs never come.
 */
static void test_wait_hcall_run_ends(void)
{
	struct vm_config cfg;
	struct vm *vm;
	int code;

	if (!testlib_require_kvm())
		return;
	vmt_config(&cfg, 2, VMPOKE_SCN_UD, 0);
	vm = vmm_create(&cfg, &code);
	EXPECT_NOT_NULL_FATAL(vm);
	EXPECT_EQ(0, vmm_start(vm));
	EXPECT_EQ(-ESRCH, vmm_wait_hcall(vm, VMPOKE_HC_READY, 1000, 60000));
	vmm_destroy(vm);
}

/* A timeout names every vCPU and where it is, and the run goes on. */
static void test_timeout(void)
{
	struct vm *vm = vmt_boot_ready(2, VMPOKE_SCN_IDLE);
	struct vmm_result res;
	enum vmm_outcome o;

	if (!vm)
		return;
	o = vmm_wait(vm, 300, &res);
	EXPECT_TRUE_MSG(o == VMM_TIMEOUT, "outcome %d: %s", o, res.message);
	EXPECT_TRUE_MSG(strstr(res.message, "vcpu 0 at ") &&
			strstr(res.message, "vcpu 1 at "), "message: %s", res.message);
	/* symbolized: "name+0x..." or "name (" rather than a bare address */
	EXPECT_TRUE_MSG(strstr(res.message, " (0x") != NULL, "message: %s",
			res.message);
	vmt_finish(vm);
}

static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, rss = 0;

	if (f) {
		if (fscanf(f, "%lu %lu", &size, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Resident bytes of guest RAM, which do not count against the VMM. */
static uint64_t guest_resident(struct vm *vm, uint64_t size)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = size / pg, res = 0;
	unsigned char *vec = malloc(n);
	void *ram = vmm_gpa_ptr(vm, 0, size);

	if (vec && ram && mincore(ram, size, vec) == 0)
		for (size_t i = 0; i < n; i++)
			res += vec[i] & 1;
	free(vec);
	return (uint64_t)res * pg;
}

/* The VMM's own memory beyond guest RAM stays under 16 MiB with 8 vCPUs. */
static void test_memory_8_vcpus(void)
{
	uint64_t before, after, ram;
	struct vm *vm;

	if (!testlib_require_kvm())
		return;
	before = rss_bytes();
	vm = vmt_boot_ready(8, VMPOKE_SCN_IDLE);
	if (!vm)
		return;
	after = rss_bytes();
	ram = guest_resident(vm, 64ull << 20);
	EXPECT_TRUE_MSG(after - ram < before + (16ull << 20),
			"rss %llu KiB before, %llu KiB after, guest RAM %llu KiB",
			(unsigned long long)before >> 10,
			(unsigned long long)after >> 10, (unsigned long long)ram >> 10);
	vmt_finish(vm);
}

static void test_probe(void)
{
	struct vmm_host_caps caps;
	long cmds;

	if (!testlib_require_kvm())
		return;
	EXPECT_EQ_U64(0, vmm_probe_host(&caps));
	EXPECT_TRUE(caps.kvm_ok);
	EXPECT_EQ_U64(12, caps.api_version);
	EXPECT_TRUE(caps.cap_irqchip);
	EXPECT_TRUE(caps.cap_immediate_exit);
	EXPECT_TRUE(caps.cap_user_memory);
	EXPECT_TRUE_MSG(caps.exit_roundtrip_us > 0, "round trip %f",
			caps.exit_roundtrip_us);
	EXPECT_TRUE_MSG(caps.kick_us > 0, "kick %f", caps.kick_us);
	/* The kernel's own answer: registered where it offers the command. */
	cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
	EXPECT_EQ(caps.sync_core, cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE));
}

TEST_SUITE(vmm_boot, "vmm_boot", true,
	   TEST(test_boot_1), TEST(test_boot_2), TEST(test_boot_4),
	   TEST(test_mem_too_small), TEST(test_stop), TEST(test_wait_hcall_run_ends), TEST(test_timeout),
	   TEST(test_memory_8_vcpus), TEST(test_probe))
