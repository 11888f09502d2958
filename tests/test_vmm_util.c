// SPDX-License-Identifier: MIT
/*
 * test_vmm_util.c - see test_vmm_util.h.
 */
#include <string.h>
#include <time.h>

#include "testlib.h"
#include "patcher.h"
#include "test_vmm_util.h"
#include "../vmm/vmm_internal.h"

void vmt_config(struct vm_config *cfg, unsigned int vcpus,
		enum vmpoke_scenario scn, uint64_t iterations)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->image = testlib_image();
	cfg->nr_vcpus = vcpus;
	cfg->mem_mib = 64;
	cfg->tasks = 2;
	cfg->hz = 100;
	cfg->scenario = scn;
	cfg->iterations = iterations;
	cfg->seed = 1;
	cfg->trap_path = VMM_TRAP_AUTO;
	cfg->quiet = true;
}

struct vm *vmt_boot(const struct vm_config *cfg)
{
	int code = -1;
	struct vm *vm = vmm_create(cfg, &code);

	EXPECT_TRUE_MSG(vm != NULL, "vmm_create(%s) failed, exit code %d",
			cfg->image, code);
	if (!vm)
		return NULL;
	EXPECT_EQ_U64(0, code);
	if (vmm_start(vm)) {
		CU_FAIL("vmm_start");
		vmm_destroy(vm);
		return NULL;
	}
	return vm;
}

bool vmt_wait_ready(struct vm *vm)
{
	int r = vmm_wait_hcall(vm, VMPOKE_HC_READY, vmm_nr_vcpus(vm), VMT_WAIT_MS);

	EXPECT_TRUE_MSG(r == 0, "READY from %u vCPUs: %d (seen %llu)",
			vmm_nr_vcpus(vm), r,
			(unsigned long long)vmm_hcall_count(vm, VMPOKE_HC_READY));
	return r == 0;
}

bool vmt_read_tasks(struct vm *vm, struct vmpoke_task_table *tab)
{
	char msg[256];
	int r = vmm_tasks_read(vm, tab, msg, sizeof(msg));

	EXPECT_TRUE_MSG(r == 0, "%s", msg);
	return r == 0;
}

void vmt_finish(struct vm *vm)
{
	struct vmm_result res;

	if (!vm)
		return;
	vmm_stop(vm);
	vmm_wait(vm, VMT_WAIT_MS, &res);
	vmm_destroy(vm);
}

bool vmt_boot_patchable(unsigned int vcpus, struct vm **vm, struct patcher **p)
{
	*p = NULL;
	*vm = vmt_boot_ready(vcpus, VMPOKE_SCN_HOT);
	if (!*vm)
		return false;
	vmm_set_check_fail_fatal(*vm, false);
	*p = patcher_create(*vm, NULL);
	EXPECT_NOT_NULL(*p);
	return *p != NULL;
}

struct vm *vmt_boot_ready(unsigned int vcpus, enum vmpoke_scenario scn)
{
	struct vm_config cfg;
	struct vm *vm;

	if (!testlib_require_kvm())
		return NULL;
	vmt_config(&cfg, vcpus, scn, 0);
	vm = vmt_boot(&cfg);
	if (vm && scn == VMPOKE_SCN_PING) {
		int r = vmm_wait_hcall(vm, VMPOKE_HC_NOP, 2 * vcpus, VMT_WAIT_MS);

		EXPECT_TRUE_MSG(r == 0, "PING: no NOP hypercalls (%d)", r);
		if (r == 0)
			return vm;
		vmt_finish(vm);
		return NULL;
	}
	if (vm && !vmt_wait_ready(vm)) {
		vmt_finish(vm);
		return NULL;
	}
	return vm;
}

const char *vmt_cpl0_int3_unavailable(void)
{
	enum vmm_trap_path path = kvm_probe_int3_exit() ? VMM_TRAP_DEBUG_EXIT :
			     VMM_TRAP_DOORBELL;

	return vmm_cpl0_int3_trappable(path) ? NULL :
	       "this host cannot trap a CPL0 INT3 (vmpoke doctor: cpl0 int3: no; kvm_pvm "
	       "ends the guest on one), so CPL0 breakpoints cannot be tested here: "
	       "make check runs this suite under the nested KVM";
}

static enum vmm_trap_verdict vmt_held_hook(struct vmm_trap *t, void *opaque)
{
	struct vmt_held *h = opaque;
	struct timespec ts;

	if (t->vcpu != 1)
		return VMM_TRAP_FOREIGN;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 60;	/* bounded: a broken test must not hang */
	pthread_mutex_lock(&h->lock);
	if (!h->held && h->on_hold)
		h->on_hold_ret = h->on_hold(t->vm);
	h->held = true;
	pthread_cond_broadcast(&h->cond);
	while (!h->release && pthread_cond_timedwait(&h->cond, &h->lock, &ts) == 0)
		;
	pthread_mutex_unlock(&h->lock);
	return VMM_TRAP_FOREIGN;
}

struct vm *vmt_boot_held(struct vmt_held *h)
{
	struct vm_config cfg;
	struct timespec ts;
	struct vm *vm;
	int code;
	bool held;

	if (!testlib_require_kvm())
		return NULL;
	vmt_config(&cfg, 2, VMPOKE_SCN_INT3, 0);
	vm = vmm_create(&cfg, &code);
	EXPECT_TRUE_MSG(vm != NULL, "vmm_create(%s) failed: exit %d", cfg.image, code);
	if (!vm)
		return NULL;
	vmm_set_trap_hook(vm, vmt_held_hook, h);
	if (vmm_start(vm)) {
		EXPECT_TRUE_MSG(false, "vmm_start failed");
		vmm_destroy(vm);
		return NULL;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += VMT_WAIT_MS / 1000;
	pthread_mutex_lock(&h->lock);
	while (!h->held && pthread_cond_timedwait(&h->cond, &h->lock, &ts) == 0)
		;
	held = h->held;
	pthread_mutex_unlock(&h->lock);
	EXPECT_TRUE_MSG(held, "vcpu 1 never trapped in scenario INT3");
	if (!held) {
		vmt_release_held(h);
		vmt_finish(vm);
		return NULL;
	}
	return vm;
}

void vmt_release_held(struct vmt_held *h)
{
	pthread_mutex_lock(&h->lock);
	h->release = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}
