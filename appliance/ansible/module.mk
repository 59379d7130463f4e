# SPDX-License-Identifier: MIT
# Tests of the Ansible export (appliance/ansible*.c): the generator and the
# YAML writer are pure logic, tested with cmocka under ASan/UBSan (the YAML
# they write is read back with libyaml). The playbook store and API are
# tested by tests/integration/test-ansible-api.sh, the lint and idempotency
# by tests/integration/test-ansible-*.sh.
FL_ANSIBLE_UNIT_LIBS := $(shell pkg-config --libs json-c yaml-0.1 cmocka 2>/dev/null || echo -ljson-c -lyaml -lcmocka)

$(B)/tests/unit/test-ansible: $(B)/asan/tests/unit/test-ansible.o $(B)/asan/appliance/ansible.o \
		$(B)/asan/appliance/ansible-gen.o $(B)/asan/common/base64.o
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_ANSIBLE_UNIT_LIBS)
UNIT_TESTS += $(if $(wildcard tests/unit/test-ansible.c),$(B)/tests/unit/test-ansible)

# The rehearsal's residual (pure); the engine and the diff are faked in the test.
$(B)/tests/unit/test-ansible-residual: $(B)/asan/tests/unit/test-ansible-residual.o \
		$(B)/asan/appliance/rehearsal.o $(B)/asan/appliance/ansible.o $(B)/asan/common/fsutil.o \
		$(B)/asan/common/base64.o
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_ANSIBLE_UNIT_LIBS)
UNIT_TESTS += $(if $(wildcard tests/unit/test-ansible-residual.c),$(B)/tests/unit/test-ansible-residual)
