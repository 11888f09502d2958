/* SPDX-License-Identifier: MIT */
/*
 * campaign_fake.h - a campaign backend with no KVM (include/campaign.h):
 * 8 KiB of "guest" memory at 0x1000 holding three functions and a data
 * object, patches applied by memcpy, and probes whose hits ops->run()
 * delivers itself (each live probe gets `hits_per_run` hits per call, on
 * vCPU (n % vcpus), from the calling thread).  For the Lua API's unit tests
 * and the fuzz_campaign target.
 *
 * Refusals it makes, so scripts can test the refusal paths:
 *   - patch or probe outside the memory: "not mapped";
 *   - probe at FAKE_PROBE_REFUSED: reason "not_insn_boundary";
 *   - probe, patch or unpatch over a live probe's INT3: "live_site", and
 *     two sites of one batch that overlap, as the real engine refuses them;
 *   - livepatch of an old function that does not start with a NOP5 (lib_sum
 *     and lib_nop do): "unexpected op at ..."; as the engine, a function that
 *     replaces itself or is listed twice, a second transition while one
 *     runs, and a function another enabled patch replaces; a livepatch's
 *     transition takes two retries, with task 1 its straggler sleeping at
 *     old + 3 (the fake writes no entry: its memory does not show them);
 *   - static keys "fake_key" (off, sites 0x1800 and 0x1808) and
 *     "fake_key_on" (on, site 0x1818), and static call "fake_call"
 *     (trampoline 0x1880, site 0x1890, targets lib_add and lib_mul, now
 *     lib_add): a flip or update refuses "unexpected op at" when a site's
 *     bytes are not its state's, "live_site" under a probe, and a target
 *     that is not one "is not a target of".
 */
#ifndef VMPOKE_CAMPAIGN_FAKE_H
#define VMPOKE_CAMPAIGN_FAKE_H

#include "campaign.h"

#define FAKE_MEM_BASE		0x1000ull
#define FAKE_MEM_SIZE		0x2000ull
#define FAKE_PROBE_REFUSED	0x1001ull	/* lib_add+1 */

struct fake_be;

struct fake_be *fake_be_new(void);
/* After campaign_run(): did it boot, and are memory, keys and call as they were? */
bool fake_be_booted(const struct fake_be *f);
bool fake_be_pristine(const struct fake_be *f);
unsigned int fake_be_live_probes(const struct fake_be *f);
/* Livepatches still applied or in transition (a forced one cannot be undone). */
unsigned int fake_be_live_patches(const struct fake_be *f, bool forced_too);
void fake_be_set_hits_per_run(struct fake_be *f, unsigned int n);
/* Livepatches made from now on never finish a transition (but by force()). */
void fake_be_set_lp_stuck(struct fake_be *f, bool stuck);
/* Does not free: campaign_run() calls ops->destroy, which only marks it. */
void fake_be_free(struct fake_be *f);

extern const struct campaign_ops fake_ops;

#endif /* VMPOKE_CAMPAIGN_FAKE_H */
