#!/usr/bin/env bash
# run.sh - runs the libFuzzer targets of tests/fuzz (built by `make
# fuzz-build` into build-fuzz/). `make fuzz` and `make fuzz-corpus` call it;
# so does tests/run.sh, for the corpus pass.
#
#   tests/fuzz/run.sh corpus [TARGET...]   each target over every file of
#                                          its committed corpus, once
#   tests/fuzz/run.sh fuzz [TARGET...]     each target for FUZZ_SECONDS
#                                          (default 180), one after another
#
# Owns: how the targets are run. Ends with "N passed, N failed" (one count
# per target) and exits non-zero when a target failed. Fuzzing writes new
# inputs to build-fuzz/corpus/TARGET (not to the committed seeds: merge the
# good ones by hand, `TARGET -merge=1 tests/fuzz/corpus/TARGET DIR`) and
# crashes to build-fuzz/artifacts/. FUZZ_ARGS adds libFuzzer options.
set -euo pipefail

cd "$(dirname "$0")/../.."
BIN=${FUZZ_BUILD:-build-fuzz}
SEEDS=tests/fuzz/corpus
MODE=${1:-}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  for f in tests/fuzz/fuzz_*.c; do
    t=${f##*/}
    TARGETS+=("${t%.c}")
  done
fi

# Leaks fail a run like any other report; UBSan stops at the first finding.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
for t in "${TARGETS[@]}"; do
  exe=$BIN/$t
  if [[ ! -x $exe ]]; then
    echo "fuzz: $exe is missing (make fuzz-build)"
    failed=$((failed + 1))
    continue
  fi
  case $MODE in
    corpus)
      mapfile -t files < <(find "$SEEDS/$t" -type f | sort)
      if ((${#files[@]} == 0)); then
        echo "fuzz: $t: no corpus in $SEEDS/$t"
        failed=$((failed + 1))
        continue
      fi
      # One execution per file, no mutation: a seed or a saved crash that
      # fails now is a regression.
      log=$(mktemp)
      # shellcheck disable=SC2086
      if "$exe" ${FUZZ_ARGS:-} "${files[@]}" >"$log" 2>&1; then
        echo "fuzz: $t: ${#files[@]} inputs ok"
        passed=$((passed + 1))
      else
        cat "$log"
        echo "fuzz: $t: FAILED on its corpus"
        failed=$((failed + 1))
      fi
      rm -f "$log"
      ;;
    fuzz)
      secs=${FUZZ_SECONDS:-180}
      mkdir -p "$BIN/corpus/$t" "$BIN/artifacts"
      echo "fuzz: $t for ${secs}s"
      # shellcheck disable=SC2086
      if "$exe" -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$BIN/artifacts/$t-" ${FUZZ_ARGS:-} \
        "$BIN/corpus/$t" "$SEEDS/$t"; then
        passed=$((passed + 1))
      else
        echo "fuzz: $t: FAILED (input in $BIN/artifacts/)"
        failed=$((failed + 1))
      fi
      ;;
    *)
      echo "usage: $0 corpus|fuzz [TARGET...]" >&2
      exit 2
      ;;
  esac
done
echo "$passed passed, $failed failed"
((failed == 0))
