# tests/fuzz/fuzz.mk - libFuzzer targets (README.md, "Fuzzing"), included by
# the top-level Makefile.
#
#   make fuzz [FUZZ_SECONDS=N] [FUZZ_TARGETS="fuzz_elf ..."]
#                     build every target with clang + ASan + UBSan and run
#                     each for N seconds (or FUZZ_RUNS=M executions, if
#                     that comes first); non-zero exit on a crash
#   make fuzz-build   only build them, in build-fuzz/
#
# Only these targets need clang and its runtime: `make check` stays on gcc.

FUZZ_DEB_PKGS	:= clang libclang-rt-14-dev
FUZZ_CC		?= clang
FUZZ_BUILD	?= build-fuzz
FUZZ_SECONDS	?= 60
FUZZ_RUNS	?=
FUZZ_TARGETS	?= fuzz_elf fuzz_decode fuzz_guest_tables fuzz_campaign
FUZZ_SAN	:= -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS	:= -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -O1 -g \
		   -fno-omit-frame-pointer -Iinclude -DVMPOKE_VERSION='"$(VERSION)"' \
		   -DVMPOKE_DATADIR='"$(PREFIX)/share/vmpoke"' $(FUZZ_SAN)
FUZZ_SHARED	:= tests/fuzz/fuzz_util.c tests/fuzz/fuzz_relocate.c tests/fuzz/fuzz_region.c \
		   tests/campaign_fake.c
FUZZ_LIB_OBJS	:= $(LIB_SRCS:%.c=$(FUZZ_BUILD)/%.o) $(FUZZ_SHARED:%.c=$(FUZZ_BUILD)/%.o)

# The entry functions are CUnit-replayed in the normal build too.
$(filter $(BUILD)/tests/%,$(TEST_OBJS)): $(wildcard tests/fuzz/*.h)

.PHONY: fuzz fuzz-build fuzz-deps
fuzz-deps:
	@$(call deb_install,$(FUZZ_DEB_PKGS))

fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	@FUZZ_RUNS=$(FUZZ_RUNS) tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

# Keep the objects make would otherwise delete as intermediates.
.SECONDARY: $(FUZZ_LIB_OBJS) $(patsubst %,$(FUZZ_BUILD)/tests/fuzz/%.o,$(FUZZ_TARGETS))

# Library and entry objects: coverage-instrumented, not linked with libFuzzer.
$(FUZZ_BUILD)/%.o: %.c $(wildcard include/*.h patcher/*.h vmm/*.h tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(PKG_CFLAGS) -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/libfuzzer_main.c $(FUZZ_BUILD)/tests/fuzz/fuzz_%.o \
		$(FUZZ_LIB_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -DFUZZ_ENTRY=fuzz_$*_one \
		-Itests/fuzz -o $@ $^ $(PKG_LIBS) -llua5.4 $(LDLIBS)

# Seeds from the real guest (needs /dev/kvm for the tables): run after a
# change to the guest or to an input format, and commit what changed.
FUZZ_CORPUS	:= tests/fuzz/corpus
TINY_LDFLAGS	:= -nostdlib -static -no-pie -Wl,--build-id=none -Wl,-Ttext=0x100000
.PHONY: fuzz-seeds
fuzz-seeds: all $(BUILD)/mkseeds $(BUILD)/tests/fuzz/tiny.o
	@mkdir -p $(FUZZ_TARGETS:%=$(FUZZ_CORPUS)/%)
	$(BUILD)/mkseeds $(GUEST_IMG) $(FUZZ_CORPUS)
	strip --strip-debug -o $(FUZZ_CORPUS)/fuzz_elf/guest-nodebug.img $(GUEST_IMG)
	$(CC) $(TINY_LDFLAGS) -Wl,-z,max-page-size=4096 -o $(FUZZ_CORPUS)/fuzz_elf/tiny.img \
		$(BUILD)/tests/fuzz/tiny.o
	$(CC) $(TINY_LDFLAGS) -Wl,-n -Wl,--no-warn-rwx-segments \
		-o $(FUZZ_CORPUS)/fuzz_elf/tiny-nmagic.img $(BUILD)/tests/fuzz/tiny.o

# A named object, so the images do not carry a random temporary file name.
$(BUILD)/tests/fuzz/tiny.o: tests/fuzz/tiny.S
	@mkdir -p $(dir $@)
	$(CC) -c -o $@ $<

$(BUILD)/mkseeds: $(BUILD)/tests/fuzz/mkseeds.o $(BUILD)/libvmpoke.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) -llua5.4 $(LDLIBS)
