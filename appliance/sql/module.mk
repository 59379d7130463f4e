# SPDX-License-Identifier: MIT
# The database layer's tests (appliance/db*.c). The schema itself is
# compiled in (appliance/db-schema.c); these rules live here so that the
# database layer's build stays in one place next to it.
FL_DB_SRCS := appliance/db.c appliance/db-util.c appliance/db-schema.c appliance/db-audit.c \
	appliance/db-commands.c appliance/db-sandboxes.c appliance/db-tokens.c
FL_DB_TEST_LIBS := $(shell pkg-config --libs json-c libpq cmocka 2>/dev/null || echo -ljson-c -lpq -lcmocka) -lpthread

# Unit (ASan/UBSan): the pure helpers only, no PostgreSQL.
$(B)/tests/unit/test-db-util: $(B)/asan/tests/unit/test-db-util.o $(B)/asan/appliance/db-util.o $(B)/libcommon-asan.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_DB_TEST_LIBS)
UNIT_TESTS += $(if $(wildcard tests/unit/test-db-util.c),$(B)/tests/unit/test-db-util)

# Integration: the whole layer against a private PostgreSQL cluster.
$(B)/tests/integration/test-db: $(B)/obj/tests/integration/test-db.o $(FL_DB_SRCS:%.c=$(B)/obj/%.o) $(B)/libcommon.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $^ $(FL_DB_TEST_LIBS)
INTEG_TESTS += $(if $(wildcard tests/integration/test-db.c),$(B)/tests/integration/test-db)
