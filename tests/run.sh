#!/usr/bin/env bash
# run.sh - the whole test suite (`make test`; CI runs it through .ci/run).
#
# Owns: the order of the suite and its summary. Steps:
#   1. build the normal variant (build/) and the ASan+UBSan one (build-san/),
#      binaries and unit tests;
#   2. run the unit tests of both, then every fuzz target (tests/fuzz,
#      clang + ASan+UBSan) once over its committed corpus, then the
#      JavaScript SDK's unit tests (node --test), its declarations check
#      (tsc --noEmit) and its minified build (clients/js; deps.sh ran npm ci);
#   3. start one private RabbitMQ node (tests/lib/broker.sh);
#   4. run the pytest integration suite (tests/integration) against build/,
#      then against build-san/ (sanitizer reports in a daemon's stderr fail
#      the test that ran it);
#   5. stop the node on every exit path, print "N passed, N failed" (unit
#      tests + integration tests; a failed build or step counts as one failed)
#      and exit non-zero when anything failed.
#
# Environment: WSGW_TEST_STATE=DIR keeps the broker, logs and reports in DIR
# (default: a fresh temporary folder, removed at the end unless something
# failed). PYTEST_ARGS adds pytest arguments (e.g. "-k subscribe -x").
# WSGW_TEST_VARIANTS="build" runs one variant only.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=/usr/bin/python3
JOBS=$(nproc 2>/dev/null || echo 2)
VARIANTS=${WSGW_TEST_VARIANTS:-"build build-san"}

STATE=${WSGW_TEST_STATE:-}
KEEP_STATE=1
if [[ -z $STATE ]]; then
  STATE=$(mktemp -d "${TMPDIR:-/tmp}/wsgw-test.XXXXXX")
  KEEP_STATE=0
fi
mkdir -p "$STATE"
BROKER_DIR=$STATE/broker

passed=0
failed=0
failures=()
broker_started=0
summary_printed=0

cleanup() {
  local rc=$?
  if ((broker_started)); then
    tests/lib/broker.sh stop "$BROKER_DIR" >/dev/null 2>&1 || true
  fi
  if ((rc == 0 && failed == 0 && KEEP_STATE == 0)); then
    rm -rf "$STATE"
  elif ((!summary_printed)); then
    echo "run.sh: logs and reports kept in $STATE"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted"; exit 130' INT TERM

banner() { printf '\n==== %s ====\n' "$*"; }

fail_step() {
  failed=$((failed + 1))
  failures+=("$1")
  echo "run.sh: FAILED: $1"
}

# Adds the counts of a "N passed, N failed" line (the unit-test runner's).
add_counts_from() {
  local line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$1" | tail -n 1 || true)
  if [[ -z $line ]]; then
    return 1
  fi
  p=${line%% passed*}
  f=${line#*passed, }
  f=${f%% failed*}
  passed=$((passed + p))
  failed=$((failed + f))
}

# Adds the counts from a pytest JUnit XML report; errors count as failures.
add_counts_from_junit() {
  local counts p f
  counts=$("$PY" - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f)
EOF
  ) || return 1
  read -r p f <<<"$counts"
  passed=$((passed + p))
  failed=$((failed + f))
}

# ---- 1. builds ---------------------------------------------------------
declare -A built=() built_unit=()
for v in $VARIANTS; do
  san=0
  [[ $v == build-san ]] && san=1
  banner "build $v (make SAN=$san)"
  if make -j"$JOBS" SAN=$san all; then
    built[$v]=1
  else
    fail_step "build $v"
  fi
  if make -j"$JOBS" SAN=$san unit-tests; then
    built_unit[$v]=1
  else
    fail_step "build $v/unit-tests"
  fi
done

# ---- 2. unit tests -----------------------------------------------------
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for v in $VARIANTS; do
  [[ -n ${built_unit[$v]:-} ]] || continue
  banner "unit tests ($v)"
  log=$STATE/unit-$v.log
  set +e
  "$v/unit-tests" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  before=$failed
  if ! add_counts_from "$log"; then
    fail_step "unit tests $v (no summary line; exit $rc)"
  elif ((rc != 0 && failed == before)); then
    fail_step "unit tests $v (exit $rc: a sanitizer report, or no tests ran)"
  elif ((rc != 0)); then
    failures+=("unit tests $v")
  fi
done

# Fuzz targets over their seeds and saved crashes: a regression check, not
# fuzzing (`make fuzz` does that). One count per target.
banner "fuzz corpora (tests/fuzz)"
if make -j"$JOBS" fuzz-build >"$STATE/fuzz-build.log" 2>&1; then
  log=$STATE/fuzz-corpus.log
  set +e
  tests/fuzz/run.sh corpus 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  set -e
  if ! add_counts_from "$log"; then
    fail_step "fuzz corpora (no summary line; exit $rc)"
  elif ((rc != 0)); then
    failures+=("fuzz corpora")
  fi
else
  tail -n 30 "$STATE/fuzz-build.log"
  fail_step "build fuzz targets (log: $STATE/fuzz-build.log)"
fi

# The JavaScript SDK (clients/js): its unit tests count one each (node's
# summary: "# pass N" from the TAP reporter, "ℹ pass N" from the spec one);
# a test node cancelled (one whose promise never settled) counts as failed;
# the declarations check and the minified build count one each.
add_counts_from_node() {
  local p f c
  p=$(grep -aE '^(# |ℹ )pass [0-9]+$' "$1" | tail -n 1 | grep -oE '[0-9]+$' || true)
  f=$(grep -aE '^(# |ℹ )fail [0-9]+$' "$1" | tail -n 1 | grep -oE '[0-9]+$' || true)
  c=$(grep -aE '^(# |ℹ )cancelled [0-9]+$' "$1" | tail -n 1 | grep -oE '[0-9]+$' || true)
  [[ -n $p && -n $f ]] || return 1
  passed=$((passed + p))
  failed=$((failed + f + ${c:-0}))
}

# One step of clients/js that counts one: NAME LOG COMMAND...
js_step() {
  local name=$1 log=$STATE/$2
  shift 2
  if (cd clients/js && "$@") >"$log" 2>&1; then
    passed=$((passed + 1))
    echo "ok: $name"
  else
    cat "$log"
    fail_step "JavaScript SDK $name (log: $log)"
  fi
}

banner "JavaScript SDK (clients/js)"
if ! command -v node >/dev/null || [[ ! -d clients/js/node_modules/typescript ]]; then
  fail_step "JavaScript SDK (node or clients/js/node_modules missing: run make deps)"
else
  log=$STATE/js-unit.log
  set +e
  (cd clients/js && node --test test/unit/*.test.js) >"$log" 2>&1
  rc=$?
  set -e
  grep -aE '^ *(not ok|# (pass|fail) |ℹ (pass|fail) |✖)' "$log" || true
  before=$failed
  if ! add_counts_from_node "$log"; then
    fail_step "JavaScript SDK unit tests (no summary; exit $rc; log: $log)"
  elif ((rc != 0 && failed == before)); then
    fail_step "JavaScript SDK unit tests (exit $rc, no test counted failed; log: $log)"
  elif ((rc != 0)); then
    failures+=("JavaScript SDK unit tests (log: $log)")
  fi
  js_step "tsc --noEmit (declarations)" js-typecheck.log npm run --silent typecheck
  # The build also checks that README.md states the size it measures.
  js_step "minified build, its size in README.md" js-build.log node scripts/build.mjs --check-readme
fi

# ---- 3. broker ---------------------------------------------------------
if ((${#built[@]} == 0)); then
  for v in $VARIANTS; do fail_step "integration $v (not built)"; done
elif banner "broker" && tests/lib/broker.sh start "$BROKER_DIR"; then
  broker_started=1
else
  broker_started=1 # a half-started node is stopped by the trap
  fail_step "broker start"
fi

# ---- 4. integration tests ----------------------------------------------
if [[ -f $BROKER_DIR/env ]] && tests/lib/broker.sh status "$BROKER_DIR"; then
  for v in $VARIANTS; do
    if [[ -z ${built[$v]:-} ]]; then
      fail_step "integration $v (not built)"
      continue
    fi
    banner "integration tests ($v)"
    report=$STATE/junit-$v.xml
    rm -f "$report"
    set +e
    # --foreground: pytest stays in this process group, so a Ctrl-C reaches
    # it (it then stops its daemons); on timeout it gets SIGINT the same way.
    # shellcheck disable=SC2086
    WSGW_BUILD=$ROOT/$v WSGW_BROKER_DIR=$BROKER_DIR WSGW_LOG_DIR=$STATE/logs-$v \
      timeout --foreground --signal=INT --kill-after=60 1200 \
      "$PY" -m pytest tests/integration -p no:cacheprovider -q -rfE \
      --junitxml="$report" ${PYTEST_ARGS:-}
    rc=$?
    set -e
    if [[ -f $report ]] && add_counts_from_junit "$report"; then
      ((rc == 0)) || failures+=("integration $v")
      # pytest exit 1 = tests failed (counted); anything else is the run's.
      if ((rc != 0 && rc != 1)); then fail_step "integration $v (pytest exit $rc)"; fi
    else
      fail_step "integration $v (no report; pytest exit $rc)"
    fi
  done
fi

# ---- 4b. benchmark smoke (bench/run.sh smoke) ----------------------------
# The benchmark's client, emitter and scenarios in seconds, on the normal
# build and this broker: fails on lost, out-of-order or refused events and
# connections, never on speed. Counts as one test.
if [[ -n ${built[build]:-} && -f $BROKER_DIR/env ]]; then
  banner "benchmark smoke (build)"
  if ! make -j"$JOBS" bench-build >"$STATE/bench-build.log" 2>&1; then
    tail -n 30 "$STATE/bench-build.log"
    fail_step "build benchmark tools (log: $STATE/bench-build.log)"
  elif WSGW_BROKER_DIR=$BROKER_DIR timeout --foreground --signal=INT --kill-after=60 300 \
    bench/run.sh smoke 2>&1 | tee "$STATE/bench-smoke.log"; then # pipefail: run.sh's status
    passed=$((passed + 1))
  else
    fail_step "benchmark smoke (log: $STATE/bench-smoke.log)"
  fi
fi

# ---- 5. summary --------------------------------------------------------
banner "summary"
if ((${#failures[@]} > 0)); then
  printf 'failed: %s\n' "${failures[@]}"
fi
if ((failed > 0 || KEEP_STATE)); then
  echo "logs and reports: $STATE"
fi
summary_printed=1
echo "$passed passed, $failed failed"
((failed == 0))
