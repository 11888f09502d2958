// SPDX-License-Identifier: MIT
/*
 * cmd_doctor.c - `vmpoke doctor`: can this host run vmpoke, and how.
 * Everything comes from vmm_probe_host(), which runs tiny probe VMs; this
 * file only explains the answers.
 */
#include <getopt.h>
#include <json.h>
#include <stdio.h>

#include "commands.h"
#include "cli.h"
#include "vmm.h"

static const char doctor_usage[] =
"Usage: vmpoke doctor [--json]\n"
"Check /dev/kvm, the KVM API version and capabilities, and measure which\n"
"trap paths work here and which one auto picks, whether single-step exits,\n"
"the exit round trip and the kick latency.\n"
"\n"
"  --json       print the findings as one JSON object\n"
CLI_TRAP_PATH_HELP
"  -h, --help   this text\n"
"\n"
"Exit: 0 KVM usable; 3 KVM unusable (with advice), or the trap path forced\n"
"with --trap-path or VMPOKE_TRAP_PATH is not available here.\n";

static const char doctor_advice[] =
"vmpoke needs a usable /dev/kvm:\n"
"  - load KVM: sudo modprobe kvm_intel (or kvm_amd);\n"
"  - enable virtualization (VT-x/AMD-V) in the firmware, or nested\n"
"    virtualization if this machine is itself a VM;\n"
"  - give your user access: sudo usermod -aG kvm $USER (then log in again).\n";

static const char *doctor_yes(bool b)
{
	return b ? "yes" : "no";
}

/*
 * The paths a run could take here: the doorbell needs only our guest's #BP
 * stub, so it exists wherever KVM does; debug-exit where the probe saw
 * KVM_EXIT_DEBUG for an int3.
 */
static const char *doctor_paths_text(const struct vmm_host_caps *c)
{
	return c->debug_exit_on_int3 ? "debug-exit, doorbell" : "doorbell";
}

static enum vmm_trap_path doctor_auto(const struct vmm_host_caps *c)
{
	return vmm_trap_path_auto(c->debug_exit_on_int3);
}

/* The path a run here takes: forced (VMPOKE_TRAP_PATH, --trap-path) or auto. */
static enum vmm_trap_path doctor_run_path(const struct vmm_host_caps *c, bool *forced)
{
	return vmm_trap_path_resolve(VMM_TRAP_AUTO, c->debug_exit_on_int3, forced);
}

static bool doctor_path_ok(const struct vmm_host_caps *c, enum vmm_trap_path p)
{
	return p != VMM_TRAP_DEBUG_EXIT || c->debug_exit_on_int3;
}

static void doctor_print(const struct vmm_host_caps *c)
{
	enum vmm_trap_path a = doctor_auto(c), run;
	bool forced;

	printf("/dev/kvm:           ok (API version %d)\n", c->api_version);
	printf("capabilities:       irqchip %s, immediate_exit %s, set_guest_debug %s,\n"
	       "                    user_memory %s, pit2 %s\n",
	       doctor_yes(c->cap_irqchip), doctor_yes(c->cap_immediate_exit), doctor_yes(c->cap_set_guest_debug),
	       doctor_yes(c->cap_user_memory), doctor_yes(c->cap_pit2));
	printf("trap paths:         %s (%s)\n", doctor_paths_text(c),
	       c->debug_exit_on_int3 ? "KVM_EXIT_DEBUG on a guest int3 works here" :
	       "no KVM_EXIT_DEBUG on a guest int3 here; the guest's #BP stub rings the VMM");
	printf("trap path auto:     %s (%s)\n", vmm_trap_path_name(a),
	       a == VMM_TRAP_DEBUG_EXIT ?
	       "one exit per trap, no guest stub; tested by make check-debug-exit" :
	       c->debug_exit_on_int3 ? "debug-exit is not yet the default" :
	       "the only path here");
	run = doctor_run_path(c, &forced);
	if (forced)
		printf("trap path forced:   %s (%s or --trap-path)%s\n",
		       vmm_trap_path_name(run), VMM_TRAP_PATH_ENV,
		       doctor_path_ok(c, run) ? "" : ": NOT AVAILABLE here, runs will fail");
	printf("cpl0 int3:          %s\n", c->cpl0_int3 ? "yes" :
	       "no (an INT3 in kernel code would end the guest here: CPL0 sites are "
	       "patched stop-the-world)");
	printf("single-step exits:  %s\n", doctor_yes(c->singlestep_exits));
	printf("exit round trip:    %.2f us (median, CPL0 out)\n", c->exit_roundtrip_us);
	printf("kick latency:       %.2f us (median, kick to KVM_RUN return)\n", c->kick_us);
	printf("core sync:          %s\n", c->sync_core ?
	       "membarrier SYNC_CORE (one IPI per patch phase)" :
	       "no (the kernel lacks membarrier SYNC_CORE: every sync is acknowledged)");
}

static struct json_object *doctor_json(const struct vmm_host_caps *c)
{
	struct json_object *j = json_object_new_object();
	struct json_object *caps = json_object_new_object();
	struct json_object *paths = json_object_new_array();
	enum vmm_trap_path run;
	bool forced;

	json_object_object_add(j, "kvm_ok", json_object_new_boolean(c->kvm_ok));
	json_object_object_add(j, "api_version", json_object_new_int(c->api_version));
	json_object_object_add(j, "problem", c->kvm_ok ? NULL :
			       json_object_new_string(c->problem));
	json_object_object_add(caps, "irqchip", json_object_new_boolean(c->cap_irqchip));
	json_object_object_add(caps, "immediate_exit",
			       json_object_new_boolean(c->cap_immediate_exit));
	json_object_object_add(caps, "set_guest_debug",
			       json_object_new_boolean(c->cap_set_guest_debug));
	json_object_object_add(caps, "user_memory", json_object_new_boolean(c->cap_user_memory));
	json_object_object_add(caps, "pit2", json_object_new_boolean(c->cap_pit2));
	json_object_object_add(j, "caps", caps);
	if (c->kvm_ok && c->debug_exit_on_int3)
		json_object_array_add(paths, json_object_new_string("debug-exit"));
	if (c->kvm_ok)
		json_object_array_add(paths, json_object_new_string("doorbell"));
	json_object_object_add(j, "trap_paths_available", paths);
	json_object_object_add(j, "trap_path_auto", json_object_new_string(
		vmm_trap_path_name(doctor_auto(c))));
	/* What a run here uses: the forced path, else auto's. */
	run = doctor_run_path(c, &forced);
	json_object_object_add(j, "trap_path", json_object_new_string(vmm_trap_path_name(run)));
	json_object_object_add(j, "trap_path_forced", json_object_new_boolean(forced));
	json_object_object_add(j, "debug_exit_on_int3",
			       json_object_new_boolean(c->debug_exit_on_int3));
	json_object_object_add(j, "cpl0_int3", json_object_new_boolean(c->cpl0_int3));
	json_object_object_add(j, "singlestep_exits", json_object_new_boolean(c->singlestep_exits));
	json_object_object_add(j, "exit_roundtrip_us", json_object_new_double(c->exit_roundtrip_us));
	json_object_object_add(j, "kick_us", json_object_new_double(c->kick_us));
	json_object_object_add(j, "sync_core", json_object_new_boolean(c->sync_core));
	return j;
}

int cmd_doctor(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmm_host_caps caps = { 0 };
	bool json = false, ok;
	int opt, ret;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		if (opt == 'j') {
			json = true;
		} else if (opt == 'h') {
			fputs(doctor_usage, stdout);
			return 0;
		} else {
			return cli_getopt_error("doctor", opt, argv);
		}
	}
	if (optind < argc)
		return cli_usage_error("doctor", "unexpected argument '%s'", argv[optind]);

	ok = vmm_probe_host(&caps) == 0 && caps.kvm_ok;
	if (json) {
		struct json_object *j = doctor_json(&caps);

		json_object_object_add(j, "kvm_ok", json_object_new_boolean(ok));
		ret = cli_json_write("doctor", "-", j);
		json_object_put(j);
		if (ret)
			return ret;
	} else if (ok) {
		doctor_print(&caps);
	}
	if (!ok) {
		fprintf(stderr, "vmpoke doctor: %s\n%s",
			caps.problem[0] ? caps.problem : "/dev/kvm is not usable", doctor_advice);
		return VMPOKE_EXIT_HOST;
	}
	{
		bool forced;
		enum vmm_trap_path run = doctor_run_path(&caps, &forced);

		if (!doctor_path_ok(&caps, run)) {
			fprintf(stderr, "vmpoke doctor: trap path %s is forced but not "
				"available here (no KVM_EXIT_DEBUG on a guest int3)\n",
				vmm_trap_path_name(run));
			return VMPOKE_EXIT_HOST;
		}
	}
	return 0;
}
