# SPDX-License-Identifier: MIT
# Benchmarks. bench/run runs what bench/benchmarks lists; C benchmarks link
# $(BENCHLIB_OBJ) for percentiles and the JSON line format (docs/bench.md).

BENCHLIB_OBJ := $(B)/obj/bench/benchlib.o
# So that any module's benchmark can #include "benchlib.h".
CPPFLAGS += -Ibench

$(B)/bench/qmp-rtt: $(B)/obj/bench/qmp-rtt.o $(BENCHLIB_OBJ) $(B)/obj/qmp/testing/qemu-spawn.o \
		$(B)/libqmp.a
	@mkdir -p $(@D)
	$(CC) -o $@ $^ $(shell pkg-config --libs json-c)
BENCHES += $(B)/bench/qmp-rtt
