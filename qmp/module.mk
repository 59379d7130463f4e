# SPDX-License-Identifier: MIT
# libqmp: QMP parser + client (plain and ASan builds) and its unit tests.

QMP_SRCS := qmp/parser.c qmp/client.c
QMP_OBJS := $(QMP_SRCS:%.c=$(B)/obj/%.o)
QMP_ASAN_OBJS := $(QMP_SRCS:%.c=$(B)/asan/%.o)
QMP_LIBS := $(shell pkg-config --libs json-c 2>/dev/null)
QMP_CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

$(B)/libqmp.a: $(QMP_OBJS)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

# For other modules' unit tests (built with ASan/UBSan).
$(B)/libqmp-asan.a: $(QMP_ASAN_OBJS)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(B)/tests/unit/test-qmp-parser $(B)/tests/unit/test-qmp-client: \
		$(B)/tests/unit/test-qmp-%: $(B)/asan/tests/unit/test-qmp-%.o $(B)/libqmp-asan.a
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(QMP_LIBS) $(QMP_CMOCKA_LIBS) -lpthread
UNIT_TESTS += $(B)/tests/unit/test-qmp-parser $(B)/tests/unit/test-qmp-client

# Integration test against a real qemu-system-x86_64 (plain build).
$(B)/tests/integration/test-qmp-qemu: $(B)/obj/tests/integration/test-qmp-qemu.o \
		$(B)/obj/qmp/testing/qemu-spawn.o $(B)/libqmp.a
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(QMP_LIBS) $(QMP_CMOCKA_LIBS) -lpthread
INTEG_TESTS += $(B)/tests/integration/test-qmp-qemu

.PHONY: libqmp
libqmp: $(B)/libqmp.a
all: $(B)/libqmp.a

# libFuzzer target for the parser (clang; build/fuzz objects).
$(B)/tests/fuzz/fuzz-qmp-parser: $(B)/fuzz/tests/fuzz/fuzz-qmp-parser.o $(B)/fuzz/qmp/parser.o \
		$(B)/fuzz/qmp/client.o
	@mkdir -p $(@D)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(QMP_LIBS)
FUZZERS += $(B)/tests/fuzz/fuzz-qmp-parser
# clang 14 does not know every gcc-only warning switch in WARN.
$(B)/fuzz/qmp/parser.o $(B)/fuzz/qmp/client.o $(B)/fuzz/tests/fuzz/fuzz-qmp-parser.o: \
	WARN := $(filter-out -Wno-format-truncation,$(WARN))
