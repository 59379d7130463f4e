# SPDX-License-Identifier: MIT
# common/: helpers shared by the daemon, tools and tests (event loop).
COMMON_SRCS := $(wildcard common/*.c)
$(B)/libcommon.a: $(COMMON_SRCS:%.c=$(B)/obj/%.o)
	@mkdir -p $(@D)
	ar rcs $@ $^
$(B)/libcommon-asan.a: $(COMMON_SRCS:%.c=$(B)/asan/%.o)
	@mkdir -p $(@D)
	ar rcs $@ $^
