# SPDX-License-Identifier: MIT
# appliance/: the `fluid` binary (daemon + CLI) from every appliance/*.c,
# linked with the project's libraries that exist so far, plus its unit and
# integration tests. Other engineers' appliance/*.c files are picked up by
# the wildcard; FL_APP_SKIP (make FL_APP_SKIP="appliance/x.c") leaves
# half-written ones out of a local build.

FL_APP_SRCS := $(filter-out $(FL_APP_SKIP),$(sort $(wildcard appliance/*.c)))
FL_APP_OBJS := $(FL_APP_SRCS:%.c=$(B)/obj/%.o)

# A library is linked once its module.mk has a rule for it, so the build
# never depends on a library that is still being written.
fl_lib_if = $(if $(shell grep -ls '$(1)' $(2) 2>/dev/null),$(B)/$(1))
FL_APP_LIBS := $(call fl_lib_if,libqmp.a,qmp/module.mk) \
	$(call fl_lib_if,libimgstore.a,imgstore/module.mk) \
	$(call fl_lib_if,libagentc.a,$(wildcard image-build/module.mk image-build/*/module.mk)) \
	$(call fl_lib_if,libcommon.a,common/module.mk)
FL_APP_LIBS := $(call fl_lib_if,libengine.a,appliance/engine/module.mk) $(FL_APP_LIBS)

FL_CIVETWEB_LIBS := -lcivetweb
FL_SYS_LIBS := $(FL_CIVETWEB_LIBS) $(shell pkg-config --libs json-c yaml-0.1 libpq liburing libssh 2>/dev/null || echo -ljson-c -lyaml -lpq -luring -lssh) -lpthread -ldl
# libvirt: only `fluid provision network` (cli-provision.c) uses it.
FL_VIRT_LIBS := $(shell pkg-config --libs libvirt 2>/dev/null || echo -lvirt)
FL_CMOCKA := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)

$(B)/fluid: $(FL_APP_OBJS) $(FL_APP_LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $(FL_APP_OBJS) -Wl,--start-group $(FL_APP_LIBS) -Wl,--end-group $(FL_SYS_LIBS) $(FL_VIRT_LIBS)

BINS += $(B)/fluid

# Unit tests (ASan + UBSan): each links only the modules it tests.
FL_CONFIG_ASAN := $(B)/asan/appliance/config.o $(B)/asan/appliance/log.o $(B)/asan/appliance/policy.o \
	$(B)/libcommon-asan.a
$(B)/tests/unit/test-config: $(B)/asan/tests/unit/test-config.o $(FL_CONFIG_ASAN)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_CMOCKA) $(FL_SYS_LIBS)

$(B)/tests/unit/test-accel: $(B)/asan/tests/unit/test-accel.o $(B)/asan/appliance/accel.o \
		$(B)/asan/appliance/state.o $(FL_CONFIG_ASAN)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_CMOCKA) $(FL_SYS_LIBS)

$(B)/tests/unit/test-http: $(B)/asan/tests/unit/test-http.o $(B)/asan/appliance/http.o \
		$(B)/asan/appliance/api-ops.o $(B)/asan/appliance/cli-client.o $(B)/asan/appliance/state.o $(B)/asan/appliance/accel.o \
		$(FL_CONFIG_ASAN)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_CMOCKA) $(FL_SYS_LIBS)

UNIT_TESTS += $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(wildcard tests/unit/test-config.c tests/unit/test-accel.c tests/unit/test-http.c))

# Safety policies (policy.c is pure; the unit test adds config.c for the policies: section).
$(B)/tests/unit/test-policy: $(B)/asan/tests/unit/test-policy.o $(FL_CONFIG_ASAN)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_CMOCKA) $(FL_SYS_LIBS)
UNIT_TESTS += $(if $(wildcard tests/unit/test-policy.c),$(B)/tests/unit/test-policy)

# tmux through the agent (tmux.c), with a fake engine in the test.
$(B)/tests/unit/test-tmux: $(B)/asan/tests/unit/test-tmux.o $(B)/asan/appliance/tmux.o $(B)/libcommon-asan.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_CMOCKA) $(FL_SYS_LIBS)
UNIT_TESTS += $(if $(wildcard tests/unit/test-tmux.c),$(B)/tests/unit/test-tmux)

$(B)/fuzz/appliance/policy.o $(B)/fuzz/tests/fuzz/fuzz-policy-shell.o: \
	WARN := $(filter-out -Wno-format-truncation,$(WARN))
$(B)/tests/fuzz/fuzz-policy-shell: $(B)/fuzz/tests/fuzz/fuzz-policy-shell.o $(B)/fuzz/appliance/policy.o
	@mkdir -p $(@D)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $^ $(FL_SYS_LIBS)
FUZZERS += $(if $(wildcard tests/fuzz/fuzz-policy-shell.c),$(B)/tests/fuzz/fuzz-policy-shell)

# Files that embed FL_GIT_REV are rebuilt when HEAD moves.
$(B)/obj/appliance/main.o $(B)/obj/appliance/api-ops.o $(B)/obj/appliance/cli-serve.o: \
	$(wildcard .git/logs/HEAD)
