# SPDX-License-Identifier: MIT
# image-build/agent: fluid-agent (the static in-guest agent), libagentc (the
# host side of its protocol), their unit tests, fuzzer, VM integration tests
# and benches (agent_rtt, image_boot).

AGENT_DIR := image-build/agent
AGENT_PROTO_SRCS := $(AGENT_DIR)/agent-proto.c
AGENT_GUEST_SRCS := $(AGENT_DIR)/fluid-agent.c $(AGENT_DIR)/agent-exec.c \
	$(AGENT_DIR)/agent-files.c $(AGENT_DIR)/agent-system.c
AGENTC_SRCS := $(AGENT_DIR)/agent-client.c $(AGENT_DIR)/agent-client-sync.c $(AGENT_PROTO_SRCS)
AGENT_JSONC_A := $(shell $(CC) -print-file-name=libjson-c.a)
AGENT_LIBS := $(shell pkg-config --libs json-c 2>/dev/null || echo -ljson-c)
AGENT_CMOCKA := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

# The guest agent is static: no NSS, no shared libraries in tiny images.
$(B)/fluid-agent: $(patsubst %.c,$(B)/obj/%.o,$(AGENT_GUEST_SRCS) $(AGENT_PROTO_SRCS))
	@mkdir -p $(@D)
	$(CC) -static -o $@ $^ $(AGENT_JSONC_A)

$(B)/libagentc.a: $(AGENTC_SRCS:%.c=$(B)/obj/%.o)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(B)/libagentc-asan.a: $(AGENTC_SRCS:%.c=$(B)/asan/%.o)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

BINS += $(B)/fluid-agent $(B)/libagentc.a $(B)/libagentc-asan.a

# Shared test helpers (boot an image, connect its agent), for any test.
CPPFLAGS += -Itests/lib
TESTLIB_SRCS := tests/lib/testvm.c common/sha256.c

# Unit tests: framing, host-side parsing against a scripted hostile peer,
# and the real agent run on the host over a socket.
AGENT_UNIT := $(notdir $(basename $(wildcard tests/unit/test-agent*.c)))
$(AGENT_UNIT:%=$(B)/tests/unit/%): $(B)/tests/unit/test-agent-%: \
		$(B)/asan/tests/unit/test-agent-%.o $(B)/libagentc-asan.a | $(B)/fluid-agent
	@mkdir -p $(@D)
	$(CC) $(SAN) -o $@ $^ $(AGENT_LIBS) $(AGENT_CMOCKA)
UNIT_TESTS += $(AGENT_UNIT:%=$(B)/tests/unit/%)

# Fuzzer for the host-side parser and client state machine. clang does not
# know every gcc warning option in WARN.
$(B)/fuzz/tests/fuzz/fuzz-agent-client.o $(AGENTC_SRCS:%.c=$(B)/fuzz/%.o): \
	WARN += -Wno-unknown-warning-option
$(B)/tests/fuzz/fuzz-agent-client: $(B)/fuzz/tests/fuzz/fuzz-agent-client.o \
		$(AGENTC_SRCS:%.c=$(B)/fuzz/%.o)
	@mkdir -p $(@D)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(AGENT_LIBS)
FUZZERS += $(if $(wildcard tests/fuzz/fuzz-agent-client.c),$(B)/tests/fuzz/fuzz-agent-client)

# VM integration tests (need build/images/tiny and build/images/debian-12).
$(B)/tests/integration/test-agent-vm: $(B)/obj/tests/integration/test-agent-vm.o \
		$(TESTLIB_SRCS:%.c=$(B)/obj/%.o) $(B)/libagentc.a $(B)/libqmp.a | $(B)/fluid-agent
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(AGENT_LIBS) $(AGENT_CMOCKA)
INTEG_TESTS += $(if $(wildcard tests/integration/test-agent-vm.c),$(B)/tests/integration/test-agent-vm)

.PHONY: agent
agent: $(B)/fluid-agent $(B)/libagentc.a

# Benchmarks (bench/benchmarks: agent_rtt, image_boot); they boot images.
AGENT_BENCH_DEPS := $(B)/obj/bench/benchlib.o $(TESTLIB_SRCS:%.c=$(B)/obj/%.o) $(B)/libagentc.a
$(B)/bench/agent_rtt $(B)/bench/image_boot: $(B)/bench/%: $(B)/obj/bench/%.o $(AGENT_BENCH_DEPS)
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(AGENT_LIBS) -lm
BENCHES += $(B)/bench/agent_rtt $(B)/bench/image_boot
