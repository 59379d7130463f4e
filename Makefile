# SPDX-License-Identifier: MIT
# fluid: one Makefile for the whole tree. Each directory adds its targets in
# its own module.mk. Plain objects go to build/obj, sanitizer builds (unit
# tests) to build/asan, libFuzzer builds to build/fuzz.

.DEFAULT_GOAL := all
SHELL := /bin/bash

B        := build
CC       ?= gcc
FUZZ_CC  := clang
PKGS     := json-c libpq yaml-0.1 liburing libssh
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
CPPFLAGS := -D_GNU_SOURCE -Icommon -Iqmp -Iimgstore -Iimage-build/agent -Iappliance
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu17 $(WARN) -fno-strict-aliasing $(PKG_CFLAGS) -MMD -MP
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ     := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV  := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
CPPFLAGS += -DFL_VERSION='"$(VERSION)"' -DFL_GIT_REV='"$(GIT_REV)"'

# Filled in by module.mk files.
BINS        :=
UNIT_TESTS  :=
INTEG_TESTS :=
FUZZERS     :=
BENCHES     :=

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

$(B)/asan/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN) -c $< -o $@

$(B)/fuzz/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) -std=gnu17 -g -O1 $(WARN) -Wno-unknown-warning-option $(PKG_CFLAGS) $(FUZZ) -c $< -o $@

include $(sort $(wildcard */module.mk */*/module.mk))

.PHONY: all deps images test unit run fuzz bench clean
all: $(BINS) $(UNIT_TESTS) $(INTEG_TESTS) $(BENCHES)

deps:
	@./scripts/deps.sh

images: deps all
	@./image-build/build-images

fuzzers: $(FUZZERS)

# `make test`: set up everything, then run every test. Closing line is
# "N passed, N failed"; exit status non-zero on any failure.
test: deps
	@$(MAKE) --no-print-directory all fuzzers
	@./image-build/build-images
	@./tests/run

unit: all
	@./tests/run --only unit

fuzz: fuzzers
	@./tests/run --only fuzz --fuzz-seconds 300

run: deps
	@$(MAKE) --no-print-directory all
	@./scripts/run.sh

bench: all
	@./bench/run

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
