# SPDX-License-Identifier: MIT
# common/: helpers shared by the daemon, tools and tests (event loop).
COMMON_SRCS := $(wildcard common/*.c)
$(B)/libcommon.a: $(COMMON_SRCS:%.c=$(B)/obj/%.o)
	@mkdir -p $(@D)
	ar rcs $@ $^
$(B)/libcommon-asan.a: $(COMMON_SRCS:%.c=$(B)/asan/%.o)
	@mkdir -p $(@D)
	ar rcs $@ $^

$(B)/tests/unit/test-loop: $(B)/asan/tests/unit/test-loop.o $(B)/libcommon-asan.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ -lcmocka -lpthread
UNIT_TESTS += $(B)/tests/unit/test-loop
