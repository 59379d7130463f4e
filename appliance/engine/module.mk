# SPDX-License-Identifier: MIT
# appliance/engine: the sandbox engine (VM spawning, templates, clones,
# snapshots, recovery), linked into `fluid` and into its tests and benches.
ENGINE_SRCS := $(wildcard appliance/engine/*.c)
CPPFLAGS += -Iappliance/engine
ENGINE_DEPS := $(B)/libengine.a $(B)/libagentc.a $(B)/libimgstore.a $(B)/libqmp.a $(B)/libcommon.a
ENGINE_LIBS := $(ENGINE_DEPS) $(PKG_LIBS) -lpthread

$(B)/libengine.a: $(ENGINE_SRCS:%.c=$(B)/obj/%.o)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(B)/tests/integration/test-engine: $(B)/obj/tests/integration/test-engine.o $(ENGINE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(ENGINE_LIBS) -lcmocka
INTEG_TESTS += $(B)/tests/integration/test-engine


$(B)/bench/bench-engine: $(B)/obj/bench/bench-engine.o $(B)/obj/bench/benchlib.o $(ENGINE_DEPS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(PKG_LIBS) -lpthread -lm
BENCHES += $(B)/bench/bench-engine
