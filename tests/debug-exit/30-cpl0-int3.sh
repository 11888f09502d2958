# CPL0 breakpoints on trap path (a): sc_tick's site in the timer's callee
# hit at CPL0 during each update (a #BP nested under the timer's frame,
# vmpoke_abi.h "CPL0 frames"), with VMPOKE_CPL0_PATCH=breakpoint.
exec "${VMPOKE_TESTS:-build/vmpoke-tests}" ${VMPOKE_JUNIT:+--junit "$VMPOKE_JUNIT"} \
	static_call_breakpoint_kvm
