#!/usr/bin/env bash
# valgrind-smoke.sh - integration tests with both daemons under valgrind
# --leak-check=full: the second leak check besides the LeakSanitizer run of
# `make test` (valgrind also sees what the normal -O2 build does, and
# uninitialised reads ASan does not look for). Slow (about 20x), so not
# part of `make test`: run it by hand or in a nightly job.
#
#   tests/lib/valgrind-smoke.sh [PYTEST -k EXPRESSION]
#
# Owns: wrapping gatewayd and workerd of build/ in valgrind (a folder of
# wrapper scripts handed to the suite as WSGW_BUILD; chanctl runs as is),
# and the summary: per daemon process, bytes definitely and indirectly
# lost and the error count. A leak or a memory error makes valgrind exit
# non-zero, which the suite's teardown reports as a failed test; the
# script exits non-zero then too.
#
# Environment: WSGW_BROKER_DIR reuses a running node (tests/lib/broker.sh);
# otherwise the suite starts its own. VALGRIND_ARGS adds valgrind options.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
PY=/usr/bin/python3
K=${1:-"test_event_emitted_with_chanctl_arrives_byte_for_byte or test_new_request_replaces_the_set"}

command -v valgrind >/dev/null || { echo "valgrind-smoke: valgrind is missing (make deps)" >&2; exit 1; }
make -j"$(nproc 2>/dev/null || echo 2)" all >/dev/null

STATE=$(mktemp -d "${TMPDIR:-/tmp}/wsgw-valgrind.XXXXXX")
WRAP=$STATE/bin
mkdir -p "$WRAP" "$STATE/vg"
for d in gatewayd workerd; do
  # exec: SIGTERM from the fixture reaches valgrind, which passes it on, so
  # the daemon shuts down cleanly and the leak check runs at its exit.
  cat >"$WRAP/$d" <<EOS
#!/bin/sh
exec valgrind --leak-check=full --show-leak-kinds=definite,indirect \\
  --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \\
  --track-fds=no --log-file="$STATE/vg/$d.%p.log" ${VALGRIND_ARGS:-} \\
  "$ROOT/build/$d" "\$@"
EOS
  chmod +x "$WRAP/$d"
done
ln -s "$ROOT/build/chanctl" "$WRAP/chanctl"

set +e
WSGW_BUILD=$WRAP WSGW_LOG_DIR=$STATE/logs \
  "$PY" -m pytest tests/integration -p no:cacheprovider -q -rfE -k "$K"
rc=$?
set -e

# "definitely lost: 0 bytes in 0 blocks"; absent when nothing leaked at all
# ("All heap blocks were freed").
bytes_of() {
  local v
  v=$(grep -E "$1 lost:" "$2" | sed -E 's/.*lost: ([0-9,]+) bytes.*/\1/' | tr -d ,)
  echo "${v:-0}"
}
echo
echo "valgrind: process             definitely  indirectly  errors"
bad=0
for f in "$STATE"/vg/*.log; do
  [[ -e $f ]] || continue
  grep -q "ERROR SUMMARY" "$f" || continue # a wrapper that exec'd nothing
  def=$(bytes_of definitely "$f")
  ind=$(bytes_of indirectly "$f")
  errs=$(grep -E "ERROR SUMMARY" "$f" | sed -E 's/.*SUMMARY: ([0-9,]+) errors.*/\1/' | tr -d ,)
  printf 'valgrind: %-24s %10s %11s %7s\n' "$(basename "$f" .log)" "$def" "$ind" "$errs"
  if ((def > 0 || ind > 0 || errs > 0)); then bad=1; fi
done
echo "valgrind logs: $STATE/vg"
((rc == 0 && bad == 0))
