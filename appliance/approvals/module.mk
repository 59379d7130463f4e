# SPDX-License-Identifier: MIT
# Tests of approvals (appliance/approvals.c): ids, the state machine, the
# playbook hash, the PLAY RECAP parser and the output cleaner are pure
# logic, tested with cmocka under ASan/UBSan. The database, REST API, CLI
# and production apply are tested by tests/integration/test-approvals.sh.
FL_APPROVALS_UNIT_LIBS := $(shell pkg-config --libs json-c cmocka 2>/dev/null || echo -ljson-c -lcmocka)

$(B)/tests/unit/test-approvals: $(B)/asan/tests/unit/test-approvals.o $(B)/asan/appliance/approvals.o \
		$(B)/asan/common/sha256.o
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_APPROVALS_UNIT_LIBS)
UNIT_TESTS += $(if $(wildcard tests/unit/test-approvals.c),$(B)/tests/unit/test-approvals)
