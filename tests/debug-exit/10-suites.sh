# The trap, patch and torture suites on trap path (a): the same suites
# `make check-run` runs on the host's own path (the doorbell on kvm_pvm).
exec "${VMPOKE_TESTS:-build/vmpoke-tests}" ${VMPOKE_JUNIT:+--junit "$VMPOKE_JUNIT"} \
	"${SUITE:-vmm_traps,patch,torture}"
