# SPDX-License-Identifier: MIT
# image-build/inspect: fluid-inspect, the static program the host pushes into
# an inspector VM to compute a trusted diff (docs/diff.md), with its unit
# tests and fuzzer. Host side: appliance/diff.c.

INSPECT_DIR := image-build/inspect
INSPECT_LIB_SRCS := $(INSPECT_DIR)/inspect-lib.c common/sha256.c
CPPFLAGS += -I$(INSPECT_DIR)
INSPECT_CMOCKA := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

# Static: it runs in whatever the template image has (busybox or Debian).
$(B)/fluid-inspect: $(B)/obj/$(INSPECT_DIR)/fluid-inspect.o $(INSPECT_LIB_SRCS:%.c=$(B)/obj/%.o)
	@mkdir -p $(@D)
	$(CC) -static -o $@ $^

BINS += $(B)/fluid-inspect

# Unit tests of the pure parts (ASan/UBSan).
INSPECT_UNIT := $(filter-out test-inspect-host,$(notdir $(basename $(wildcard tests/unit/test-inspect*.c))))
$(INSPECT_UNIT:%=$(B)/tests/unit/%): $(B)/tests/unit/test-inspect%: \
		$(B)/asan/tests/unit/test-inspect%.o $(INSPECT_LIB_SRCS:%.c=$(B)/asan/%.o)
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(INSPECT_CMOCKA) $(shell pkg-config --libs json-c 2>/dev/null || echo -ljson-c)
UNIT_TESTS += $(INSPECT_UNIT:%=$(B)/tests/unit/%)

# The host half (appliance/diff.c) against a fake engine that runs the real
# fluid-inspect on local trees or lies.
$(B)/tests/unit/test-inspect-host: $(B)/asan/tests/unit/test-inspect-host.o \
		$(B)/asan/appliance/diff.o $(B)/asan/common/fsutil.o | $(B)/fluid-inspect
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(INSPECT_CMOCKA) $(shell pkg-config --libs json-c 2>/dev/null || echo -ljson-c) -lpthread
UNIT_TESTS += $(if $(wildcard tests/unit/test-inspect-host.c),$(B)/tests/unit/test-inspect-host)

# Fuzzer for the dpkg/passwd/group/shadow parsers, the line diff and the globs.
INSPECT_FUZZ := $(notdir $(basename $(wildcard tests/fuzz/fuzz-inspect*.c)))
$(INSPECT_FUZZ:%=$(B)/tests/fuzz/%): $(B)/tests/fuzz/fuzz-inspect%: \
		$(B)/fuzz/tests/fuzz/fuzz-inspect%.o $(INSPECT_LIB_SRCS:%.c=$(B)/fuzz/%.o)
	@mkdir -p $(@D)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^
FUZZERS += $(INSPECT_FUZZ:%=$(B)/tests/fuzz/%)

# The host half (appliance/diff.c) driven through the engine library against
# real QEMU (tiny, and debian-12 when built).
$(B)/tests/integration/test-diff: $(B)/obj/tests/integration/test-diff.o $(B)/obj/appliance/diff.o \
		$(ENGINE_DEPS) | $(B)/fluid-inspect
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(ENGINE_LIBS) -lcmocka
INTEG_TESTS += $(if $(wildcard tests/integration/test-diff.c),$(B)/tests/integration/test-diff)

# Benchmark `diff` (bench/benchmarks): ~200 changed files between two snapshots.
$(B)/bench/bench-diff: $(B)/obj/bench/bench-diff.o $(B)/obj/appliance/diff.o $(BENCHLIB_OBJ) \
		$(ENGINE_DEPS) | $(B)/fluid-inspect
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(filter %.o,$^) $(ENGINE_LIBS) -lm
BENCHES += $(B)/bench/bench-diff
