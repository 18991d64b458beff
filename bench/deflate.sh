#!/usr/bin/env bash
# deflate.sh - zlib against libdeflate for permessage-deflate (`make
# bench-deflate`): CPU per event and ratio on the AWX sample
# (bench/deflate_libs.c), then how clients' decoders read each one's
# messages (bench/deflate_decode.py). Prints two tables; writes no file of
# the repository.
#
# libdeflate-dev is needed here only: `make all` never needs it. When it is
# missing it is installed (apt-get, as tests/lib/deps.sh does) unless
# BENCH_NO_INSTALL=1 or there is no root and no sudo; then the benchmark is
# skipped with a message and exit status 0.
#
# Owns: a temporary folder for the compressed messages (removed at the
# end). Environment: WSGW_BUILD (default build), BENCH_DEFLATE_EVENTS
# (2000), BENCH_DEFLATE_REPS (15), BENCH_DEFLATE_SEED (16).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=bench-deflate
# shellcheck source=bench/lib.sh
. bench/lib.sh
BUILD=${WSGW_BUILD:-build}

installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# 0 when libdeflate-dev is there (installed now if need be), 1 to skip.
need_libdeflate() {
  installed libdeflate-dev && return 0
  if [[ -n ${BENCH_NO_INSTALL:-} ]]; then
    echo "$BENCH_NAME: skipped: libdeflate-dev is not installed (BENCH_NO_INSTALL is set)"
    return 1
  fi
  local -a sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
      echo "$BENCH_NAME: skipped: libdeflate-dev is not installed, and no root or sudo to install it"
      return 1
    fi
    sudo=(sudo)
  fi
  echo "$BENCH_NAME: installing libdeflate-dev"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -q >/dev/null || true
  "${sudo[@]}" apt-get install -y -q --no-install-recommends libdeflate-dev >/dev/null || true
  installed libdeflate-dev && return 0
  echo "$BENCH_NAME: skipped: libdeflate-dev could not be installed"
  return 1
}

need_libdeflate || exit 0
make --no-print-directory -s BUILD="$BUILD" "$BUILD/bench-deflate"

OUT=$(mktemp -d "${TMPDIR:-/tmp}/wsgw-deflate.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
"$BUILD/bench-deflate" --events "${BENCH_DEFLATE_EVENTS:-2000}" --reps "${BENCH_DEFLATE_REPS:-15}" \
  --seed "${BENCH_DEFLATE_SEED:-16}" --out "$OUT" >"$OUT/codecs.txt" ||
  { cat "$OUT/codecs.txt"; die "bench-deflate failed (or a message did not inflate back)"; }
/usr/bin/python3 bench/deflate_decode.py "$OUT" >"$OUT/decode.txt" ||
  die "the decoding script failed"

kv_line() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

sample=$(grep '^SAMPLE ' "$OUT/codecs.txt")
echo "Sample: $(kv_line "$sample" events) AWX job events (seed $(kv_line "$sample" seed)), $(kv_line "$sample" min)-$(kv_line "$sample" max) bytes, median $(kv_line "$sample" median), mean $(kv_line "$sample" mean)"
echo
echo "| codec | us per event: best / median pass, caches warm | us per event, caches cold | bytes out per event | ratio | inflates back |"
echo "|---|---|---|---|---|---|"
while read -r line; do
  back=all
  [[ $(kv_line "$line" inflate_bad) == 0 ]] || back="$(kv_line "$line" inflate_bad) did not"
  printf '| %s | %s / %s | %s | %s | %s | %s |\n' "$(kv_line "$line" name)" \
    "$(kv_line "$line" us_per_event)" "$(kv_line "$line" us_per_event_median)" \
    "$(kv_line "$line" us_per_event_cold)" "$(kv_line "$line" mean_out)" \
    "$(kv_line "$line" ratio)" "$back"
done < <(grep '^CODEC ' "$OUT/codecs.txt")
echo
echo "Decoded by clients (messages ok / wrong / failed, of $(kv_line "$sample" events)):"
echo
echo "| codec | zlib, fresh inflater | zlib, kept inflater | websockets (server_no_context_takeover) | websockets (context kept) |"
echo "|---|---|---|---|---|"
for codec in $(sed -n 's/^DECODE codec=\([^ ]*\) .*/\1/p' "$OUT/decode.txt" | uniq); do
  row="| $codec |"
  for d in zlib-fresh zlib-kept websockets-nct websockets-ct; do
    line=$(grep "^DECODE codec=$codec decoder=$d " "$OUT/decode.txt")
    row+=" $(kv_line "$line" ok) / $(kv_line "$line" wrong) / $(kv_line "$line" failed) |"
  done
  echo "$row"
done
