// SPDX-License-Identifier: MIT
/*
 * test_vmm_faults.c - each failure scenario of the real guest ends the run
 * with the right outcome, vector, symbol in the message and exit code.
 */
#include <string.h>

#include "testlib.h"
#include "test_vmm_util.h"

static struct vm *fault_run(enum vmpoke_scenario scn, unsigned int vcpus,
			    struct vmm_result *res)
{
	struct vm_config cfg;
	struct vm *vm;

	memset(res, 0, sizeof(*res));
	if (!testlib_require_kvm())
		return NULL;
	vmt_config(&cfg, vcpus, scn, 0);
	vm = vmt_boot(&cfg);
	if (vm)
		vmm_wait(vm, VMT_WAIT_MS, res);
	return vm;
}

#define EXPECT_MSG_HAS(res, s)						\
	EXPECT_TRUE_MSG(strstr((res).message, (s)) != NULL,			\
			"message lacks \"%s\": %s", (s), (res).message)

static void test_fault_ud(void)
{
	struct vmm_result res;
	struct vm *vm = fault_run(VMPOKE_SCN_UD, 2, &res);

	if (!vm)
		return;
	EXPECT_EQ_U64(VMM_GUEST_FAULT, res.outcome);
	EXPECT_EQ_U64(6, res.fault.vector);
	EXPECT_EQ_U64(0, res.vcpu);
	EXPECT_EQ_U64(0, res.fault.task);
	EXPECT_MSG_HAS(res, "guest fault: vcpu 0 task 0: #UD at user_ud_crash");
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(res.outcome));
	vmm_destroy(vm);
}

static void test_fault_pf(void)
{
	struct vmm_result res;
	struct vm *vm = fault_run(VMPOKE_SCN_PF, 1, &res);

	if (!vm)
		return;
	EXPECT_EQ_U64(VMM_GUEST_FAULT, res.outcome);
	EXPECT_EQ_U64(14, res.fault.vector);
	EXPECT_EQ_U64(0x5000000000ull, res.fault.cr2);
	EXPECT_MSG_HAS(res, "#PF at user_pf_crash");
	EXPECT_MSG_HAS(res, "cr2 0x5000000000");
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(res.outcome));
	vmm_destroy(vm);
}

static void test_fault_triple(void)
{
	struct vmm_result res;
	struct vm *vm = fault_run(VMPOKE_SCN_TRIPLE, 2, &res);

	if (!vm)
		return;
	EXPECT_EQ_U64(VMM_TRIPLE_FAULT, res.outcome);
	EXPECT_EQ_U64(0, res.vcpu);
	/* Hardware KVM keeps RIP; AMD resets the vCPU and we say so. */
	EXPECT_TRUE_MSG(strstr(res.message, "triple fault: vcpu 0 at guest_triple_fault") ||
			strstr(res.message, "triple fault: vcpu 0 (registers reset"),
			"message: %s", res.message);
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(res.outcome));
	vmm_destroy(vm);
}

/*
 * A CPL0 fault whose own stack is unusable: without the IST fault stack this
 * is a triple fault with every register reset; with it, a #PF that names
 * the instruction and the broken RSP.
 */
static void test_fault_bad_kernel_stack(void)
{
	struct vmm_result res;
	struct vm *vm = fault_run(VMPOKE_SCN_BADSTACK, 1, &res);

	if (!vm)
		return;
	EXPECT_EQ_U64(VMM_GUEST_FAULT, res.outcome);
	EXPECT_EQ_U64(0, res.vcpu);
	EXPECT_MSG_HAS(res, "#PF at guest_bad_stack+0xa");
	EXPECT_MSG_HAS(res, "rsp 0x5000000000, cr2 0x4ffffffff8");
	EXPECT_EQ_U64(0x5000000000ull, res.fault.rsp);
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(res.outcome));
	vmm_destroy(vm);
}

/* KVM cannot emulate the guest's instruction: registers and code bytes. */
static void test_fault_internal_error(void)
{
	struct vmm_result res;
	struct vm *vm = fault_run(VMPOKE_SCN_EMUFAIL, 1, &res);

	if (!vm)
		return;
	EXPECT_EQ_U64(VMM_INTERNAL_ERROR, res.outcome);
	EXPECT_EQ_U64(0, res.vcpu);
	EXPECT_MSG_HAS(res, "internal error: vcpu 0");
	EXPECT_MSG_HAS(res, "guest_emulation_failure");
	EXPECT_MSG_HAS(res, "code ");
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(res.outcome));
	vmm_destroy(vm);
}

static void test_fault_selfcheck(void)
{
	struct vmm_result res;
	struct vm *vm = fault_run(VMPOKE_SCN_SELFCHECK, 1, &res);

	if (!vm)
		return;
	EXPECT_EQ_U64(VMM_GUEST_CHECK, res.outcome);
	EXPECT_EQ_U64(0, res.check.task);
	EXPECT_EQ_U64(1, res.check.actual);
	EXPECT_MSG_HAS(res, "guest check failed: vcpu 0 task 0: selfcheck at selfcheck_task");
	EXPECT_EQ_U64(VMPOKE_EXIT_GUEST, vmm_outcome_exit_code(res.outcome));
	vmm_destroy(vm);
}

/* Non-fatal check failures are counted and the run goes on. */
static void test_check_not_fatal(void)
{
	struct vm_config cfg;
	struct vmm_result res;
	struct vm *vm;
	int code;

	if (!testlib_require_kvm())
		return;
	vmt_config(&cfg, 1, VMPOKE_SCN_SELFCHECK, 0);
	vm = vmm_create(&cfg, &code);
	EXPECT_NOT_NULL_FATAL(vm);
	vmm_set_check_fail_fatal(vm, false);
	EXPECT_EQ(0, vmm_start(vm));
	EXPECT_EQ_U64(0, vmm_wait_hcall(vm, VMPOKE_HC_CHECK_FAIL, 1, VMT_WAIT_MS));
	EXPECT_EQ_U64(VMM_TIMEOUT, vmm_wait(vm, 100, &res));
	vmt_finish(vm);
}

TEST_SUITE(vmm_faults, "vmm_faults", true,
	   TEST(test_fault_ud), TEST(test_fault_pf), TEST(test_fault_triple),
	   TEST(test_fault_internal_error),
	   TEST(test_fault_bad_kernel_stack),
	   TEST(test_fault_selfcheck), TEST(test_check_not_fatal))
