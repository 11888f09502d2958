/* SPDX-License-Identifier: MIT */
/*
 * torture.h - the torture engine (torture.c) that `vmpoke torture` drives,
 * and the pieces of it and of `vmpoke bench poke` that do not need a
 * running VM: reading and checking the guest's vmpoke_sites table and
 * building the byte variants each site toggles between.
 */
#ifndef VMPOKE_TORTURE_H
#define VMPOKE_TORTURE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "patcher.h"
#include "vmm.h"
#include "vmpoke_abi.h"

struct symtab;

#define TORTURE_MAX_VARIANTS	5

/* --kinds bits: 1 << enum vmpoke_site_kind */
#define TORTURE_KINDS_ALL	((1u << VMPOKE_SITE_NOP5_JMP32) | \
				 (1u << VMPOKE_SITE_NOP2_JMP8) | \
				 (1u << VMPOKE_SITE_CALL32) | \
				 (1u << VMPOKE_SITE_JCC32) | \
				 (1u << VMPOKE_SITE_MULTI))

/*
 * --kinds jump_label: flip the image's static keys (jump_label.h), each
 * flip a batch over every site of one random key, beside (or instead of)
 * the vmpoke_sites kinds.  Not in TORTURE_KINDS_ALL: the default run stays
 * the site kinds.
 */
#define TORTURE_KIND_JUMP_LABEL	16
#define TORTURE_KINDS_KEYS	(1u << TORTURE_KIND_JUMP_LABEL)
/* --kinds static_call: retarget a random static call (or to NULL) per round. */
#define TORTURE_KIND_STATIC_CALL	17
#define TORTURE_KINDS_CALLS	(1u << TORTURE_KIND_STATIC_CALL)

/*
 * --kinds probe: place and remove INT3 probes on every instruction of the
 * lib_* functions, with and without a counting handler (torture_probe.c).
 */
#define TORTURE_KIND_PROBE	19
#define TORTURE_KINDS_PROBES	(1u << TORTURE_KIND_PROBE)
/*
 * --kinds optprobe: the same points, placed as kind AUTO (optimized where
 * the site allows), and live ones also unoptimized and optimized again.
 */
#define TORTURE_KIND_OPTPROBE	20
#define TORTURE_KINDS_OPTPROBES	(1u << TORTURE_KIND_OPTPROBE)

struct torture_probe_report {
	uint64_t placed, removed;	/* probe_add()s that succeeded; probe_remove()s */
	uint64_t hits, missed;		/* summed over every probe placed */
	uint64_t handler_calls;		/* of the counting handler */
	uint64_t refused;		/* points refused by name, once each */
	uint64_t optimized, unoptimized; /* optprobe: switches that succeeded */
	uint64_t opt_refused;		/* optprobe: placed or left INT3, by a named rule */
	unsigned int points;		/* instruction starts in the lib_* functions */
	unsigned int failures;		/* broken promises (torture_probe.c) */
};

struct torture_probes;
/* Read the lib_* functions and their instructions; NULL after an error message. */
struct torture_probes *torture_probes_new(struct patcher *p, struct vm *vm, bool optimize);
/* One round: toggle a random point.  0, or -1 on a host error. */
int torture_probes_step(struct torture_probes *tp, uint64_t *rng);
/* Probes placed so far. */
uint64_t torture_probes_placed(const struct torture_probes *tp);
/*
 * Remove every live probe (while the guest runs), then check what the run
 * promised; *r filled either way.  0, or -1 if a removal failed.
 */
int torture_probes_finish(struct torture_probes *tp, bool guest_alive,
			  struct torture_probe_report *r);
void torture_probes_free(struct torture_probes *tp);
/*
 * --kinds livepatch: enable and disable livepatches of the guest's lp_*
 * functions (torture_livepatch.c), reversing some mid-transition; boots
 * the livepatch scenario (TORTURE plus the sleeper).
 */
#define TORTURE_KIND_LIVEPATCH	18
#define TORTURE_KINDS_LP	(1u << TORTURE_KIND_LIVEPATCH)

struct torture_site {
	struct vmpoke_site_desc desc;
	unsigned int nr_variants;
	uint8_t variant[TORTURE_MAX_VARIANTS][POKE_MAX_LEN];
	unsigned int cur;		/* index of the bytes the guest has now */
};

/* "nop5,call" -> mask; 0 and a message naming the bad word on error. */
unsigned int torture_parse_kinds(const char *list, char *msg, size_t msglen);
/* "no-int3" -> POKE_INJECT_NO_INT3 ...; -1 if unknown. */
int torture_parse_inject(const char *name);
const char *torture_inject_name(enum poke_inject inj);
const char *torture_kind_name(uint32_t kind);

/*
 * Check every descriptor of a table vmm_sites_read() accepted against the
 * image's symbols: each site and each target must lie inside a function
 * symbol, the site wholly inside one, with its kind's length, and no two
 * sites overlap.  Returns 0 or -1 with msg naming the first bad entry.
 */
int torture_table_check(const struct vmpoke_site_table *t,
			const struct symtab *st, char *msg, size_t msglen);

/*
 * Build the variants of one site from its descriptor and the bytes the
 * guest has there now (desc->len of them).  0, or -1 with msg.
 */
int torture_site_build(struct torture_site *ts,
		       const struct vmpoke_site_desc *d, const uint8_t *orig,
		       char *msg, size_t msglen);

/* Encoders: rel32/rel8 relative to the end of the instruction. */
bool torture_rel32(uint64_t from_end, uint64_t to, int32_t *rel);
void torture_put_le32(uint8_t *buf, int32_t rel);

/* One torture run: the guest to boot and how to patch it. */
struct torture_opts {
	struct vm_config cfg;
	double seconds;			/* patch for this long */
	/*
	 * Then go on, at most TORTURE_MIN_EVENTS_S more, until every kind
	 * selected has made this many of its events (patches, key flips,
	 * call updates, probes placed, livepatch transitions): a slow host
	 * (a nested guest under TCG) must not make a test's run empty.
	 */
	unsigned int min_events;
	unsigned int kinds;		/* TORTURE_KINDS_ALL or a subset */
	bool hotplug;			/* offline/online vCPUs meanwhile */
	bool json;			/* the command's report format */
	void (*progress)(const char *line);	/* about every second; may be NULL */
	enum poke_inject inject;
	/* Set (by a signal handler) to end the patch loop early; may be NULL. */
	const volatile sig_atomic_t *interrupted;
};

#define TORTURE_MIN_EVENTS_S	60

/* What a run that reached the patch loop saw. */
struct torture_report {
	struct poke_stats st;
	uint64_t patches, batches, hotplug_cycles;
	uint64_t key_flips;		/* jump_label: keys flipped */
	uint64_t call_updates;		/* static_call: calls retargeted */
	struct torture_probe_report probes;	/* probe */
	struct torture_lp_stats {	/* livepatch */
		uint64_t transitions;	/* completed, either way */
		uint64_t reversals;	/* reversed mid-transition */
		uint64_t retries, switches;
		uint64_t stragglers;	/* retries that found a task sleeping in a body */
		uint64_t planted;	/* transitions begun with the sleeper inside */
	} lp;
	uint64_t guest_faults;		/* 0 or 1: a fault ends the run */
	uint64_t check_failures;
	unsigned int nr_sites;
	unsigned int refused;		/* transitions the engine refused */
	double elapsed;			/* seconds in the patch loop */
	double first_detection;		/* seconds; < 0: nothing detected */
	bool detected;			/* a guest fault, check failure or foreign trap */
	bool host_error;
	enum vmm_trap_path trap_path;	/* the one the VM used */
};

/*
 * Boot o->cfg, wait for READY on every vCPU, patch for o->seconds.
 * 0 with *r filled once the patch loop ran (its verdict is in *r), else
 * the exit code (enum vmpoke_exit) of what stopped it before, with the
 * message printed.
 */
int torture_run(const struct torture_opts *o, struct torture_report *r);

/*
 * The livepatch kind (torture_livepatch.c).  new: NULL and a message if the
 * image has no livepatch targets.  round: begin, retry or reverse one
 * transition; 0, or -1 with the message printed.
 */
struct torture_lp;
struct torture_lp *torture_lp_new(struct patcher *p, struct vm *vm, const char *image,
				  enum poke_inject inject);
int torture_lp_round(struct torture_lp *t, uint64_t *rng);
void torture_lp_stats(const struct torture_lp *t, struct torture_lp_stats *out);
void torture_lp_free(struct torture_lp *t);

/* xorshift64*: seeded, reproducible, cheap. */
static inline uint64_t torture_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

#endif /* VMPOKE_TORTURE_H */
