# SPDX-License-Identifier: MIT
# Build rules for the event stream, SSH access, metrics and OpenAPI pieces of
# appliance/ (events.c, sshca.c, api-stream.c, api-access.c, api-metrics.c,
# api-openapi.c). Lives in its own directory because the top-level Makefile
# includes */*/module.mk; appliance/module.mk already compiles the .c files.

# api-openapi.c embeds docs/openapi.json with .incbin: rebuild when it changes
# (gcc's -MMD does not see files the assembler includes).
$(B)/obj/appliance/api-openapi.o $(B)/asan/appliance/api-openapi.o: docs/openapi.json

# sshca.c signs certificates with libcrypto's Ed25519 (libssh 0.10 has no
# API to sign certificates or arbitrary data); libssh itself links it.
FL_SYS_LIBS += -lcrypto

$(B)/tests/unit/test-events: $(B)/asan/tests/unit/test-events.o $(B)/asan/appliance/events.o
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_CMOCKA) $(FL_SYS_LIBS)

UNIT_TESTS += $(B)/tests/unit/test-events

$(B)/tests/unit/test-sshca: $(B)/asan/tests/unit/test-sshca.o $(B)/asan/appliance/sshca.o \
		$(B)/asan/appliance/state.o $(B)/libcommon-asan.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(FL_CMOCKA) $(FL_SYS_LIBS)

UNIT_TESTS += $(B)/tests/unit/test-sshca
