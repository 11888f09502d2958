# Re-injection of the guest's own int3s (KVM_GUESTDBG_INJECT_BP) while
# timer interrupts are pending.  Under kvm_amd this needs NRIPS: without
# it, Linux 6.1 loses a #BP whose injecting entry is cancelled (README,
# "Trap path (a)").  Hardware has NRIPS; the nested harness turns it on
# for this file only.
exec "${VMPOKE_TESTS:-build/vmpoke-tests}" ${VMPOKE_JUNIT:+--junit "$VMPOKE_JUNIT"} \
	int3_reinject
