# SPDX-License-Identifier: MIT
# imgstore: qcow2 image store library (build/libimgstore.a), its unit and
# integration tests, the qcow2 header fuzzer and the imgstore benchmark.

# common/sha256.c is compiled in so the library stands alone.
IMG_SRCS := $(sort $(wildcard imgstore/*.c)) common/sha256.c
IMG_OBJS := $(IMG_SRCS:%.c=$(B)/obj/%.o)
IMG_ASAN_OBJS := $(IMG_SRCS:%.c=$(B)/asan/%.o)
IMG_FUZZ_OBJS := $(IMG_SRCS:%.c=$(B)/fuzz/%.o)
IMG_LIBS := $(shell pkg-config --libs liburing 2>/dev/null || echo -luring)

$(B)/libimgstore.a: $(IMG_OBJS)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(B)/libimgstore-asan.a: $(IMG_ASAN_OBJS)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

IMG_UNIT := $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test-imgstore*.c))
IMG_INTEG := $(patsubst tests/integration/%.c,$(B)/tests/integration/%,$(wildcard tests/integration/test-imgstore*.c))
IMG_FUZZ := $(patsubst tests/fuzz/%.c,$(B)/tests/fuzz/%,$(wildcard tests/fuzz/fuzz-qcow2*.c))
IMG_BENCH := $(patsubst bench/%.c,$(B)/bench/%,$(wildcard bench/bench-imgstore*.c))

$(IMG_UNIT): $(B)/tests/unit/%: $(B)/asan/tests/unit/%.o $(B)/libimgstore-asan.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ -lcmocka $(IMG_LIBS)

$(IMG_INTEG): $(B)/tests/integration/%: $(B)/asan/tests/integration/%.o $(B)/libimgstore-asan.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ -lcmocka $(IMG_LIBS)

# clang does not know every gcc -Wno-* option the tree may add to WARN.
$(IMG_FUZZ_OBJS) $(IMG_FUZZ:$(B)/tests/fuzz/%=$(B)/fuzz/tests/fuzz/%.o): WARN += -Wno-unknown-warning-option

$(IMG_FUZZ): $(B)/tests/fuzz/%: $(B)/fuzz/tests/fuzz/%.o $(IMG_FUZZ_OBJS)
	@mkdir -p $(@D)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(IMG_LIBS)

# The benchmark may use the shared harness library when it exists.
IMG_BENCHLIB := $(wildcard bench/benchlib.c)
$(IMG_BENCH): $(B)/bench/%: $(B)/obj/bench/%.o $(IMG_BENCHLIB:%.c=$(B)/obj/%.o) $(B)/libimgstore.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(IMG_LIBS) -lm

UNIT_TESTS += $(IMG_UNIT)
INTEG_TESTS += $(IMG_INTEG)
FUZZERS += $(IMG_FUZZ)
BENCHES += $(IMG_BENCH)
all: $(B)/libimgstore.a

