# Build, test and run the event gateway. `make help` lists the targets.
#
# Objects go to $(BUILD)/; `make SAN=1` builds an AddressSanitizer +
# UndefinedBehaviorSanitizer variant into build-san/ (the tests use both).
#
# Targets that install packages first (deps) build only in a sub-make started
# after the install: see "Targets after deps" below.

# This file, for the sub-makes (also when it was named with -f).
THIS_MAKEFILE := $(abspath $(lastword $(MAKEFILE_LIST)))

CC      ?= cc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     ?= -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     ?= -O2 -g
LDSAN   :=
endif

# wslay ships no pkg-config file in Debian 12: linked by name.
# libsystemd: sd_notify (readiness, watchdog); a no-op outside systemd.
# libcurl: workerd's client of the application hooks (libcurl4-openssl-dev).
# zlib: gatewayd's permessage-deflate (zlib1g-dev; why not libdeflate: gw_deflate.c).
PKGS     := libuv librabbitmq libcjson openssl inih libsystemd libcurl zlib
LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp

CPPFLAGS += -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L -Icommon -Iproto -I$(LLHTTP_INC)
CFLAGS   += -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes $(OPT)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS   += $(PKG_LIBS) -lwslay -lpthread -lm
LDFLAGS  += $(LDSAN)

COMMON_SRC := $(wildcard common/*.c)
PROTO_SRC  := $(wildcard proto/*.c)
GW_SRC     := $(wildcard gatewayd/*.c)
WK_SRC     := $(wildcard workerd/*.c)
EM_SRC     := $(wildcard emitd/*.c)
CTL_SRC    := $(wildcard chanctl/*.c)
UNIT_SRC   := $(wildcard tests/unit/*.c)
LLHTTP_SRC := $(LLHTTP_DIR)/api.c $(LLHTTP_DIR)/http.c $(LLHTTP_DIR)/llhttp.c

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB_OBJ    := $(call obj,$(COMMON_SRC) $(PROTO_SRC))
LLHTTP_OBJ := $(patsubst $(LLHTTP_DIR)/%.c,$(BUILD)/obj/llhttp/%.o,$(LLHTTP_SRC))
# main.c of each daemon is left out of the unit-test link, so tests can call
# the daemon's modules directly.
GW_LIB_OBJ := $(call obj,$(filter-out gatewayd/main.c,$(GW_SRC)))
WK_LIB_OBJ := $(call obj,$(filter-out workerd/main.c,$(WK_SRC)))
EM_LIB_OBJ := $(call obj,$(filter-out emitd/main.c,$(EM_SRC)))

BINS := $(BUILD)/gatewayd $(BUILD)/workerd $(BUILD)/chanctl $(BUILD)/emitd
.DEFAULT_GOAL := all
all: $(BINS)

$(BUILD)/gatewayd: $(call obj,gatewayd/main.c) $(GW_LIB_OBJ) $(LLHTTP_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/workerd: $(call obj,workerd/main.c) $(WK_LIB_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/chanctl: $(call obj,$(CTL_SRC)) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/emitd: $(call obj,emitd/main.c) $(EM_LIB_OBJ) $(LLHTTP_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/unit-tests: $(call obj,$(UNIT_SRC)) $(GW_LIB_OBJ) $(WK_LIB_OBJ) $(EM_LIB_OBJ) $(LLHTTP_OBJ) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# llhttp is third-party C shipped by Debian's node-llhttp; compiled as is,
# without our warning flags.
$(BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(CC) -I$(LLHTTP_INC) $(OPT) -w -c -o $@ $<

# Unit tests reach into the daemons' own modules.
$(BUILD)/obj/tests/%.o: CPPFLAGS += -Igatewayd -Iworkerd -Iemitd

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

.PHONY: all deps run test test-unit test-integration unit-tests clean help
deps:
	@tests/lib/deps.sh

# ---- targets after deps ------------------------------------------------------
# On a fresh machine deps installs node-llhttp and the -dev packages. This
# make has by then read the Makefile and looked at the file system: it saw no
# $(LLHTTP_DIR), and its directory cache keeps saying so. Building in this
# make after deps therefore failed the first time ("No rule to make target
# build/obj/llhttp/api.o"), and with -j deps and the build ran at once; any
# wildcard or $(shell pkg-config) it evaluated early would be stale too.
# So a target that depends on deps has no other prerequisite, and
# builds through $(AFTER_DEPS): a new make, started once deps has finished,
# which evaluates everything afresh. Command-line variables (SAN=1, BUILD=)
# and -j reach it through MAKEFLAGS; the leading + tells this make that the
# line is a make (it shares the -j job slots, and runs under -n too).
# tests/integration/test_make_run.py holds every target that depends on deps
# to this.
AFTER_DEPS = +$(MAKE) --no-print-directory -f $(THIS_MAKEFILE)

unit-tests: $(BUILD)/unit-tests
# UNIT=NAME runs only the unit tests whose name contains NAME.
test-unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests $(UNIT)

# The full suite: unit tests, then the integration tests against a private
# RabbitMQ node, both on the normal and on the sanitizer build. tests/run.sh
# builds each variant with its own make, after deps.
test: deps
	@tests/run.sh

run: deps
	@$(AFTER_DEPS) all
	@deploy/dev/run.sh

clean:
	rm -rf build build-san build-fuzz

help:
	@echo "make            build gatewayd, workerd, chanctl, emitd into $(BUILD)/"
	@echo "make deps       install missing Debian packages (apt-get), idempotent"
	@echo "make run        start broker + gatewayd + workerd locally (foreman)"
	@echo "make test       every test: unit, integration, sanitizers"
	@echo "make test-unit  unit tests of $(BUILD)/; UNIT=NAME runs those whose name contains NAME:"
	@echo "                  make test-unit UNIT=token_refuses_alg_none  (= $(BUILD)/unit-tests token_refuses_alg_none)"
	@echo "                one integration test (pytest -k), normal build only, the whole make test around it:"
	@echo "                  WSGW_TEST_VARIANTS=build PYTEST_ARGS=\"-k ping_timeout\" make test"
	@echo "                or alone, once built (starts its own RabbitMQ node; WSGW_BUILD=build-san: sanitizers):"
	@echo "                  /usr/bin/python3 -m pytest tests/integration -k ping_timeout -p no:cacheprovider"
	@echo "make test-faults  slow fault tests: broker outages, floods (CI runs it)"
	@echo "make SAN=1      ASan+UBSan build into build-san/"
	@echo "make install    binaries, systemd units, man pages, example config (PREFIX, DESTDIR)"
	@echo "make docs       regenerate the settings tables (docs/OPERATIONS.md, deploy/wsgw.ini.example)"
	@echo "make fuzz       run each fuzz target for FUZZ_SECONDS (180) into build-fuzz/"
	@echo "make fuzz-corpus  run each fuzz target once over its committed corpus"
	@echo "make bench      S1-S4, R1-R2, Z (compression) load scenarios, prints a table, rewrites docs/BENCHMARKS.md (~17 min)"
	@echo "make bench-workers  handshakes/s and subscriptions/s with 1, 2, 4 workerd, CPU shares (~2 min)"
	@echo "make bench-hooks  subscriptions/s through the application's hook, cache cold/warm vs token only (~1 min)"
	@echo "make bench-scale  gatewayd with 1, 2 and 6 processes, up to 100,000 connections (~5 min)"
	@echo "make bench-share  two processes, one stream consumer (history.shared) or one each: events/s, broker CPU (~2 min)"
	@echo "make bench-emit  events/s through chanctl, Python, HTTP one by one and in batches (~2 min)"
	@echo "make bench-deflate  zlib vs libdeflate on AWX job events: CPU, ratio, client decoders (~20 s)"

# ---- fuzzing (tests/fuzz) --------------------------------------------------
# libFuzzer targets, built with clang into build-fuzz/ whatever CC and SAN
# say: the project modules each target links are compiled here with coverage
# and ASan+UBSan, so are llhttp's sources; wslay is Debian's shared library
# (uninstrumented). tests/fuzz/run.sh runs them.
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 180
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
                -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_NAMES   := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(addprefix $(FUZZ_BUILD)/,$(FUZZ_NAMES))
fuzz_obj = $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(1))
FUZZ_LIB     := $(call fuzz_obj,$(COMMON_SRC) $(PROTO_SRC))
FUZZ_LLHTTP  := $(patsubst $(LLHTTP_DIR)/%.c,$(FUZZ_BUILD)/obj/llhttp/%.o,$(LLHTTP_SRC))

$(FUZZ_BUILD)/fuzz_http_upgrade: $(call fuzz_obj,gatewayd/gw_http.c) $(FUZZ_LLHTTP)
$(FUZZ_BUILD)/fuzz_ws_frames: $(call fuzz_obj,gatewayd/gw_buf.c gatewayd/gw_deflate.c gatewayd/gw_ws.c gatewayd/gw_ws_track.c)
$(FUZZ_BUILD)/fuzz_pmd: $(call fuzz_obj,gatewayd/gw_pmd.c)
$(FUZZ_BUILD)/fuzz_ring: $(call fuzz_obj,gatewayd/gw_ring.c)
$(FUZZ_BUILD)/fuzz_subscribe: $(call fuzz_obj,workerd/wk_subscribe.c workerd/wk_policy.c)
$(FUZZ_BUILD)/fuzz_hook_answer: $(call fuzz_obj,workerd/wk_hook.c)
$(FUZZ_BUILD)/fuzz_emit_batch: $(call fuzz_obj,emitd/em_json.c emitd/em_request.c)
$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_LIB)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $^ $(LDLIBS)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CPPFLAGS) -Igatewayd -Iworkerd -Iemitd $(PKG_CFLAGS) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<
$(FUZZ_BUILD)/obj/llhttp/%.o: $(LLHTTP_DIR)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -I$(LLHTTP_INC) -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link -w -c -o $@ $<

# Objects reached only through the pattern rule above would count as
# intermediate and be deleted after each link.
.PRECIOUS: $(FUZZ_BUILD)/obj/%.o
-include $(shell find $(FUZZ_BUILD) -name '*.d' 2>/dev/null)

.PHONY: fuzz fuzz-build fuzz-corpus
fuzz-build: $(FUZZ_BINS)
# Each target for FUZZ_SECONDS, one after another (FUZZ_ARGS: libFuzzer's).
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh fuzz
# Each target once over its committed corpus (make test does this too).
fuzz-corpus: fuzz-build
	@tests/fuzz/run.sh corpus

# ---- install (deploy/) -------------------------------------------------------
# `make install` (PREFIX=/usr/local, DESTDIR= for packaging): the binaries,
# the systemd units (ExecStart and /etc/wsgw paths rewritten to PREFIX and
# SYSCONFDIR), the man pages, the example config (also as
# SYSCONFDIR/wsgw/wsgw.ini when none exists: never overwritten), and under
# PREFIX/share/wsgw the nginx site, the RabbitMQ setup script and the demo
# console. Steps after it: docs/DEPLOY.md. `make docs` regenerates the
# settings tables of docs/OPERATIONS.md and deploy/wsgw.ini.example from
# the binaries' --help.
PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
MANDIR     ?= $(PREFIX)/share/man
SHAREDIR   ?= $(PREFIX)/share/wsgw
INSTALL    ?= install
UNIT_SED   := -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' -e 's|/etc/wsgw/|$(SYSCONFDIR)/wsgw/|g'

.PHONY: install docs
install: all
	$(INSTALL) -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(SYSCONFDIR)/wsgw $(DESTDIR)$(SHAREDIR)/demo \
	  $(DESTDIR)$(SHAREDIR)/nginx/snippets $(DESTDIR)$(SHAREDIR)/rabbitmq
	$(INSTALL) -m 0755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	for u in gatewayd.service workerd@.service emitd.service; do \
	  sed $(UNIT_SED) deploy/systemd/$$u >$(DESTDIR)$(UNITDIR)/$$u && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; done
	$(INSTALL) -m 0644 deploy/man/man1/chanctl.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 deploy/man/man8/gatewayd.8 deploy/man/man8/workerd.8 $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -m 0644 deploy/wsgw.ini.example $(DESTDIR)$(SHAREDIR)/
	test -e $(DESTDIR)$(SYSCONFDIR)/wsgw/wsgw.ini || \
	  $(INSTALL) -m 0644 deploy/wsgw.ini.example $(DESTDIR)$(SYSCONFDIR)/wsgw/wsgw.ini
	$(INSTALL) -m 0644 deploy/demo/index.html deploy/demo/app.js deploy/demo/style.css \
	  $(DESTDIR)$(SHAREDIR)/demo/
	# The console's SDK: deploy/demo/wsgw.js is a link to it in the tree.
	$(INSTALL) -m 0644 clients/js/src/wsgw.js $(DESTDIR)$(SHAREDIR)/demo/wsgw.js
	for f in wsgw.conf wsgw-tls.conf; do \
	  sed -e 's|/usr/local/share/wsgw/|$(SHAREDIR)/|g' deploy/nginx/$$f \
	    >$(DESTDIR)$(SHAREDIR)/nginx/$$f || exit 1; done
	$(INSTALL) -m 0644 deploy/nginx/snippets/wsgw-proxy.conf $(DESTDIR)$(SHAREDIR)/nginx/snippets/
	$(INSTALL) -m 0755 deploy/rabbitmq/setup.sh $(DESTDIR)$(SHAREDIR)/rabbitmq/

docs: all
	/usr/bin/python3 deploy/gen-settings.py --build $(BUILD)

# ---- benchmarks (bench/) ---------------------------------------------------
# `make bench` runs the scenarios of docs/BENCHMARKS.md against a private
# broker and rewrites that file; `make bench-smoke` is its seconds-long
# version (make test runs it): it fails on lost, out-of-order or refused
# events and connections, never on speed.
BENCH_BINS := $(BUILD)/wsbench $(BUILD)/bench-emit $(BUILD)/bench-sizes \
  $(BUILD)/wsb-inflate-check
$(BUILD)/wsbench: $(call obj,bench/wsbench.c bench/wsb_conn.c bench/wsb_hist.c bench/wsb_proto2.c bench/wsb_inflate.c) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench-emit: $(call obj,bench/emit.c bench/awx_sample.c) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench-sizes: $(call obj,bench/sizes.c) $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# wsbench's permessage-deflate decoder on context-takeover messages, alone.
$(BUILD)/wsb-inflate-check: $(call obj,bench/wsb_inflate_check.c bench/wsb_inflate.c bench/awx_sample.c)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# zlib against libdeflate (bench/deflate.sh): needs libdeflate-dev, so it is
# in no other target's prerequisites; `make bench-deflate` installs it or
# skips.
$(BUILD)/bench-deflate: $(call obj,bench/deflate_libs.c bench/awx_sample.c)
	$(CC) $(LDFLAGS) -o $@ $^ -ldeflate -lz
# bench-sizes reads the gateway's own headers.
$(BUILD)/obj/bench/%.o: CPPFLAGS += -Igatewayd

.PHONY: bench bench-smoke bench-build bench-workers bench-scale bench-share bench-hooks \
  bench-emit bench-deflate
bench-build: all $(BENCH_BINS)
bench: deps
	@$(AFTER_DEPS) bench-build
	@bench/run.sh full
bench-smoke: bench-build
	@$(BUILD)/wsb-inflate-check >/dev/null || $(BUILD)/wsb-inflate-check
	@bench/run.sh smoke
# zlib and libdeflate on the AWX job event sample: CPU per event, ratio, and
# how clients' decoders read their messages (prints two tables, ~20 s).
bench-deflate:
	@WSGW_BUILD=$(BUILD) bench/deflate.sh
# Connect and subscribe throughput with 1, 2 and 4 workerd and the CPU share
# of broker, gateway and workers; rewrites its section of docs/BENCHMARKS.md.
bench-workers: deps
	@$(AFTER_DEPS) bench-build
	@WSGW_BUILD=$(BUILD) bench/workers.sh
# Subscription requests/s through the application's subscribe hook (the
# Django test application answering in 5 ms), cache cold and warm, beside
# token only; rewrites its section of docs/BENCHMARKS.md (~1 min).
bench-hooks: deps
	@$(AFTER_DEPS) bench-build
	@WSGW_BUILD=$(BUILD) /usr/bin/python3 bench/hooks.py
# Events/s through each way to emit: chanctl --stdin, the Python package one
# by one and in batches, emitd's HTTP API one per request and in batches
# (wrk); rewrites its section of docs/BENCHMARKS.md (~2 min).
bench-emit: deps
	@$(AFTER_DEPS) all
	@WSGW_BUILD=$(BUILD) /usr/bin/python3 bench/emit_paths.py
# gatewayd with N processes (gateway.processes): fanout with N = 1 and 2, and
# subscribed connections at each N's open-file ceiling, up to 100,000 with
# N = 6; prints the table of docs/BENCHMARKS.md "Processes".
bench-scale: deps
	@$(AFTER_DEPS) bench-build
	@WSGW_BUILD=$(BUILD) bench/scale.sh
# The broker's share (issue 17): two processes with one stream consumer
# (history.shared) and with one each: events/s and broker CPU per event
# (~2 min; prints its table, docs/BENCHMARKS.md quotes it by hand).
bench-share: deps
	@$(AFTER_DEPS) bench-build
	@WSGW_BUILD=$(BUILD) bench/scale.sh share

# ---- fault tests that take minutes (issue 3) --------------------------------
# Broker outages on a private RabbitMQ node these tests stop, kill and freeze
# (tests/integration/test_faults_broker.py), a flood with a slow client and
# 100,000 events to 100 clients (test_faults_load.py), a node of a 3-node
# cluster killed under a gateway (test_faults_cluster.py), one of two hosts
# (network namespaces, behind nginx) cut off the network (test_faults_hosts.py,
# root only), gateways SIGKILLed under wsgw.2 clients that recover on the
# survivor (test_faults_history.py), the JS SDK in Chromium across a node
# failover (test_faults_sdk.py). Normal build only: the quick fault tests run in `make test`. CI
# runs both (.ci/run). ~4 minutes.
FAULTS_TIMEOUT ?= 1200
.PHONY: test-faults
test-faults: deps
	@$(AFTER_DEPS) all
	@WSGW_FAULTS=1 WSGW_BUILD=$(CURDIR)/$(BUILD) \
	  timeout --signal=TERM --kill-after=30 $(FAULTS_TIMEOUT) \
	  /usr/bin/python3 -m pytest tests/integration/test_faults_broker.py \
	  tests/integration/test_faults_load.py \
	  tests/integration/test_faults_cluster.py \
	  tests/integration/test_faults_hosts.py \
	  tests/integration/test_faults_history.py \
	  tests/integration/test_faults_sdk.py -p no:cacheprovider -q -rfE
