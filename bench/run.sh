#!/usr/bin/env bash
# run.sh - the benchmark scenarios: `make bench` (full) and `make bench-smoke`
# (smoke, also run by `make test`).
#
#   bench/run.sh full      S1-S4, each figure the median of BENCH_RUNS runs;
#                          prints a table and rewrites the generated part of
#                          docs/BENCHMARKS.md (between the bench:begin and
#                          bench:end markers; the rest of the file is kept)
#   bench/run.sh smoke     a few hundred connections, seconds: fails when a
#                          client sees a lost or out-of-order event or any
#                          error, never on speed
#   bench/run.sh s1|events|s4 ARGS...   one run of one scenario (see below)
#   bench/run.sh profile   one S2 run with the gateway under perf record
#                          (and, with BENCH_CALLGRIND=1, a smaller one under
#                          callgrind); prints where the reports are.
#                          BENCH_PROFILE_CONNS/_COUNT/_RATE profile another
#                          shape (100/20000/2000 is S3)
#
# Owns: a private RabbitMQ node (tests/lib/broker.sh) unless WSGW_BROKER_DIR
# names a running one (then a vhost of its own is used and deleted), the
# daemons it starts (by pid, never by name), a temporary state folder
# (removed at the end unless something failed), and the pinning: gateway
# on CPU 0, load client on CPU 1, when there are two CPUs or more.
#
# Environment: WSGW_BUILD (default build), BENCH_RUNS (3), BENCH_S1_SIZES
# ("10000 19000"), BENCH_KEEP=1 keeps the state folder.
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=bench
# shellcheck source=bench/lib.sh
. bench/lib.sh
ROOT=$(pwd)
MODE=${1:-full}
BUILD=${WSGW_BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
RUNS=${BENCH_RUNS:-3}
S1_SIZES=${BENCH_S1_SIZES:-"10000 19000"}
SECRET="bench-secret-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
GROUP=jobs-bench
CLK_TCK=$(getconf CLK_TCK)

STATE=$(mktemp -d "${TMPDIR:-/tmp}/wsgw-bench.XXXXXX")
OWN_BROKER=1
BROKER_DIR=$STATE/broker
VHOST=
if [[ -n ${WSGW_BROKER_DIR:-} ]]; then
  OWN_BROKER=0
  BROKER_DIR=$WSGW_BROKER_DIR
  VHOST=bench-$$
fi

if (($(nproc) >= 2)); then
  GW_PIN=(taskset -c 0)
  CL_PIN=(taskset -c 1)
else
  GW_PIN=()
  CL_PIN=()
fi

GW_PID=
WK_PIDS=()
WSB_PID=
ok=0

# ---- process hygiene -------------------------------------------------------

cleanup() {
  local rc=$?
  stop_pid "$WSB_PID"
  stop_stack
  if ((OWN_BROKER)); then
    tests/lib/broker.sh stop "$BROKER_DIR" >/dev/null 2>&1 || true
  elif [[ -n $VHOST ]]; then
    tests/lib/broker.sh ctl "$BROKER_DIR" delete_vhost "$VHOST" >/dev/null 2>&1 || true
  fi
  if ((rc == 0 && ok)) && [[ -z ${BENCH_KEEP:-} ]]; then
    rm -rf "$STATE"
  else
    echo "bench: logs kept in $STATE"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- broker and daemons ----------------------------------------------------

start_broker() {
  if ((OWN_BROKER)); then
    tests/lib/broker.sh start "$BROKER_DIR" >"$STATE/broker.log" 2>&1 ||
      { cat "$STATE/broker.log"; die "broker did not start"; }
  else
    tests/lib/broker.sh ctl "$BROKER_DIR" add_vhost "$VHOST" >/dev/null
    tests/lib/broker.sh ctl "$BROKER_DIR" set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null
  fi
  # shellcheck disable=SC1091
  AMQP_PORT=$(. "$BROKER_DIR/env" && echo "$AMQP_PORT")
  AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/${VHOST}"
  TOKEN=$("$BUILD/chanctl" token --user 1 --ttl 86400 --auth.secret="$SECRET")
}

# Settings fit for load: no per-connection message rate cap (S4 sends as
# fast as replies come), a deep accept backlog, warnings only (an info line
# per handshake would measure the logger), a quick stop.
start_stack() {
  local workers=$1 i
  GW_PORT=$(free_port)
  # shellcheck disable=SC2046 # the flag list is empty or two words
  "${GW_PIN[@]}" "$BUILD/gatewayd" $(gateway_load_flags) --amqp.url="$AMQP_URL" \
    --gateway.listen="127.0.0.1:$GW_PORT" --gateway.metrics_listen= --gateway.processes=1 \
    --gateway.max_rate=1000000 --gateway.backlog=4096 \
    --gateway.group_changes_rate=1000000 --gateway.group_changes_burst=1000000 \
    --gateway.shutdown_spread=0 --gateway.shutdown_timeout=1s \
    --log.level=warn >>"$STATE/gatewayd.log" 2>&1 &
  GW_PID=$!
  WK_PIDS=()
  for ((i = 0; i < workers; i++)); do
    "$BUILD/workerd" --amqp.url="$AMQP_URL" --auth.secret="$SECRET" \
      --log.level=warn >>"$STATE/workerd.log" 2>&1 &
    WK_PIDS+=($!)
  done
  wait_stack_up 0.2
}

# ---- measuring -------------------------------------------------------------

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status"; }
# utime + stime of every thread of the gateway, in clock ticks.
cpu_ticks() { sed 's/^.*) //' "/proc/$GW_PID/stat" | awk '{print $12 + $13}'; }

# Starts the load client in the background, pinned, output to file $1.
wsb_start() {
  local out=$1
  shift
  : >"$out"
  "${CL_PIN[@]}" "$BUILD/wsbench" --port "$GW_PORT" --token "$TOKEN" "$@" >"$out" 2>>"$STATE/wsbench.err" &
  WSB_PID=$!
}

# Waits for the client; returns its exit status.
wsb_wait() {
  local rc=0
  wait "$WSB_PID" || rc=$?
  WSB_PID=
  return "$rc"
}

# Client result problems (lost, out of order, errors) as one line, or "".
problems() {
  local f=$1 tag=${2:-RESULT}
  local errs lost ooo ready conns
  errs=$(kv "$f" "$tag" errors) lost=$(kv "$f" "$tag" lost) ooo=$(kv "$f" "$tag" ooo)
  ready=$(kv "$f" "$tag" ready) conns=$(kv "$f" "$tag" conns)
  if [[ -z $errs ]]; then echo "no $tag line"; return; fi
  if [[ $errs != 0 || ${lost:-0} != 0 || ${ooo:-0} != 0 || $ready != "$conns" ]]; then
    echo "errors=$errs lost=${lost:-0} ooo=${ooo:-0} ready=$ready/$conns $(grep -o 'first_error=.*' "$f" | tail -1)"
  fi
}

# ---- scenarios (each prints key=value figures on one line) --------------------

# S1: n idle subscribed connections: handshakes/s and gateway RSS per connection.
s1() {
  local n=$1 workers=$2 out=$STATE/s1-$1-$2.out
  start_stack "$workers"
  local rss0 rss1
  rss0=$(rss_kib)
  wsb_start "$out" --conns "$n" --sources 8 --window 512 --mode hold --timeout-ms 120000
  wait_line "$out" READY 180 || { stop_pid "$WSB_PID"; die "S1 $n: no READY line ($(problems "$out" READY))"; }
  sleep 0.5 # let the last replies and binds settle
  rss1=$(rss_kib)
  kill -TERM "$WSB_PID"
  wsb_wait || true
  stop_stack
  echo "hs_per_s=$(kv "$out" READY hs_per_s) rss_per_conn=$(((rss1 - rss0) * 1024 / n))" \
    "errors=$(kv "$out" RESULT errors) problems=\"$(problems "$out")\""
}

# Events to subscribed connections: latency, loss, deliveries/s, gateway
# CPU per delivery (utime+stime from READY to RECEIVED).
events() {
  local name=$1 conns=$2 count=$3 rate=$4 out=$STATE/$1.out
  start_stack 1
  wsb_start "$out" --conns "$conns" --mode events --expect "$count" --idle-ms 3000 \
    --timeout-ms 120000
  wait_line "$out" READY 60 || { stop_pid "$WSB_PID"; die "$name: no READY line ($(problems "$out" READY))"; }
  local cpu0 cpu1
  cpu0=$(cpu_ticks)
  "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count "$count" --rate "$rate" \
    >"$STATE/$name.emit" || die "$name: emitter failed"
  wait_line "$out" RECEIVED 180 || die "$name: no RECEIVED line"
  cpu1=$(cpu_ticks)
  wsb_wait || true
  stop_stack
  local ev
  ev=$(kv "$out" RESULT events)
  local us="n/a"
  ((ev > 0)) && us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v n="$ev" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  echo "deliv_per_s=$(kv "$out" RESULT deliv_per_s) us_per_delivery=$us" \
    "p50_us=$(kv "$out" RESULT lat_p50_us) p99_us=$(kv "$out" RESULT lat_p99_us)" \
    "max_us=$(kv "$out" RESULT lat_max_us) lost=$(kv "$out" RESULT lost)" \
    "events=$ev problems=\"$(problems "$out")\""
}

# S4: subscription changes as fast as replies come.
s4() {
  local workers=$1 conns=$2 ms=$3 out=$STATE/s4-$1.out
  start_stack "$workers"
  wsb_start "$out" --conns "$conns" --mode churn --churn-ms "$ms" --timeout-ms 30000
  wsb_wait || true
  stop_stack
  echo "req_per_s=$(kv "$out" RESULT churn_per_s) p50_us=$(kv "$out" RESULT churn_p50_us)" \
    "p99_us=$(kv "$out" RESULT churn_p99_us) problems=\"$(problems "$out")\""
}

# ---- medians and the table ----------------------------------------------------

# Runs "$@" RUNS times; the lines go to the array named by $1.
repeat() {
  local -n acc=$1
  shift
  local i line
  for ((i = 1; i <= RUNS; i++)); do
    line=$("$@")
    echo "  run $i: $line" >&2
    acc+=("$line")
  done
}

# met LESS|MORE value target
met() {
  awk -v v="$2" -v t="$3" -v op="$1" 'BEGIN {
    if (v == "n/a" || v == "") { print "n/a"; exit }
    ok = (op == "le") ? (v + 0 <= t + 0) : (v + 0 >= t + 0); print ok ? "met" : "not met" }'
}

kib() { awk -v b="$1" 'BEGIN {if (b == "n/a") print b; else printf "%.2f", b / 1024}'; }
ms() { awk -v u="$1" 'BEGIN {if (u == "n/a") print u; else printf "%.2f", u / 1000}'; }
us() { awk -v u="$1" 'BEGIN {if (u == "n/a") print u; else printf "%.0f", u}'; }

run_full() {
  local n w
  declare -gA FIG=()
  local -a r
  for n in $S1_SIZES; do
    local -a rss_all=()
    for w in 1 2; do
      echo "S1: $n idle connections, $w worker(s)" >&2
      r=()
      repeat r s1 "$n" "$w"
      FIG[s1_hs_${n}_$w]=$(median hs_per_s "${r[@]}")
      rss_all+=("${r[@]}")
    done
    FIG[s1_rss_$n]=$(median rss_per_conn "${rss_all[@]}")
  done
  echo "S2: burst fanout, 1000 subscribers, 2000 events" >&2
  r=()
  repeat r events s2 1000 2000 0
  for k in deliv_per_s us_per_delivery p50_us p99_us max_us lost; do FIG[s2_$k]=$(median "$k" "${r[@]}"); done
  echo "S3: steady stream, 100 subscribers, 2000 events/s for 10 s" >&2
  r=()
  repeat r events s3 100 20000 2000
  for k in p50_us p99_us max_us lost; do FIG[s3_$k]=$(median "$k" "${r[@]}"); done
  for w in 1 2; do
    echo "S4: subscription churn, 200 connections, $w worker(s)" >&2
    r=()
    repeat r s4 "$w" 200 5000
    FIG[s4_rps_$w]=$(median req_per_s "${r[@]}")
    FIG[s4_p99_$w]=$(median p99_us "${r[@]}")
  done
  write_report
}



# One table row: scenario | figure | measured | target | verdict
row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

table() {
  local n
  echo "| scenario | figure | measured (median of $RUNS) | target | |"
  echo "|---|---|---|---|---|"
  for n in $S1_SIZES; do
    local rss=${FIG[s1_rss_$n]}
    local verdict=""
    [[ $n == 19000 ]] && verdict=$(met le "$rss" 6144)
    row "S1 idle, $n conns" "gateway RSS per connection (KiB)" "$(kib "$rss")" \
      "$([[ $n == 19000 ]] && echo '<= 6 KiB' || echo '-')" "$verdict"
    row "S1 idle, $n conns" "handshakes/s, 1 worker" "$(us "${FIG[s1_hs_${n}_1]}")" "-" ""
    row "S1 idle, $n conns" "handshakes/s, 2 workers" "$(us "${FIG[s1_hs_${n}_2]}")" \
      "$([[ $n == 19000 ]] && echo '>= 5000' || echo '-')" \
      "$([[ $n == 19000 ]] && met ge "${FIG[s1_hs_${n}_2]}" 5000)"
  done
  row "S2 burst fanout" "deliveries/s" "$(us "${FIG[s2_deliv_per_s]}")" "-" ""
  row "S2 burst fanout" "gateway CPU per delivery (us)" "${FIG[s2_us_per_delivery]}" "<= 1.0" \
    "$(met le "${FIG[s2_us_per_delivery]}" 1.0)"
  row "S2 burst fanout" "latency p50 / p99 / max (ms)" \
    "$(ms "${FIG[s2_p50_us]}") / $(ms "${FIG[s2_p99_us]}") / $(ms "${FIG[s2_max_us]}")" "-" ""
  row "S2 burst fanout" "deliveries lost" "${FIG[s2_lost]}" "0" "$(met le "${FIG[s2_lost]}" 0)"
  row "S3 steady 2000/s" "latency p50 / p99 / max (ms)" \
    "$(ms "${FIG[s3_p50_us]}") / $(ms "${FIG[s3_p99_us]}") / $(ms "${FIG[s3_max_us]}")" \
    "p99 <= 5 ms" "$(met le "${FIG[s3_p99_us]}" 5000)"
  row "S3 steady 2000/s" "deliveries lost" "${FIG[s3_lost]}" "0" "$(met le "${FIG[s3_lost]}" 0)"
  row "S4 churn" "changes/s, 1 worker (p99 ms)" \
    "$(us "${FIG[s4_rps_1]}") ($(ms "${FIG[s4_p99_1]}"))" "-" ""
  row "S4 churn" "changes/s, 2 workers (p99 ms)" \
    "$(us "${FIG[s4_rps_2]}") ($(ms "${FIG[s4_p99_2]}"))" ">= 5000" \
    "$(met ge "${FIG[s4_rps_2]}" 5000)"
}

generated() {
  echo "<!-- bench:begin (written by bench/run.sh; edits here are lost) -->"
  echo "## Figures"
  echo
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Commit: $(commit)"
  echo "- Machine: $(machine)"
  echo "- Pinning: gateway on CPU 0, load client on CPU 1 (broker, workers and emitter float)"
  echo "- Reproduce: \`make bench\` (BENCH_RUNS=N for another run count)"
  echo
  table
  echo
  echo "Scenarios: S1 N connections from 127.0.0.1-8 (bound before connect), each"
  echo "upgraded with a token checked by a worker and subscribed to \`jobs-bench\`;"
  echo "handshakes/s = accepted / (last accept - first connect), 512 in flight; RSS"
  echo "per connection = (VmRSS with N open - VmRSS before) / N. S2 one group of"
  echo "1,000 members, 2,000 events of 256 bytes published back to back; CPU per"
  echo "delivery = gateway utime+stime (all threads) while they flowed / deliveries."
  echo "S3 100 members, 2,000 events/s for 10 s. S4 200 connections each sending"
  echo "a subscription change as soon as the previous one is answered, alternating"
  echo "two groups, for 5 s. Latency = receipt (CLOCK_REALTIME) - the emitter's"
  echo "stamp in the event."
  echo
  echo "### What an idle connection costs, field by field (\`build/bench-sizes\`)"
  echo
  echo '```'
  "$BUILD/bench-sizes"
  echo '```'
  echo "<!-- bench:end -->"
}

write_report() {
  generated >"$STATE/generated.md"
  echo
  table
  doc_put_block "$ROOT/docs/BENCHMARKS.md" "<!-- bench:begin" "<!-- bench:end" \
    "$STATE/generated.md" "Figures"
  echo "bench: wrote docs/BENCHMARKS.md"
}

# ---- smoke: correctness of the benchmark path, in seconds ---------------------

smoke_check() {
  local what=$1 out=$2 p
  p=$(problems "$out")
  if [[ -n $p ]]; then
    echo "bench-smoke: FAILED: $what: $p"
    return 1
  fi
  echo "bench-smoke: ok: $what ($(grep '^RESULT' "$out" | tr ' ' '\n' |
    grep -E '^(hs_per_s|events|lat_p99_us|churn_reqs)=' | tr '\n' ' '))"
}

run_smoke() {
  local out=$STATE/smoke.out fails=0
  start_stack 1
  wsb_start "$out" --conns 300 --mode none
  wsb_wait || true
  smoke_check "300 handshakes" "$out" || fails=$((fails + 1))
  # Burst fanout.
  wsb_start "$out.2" --conns 200 --mode events --expect 300 --idle-ms 3000 --timeout-ms 30000
  if wait_line "$out.2" READY 30; then
    "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count 300 >/dev/null ||
      fails=$((fails + 1))
  fi
  wsb_wait || true
  smoke_check "fanout 200 x 300 events" "$out.2" || fails=$((fails + 1))
  # A paced stream.
  wsb_start "$out.3" --conns 50 --mode events --expect 500 --idle-ms 3000 --timeout-ms 30000
  if wait_line "$out.3" READY 30; then
    "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count 500 --rate 1000 >/dev/null ||
      fails=$((fails + 1))
  fi
  wsb_wait || true
  smoke_check "stream 50 x 500 events at 1000/s" "$out.3" || fails=$((fails + 1))
  # Subscription churn.
  wsb_start "$out.4" --conns 50 --mode churn --churn-ms 1000 --timeout-ms 10000
  wsb_wait || true
  smoke_check "churn 50 conns for 1 s" "$out.4" || fails=$((fails + 1))
  stop_stack
  ((fails == 0)) || die "$fails smoke check(s) failed"
  echo "bench-smoke: 4 passed, 0 failed"
}

# ---- profile: where the gateway's time goes under S2 --------------------------

run_profile() {
  start_stack 1
  local out=$STATE/profile.out
  local conns=${BENCH_PROFILE_CONNS:-1000} count=${BENCH_PROFILE_COUNT:-2000}
  local rate=${BENCH_PROFILE_RATE:-0}
  wsb_start "$out" --conns "$conns" --mode events --expect "$count" --idle-ms 3000 \
    --timeout-ms 120000
  wait_line "$out" READY 60 || die "profile: no READY"
  # No -g: the daemons are built without frame pointers, so call chains
  # would be noise; a flat profile by symbol answers "where".
  perf record -F 5000 -p "$GW_PID" -o "$STATE/perf.data" >/dev/null 2>&1 &
  local perf_pid=$!
  sleep 0.5
  "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count "$count" --rate "$rate" >/dev/null
  wait_line "$out" RECEIVED 120 || true
  kill -INT "$perf_pid"
  wait "$perf_pid" || true
  wsb_wait || true
  stop_stack
  # `|| true`: head closing the pipe early is not a failure (pipefail).
  { perf report -i "$STATE/perf.data" --sort dso --stdio 2>/dev/null | grep -E '^ +[0-9]' || true
    perf report -i "$STATE/perf.data" --sort dso,symbol --stdio 2>/dev/null |
      grep -E '^ +[0-9]' | head -40 || true; } >"$STATE/perf-top.txt"
  cat "$STATE/perf-top.txt"
  echo "deliveries: $(kv "$out" RESULT events)"
  if [[ -n ${BENCH_CALLGRIND:-} ]]; then
    profile_callgrind
  fi
  BENCH_KEEP=1
  echo "bench: perf data in $STATE/perf.data"
}

# The same fanout, smaller (callgrind is ~50x slower), gateway under
# callgrind: exact instruction counts per function.
profile_callgrind() {
  # Instrumentation is off until the events flow (callgrind_control), so the
  # counts are the fanout's alone: no start-up, handshakes or teardown.
  GW_PIN=(valgrind --tool=callgrind --instr-atstart=no
    --callgrind-out-file="$STATE/callgrind.out")
  STOP_TICKS=600 # callgrind writes its file at exit: give it time
  start_stack 1
  local out=$STATE/callgrind.wsb
  wsb_start "$out" --conns 200 --mode events --expect 500 --idle-ms 5000 --timeout-ms 120000 \
    --linger-ms 5000
  wait_line "$out" READY 120 || die "callgrind: no READY"
  callgrind_control -i on "$GW_PID" >/dev/null
  "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count 500 >/dev/null
  wait_line "$out" RECEIVED 300 || true
  callgrind_control -i off "$GW_PID" >/dev/null
  wsb_wait || true
  stop_stack
  { callgrind_annotate "$STATE/callgrind.out" 2>/dev/null | head -60 || true; } >"$STATE/callgrind-top.txt"
  echo "callgrind deliveries: $(kv "$out" RESULT events)"
  cat "$STATE/callgrind-top.txt"
}

# ---- main -----------------------------------------------------------------------

case $MODE in
  full | smoke | profile | s1 | events | s4) ;;
  *) die "usage: bench/run.sh full|smoke|profile, or one run: s1 N WORKERS | events NAME CONNS COUNT RATE | s4 WORKERS CONNS MS" ;;
esac
for b in gatewayd workerd chanctl wsbench bench-emit bench-sizes; do
  [[ -x $BUILD/$b ]] || die "$BUILD/$b is missing: make bench-build"
done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
start_broker
case $MODE in
  full) run_full ;;
  smoke) run_smoke ;;
  profile) run_profile ;;
  *) shift && "$MODE" "$@" ;; # one run of one scenario, for development
esac
ok=1
