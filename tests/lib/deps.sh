#!/usr/bin/env bash
# deps.sh - installs the Debian 12 packages the project needs to build, test
# and run (`make deps`; `make test` and `make run` call it first).
#
# Owns: the package list. Idempotent and quick: asks dpkg what is missing and
# only then runs apt-get (update + install). Needs root (or sudo) only when
# something is missing.
#
# rabbitmq-server's post-install step cannot start the system service on a
# machine without an init system; that is harmless: the tests and `make run`
# start a private node (tests/lib/broker.sh). ruby-foreman is the Procfile
# runner (honcho is not in Debian 12; deploy/dev/run.sh uses it if present).
# systemd (systemd-analyze verify of the units), man-db, openssl (test
# certificates) and chromium (the browser test) serve tests/integration.
# libclang-rt-14-dev holds libFuzzer and the sanitizer runtimes of clang
# (clang pulls it in today, through libclang-common-14-dev; named so that
# `make fuzz` does not depend on that); valgrind: tests/lib/valgrind-smoke.sh.
# iproute2 (ip: network namespaces, veth, bridge) serves tests/lib/netns.sh
# and broker.sh's nodes on other addresses (test_faults_hosts.py).
# python3-django (3.2) runs tests/app, the application the integration tests'
# hooks talk to (tests/integration/djangoapp.py). curl: make run's printed
# HTTP emit line (emitd) and the tests that run it.
# nodejs + npm (Debian 12: Node 18) serve the JavaScript SDK's tests and build
# (clients/js): installed only when `node` or `npm` is not on the PATH (a
# newer Node from elsewhere is kept); then `npm ci` there when node_modules is
# missing or older than package-lock.json (its devDependencies only: ws,
# esbuild, typescript; nothing of it ships at run time).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JS_DIR=$ROOT/clients/js

# npm ci in clients/js when its node_modules is missing or stale. npm writes
# node_modules/.package-lock.json at the end of an install, so it is newer
# than package-lock.json exactly when that install is current (a checkout
# that touches the lock makes it stale: one npm ci, then quick again).
js_deps() {
  local stamp=$JS_DIR/node_modules/.package-lock.json
  [[ -f $JS_DIR/package-lock.json ]] || return 0
  if [[ -f $stamp && $stamp -nt $JS_DIR/package-lock.json ]]; then
    return 0
  fi
  echo "deps.sh: npm ci in clients/js"
  (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "deps.sh: npm ci in clients/js failed (the SDK's tests need it)" >&2
    return 1
  }
}

PACKAGES=(
  build-essential pkg-config make
  libuv1-dev libwslay-dev librabbitmq-dev libcjson-dev libssl-dev
  node-llhttp libinih-dev libsystemd-dev libcurl4-openssl-dev zlib1g-dev
  rabbitmq-server
  python3-websockets python3-pika python3-pytest python3-django
  ruby-foreman nginx-light clang
  systemd man-db openssl chromium
  libclang-rt-14-dev valgrind iproute2 curl
)

missing=()
for p in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$p")
done
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  for p in nodejs npm; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [[ $status == installed ]] || missing+=("$p")
  done
fi

if ((${#missing[@]} == 0)); then
  js_deps
  exit 0
fi

echo "deps.sh: installing ${missing[*]}"
SUDO=()
if ((EUID != 0)); then
  command -v sudo >/dev/null || { echo "deps.sh: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" || {
  # rabbitmq-server's postinst fails to start the service without init and
  # can leave the package half-configured; finish configuring and go on.
  "${SUDO[@]}" dpkg --configure -a || true
}

still=()
for p in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ $status == installed ]] || still+=("$p")
done
if ((${#still[@]} > 0)); then
  echo "deps.sh: still missing after apt-get: ${still[*]}" >&2
  exit 1
fi
js_deps
