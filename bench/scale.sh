#!/usr/bin/env bash
# scale.sh - `make bench-scale`: gatewayd with N processes (gateway.processes)
# on this host, from one process to the 100,000-connection run.
#
#   bench/scale.sh            the table of docs/BENCHMARKS.md "Processes" (each
#                             row the median run of BENCH_RUNS, default 3):
#                             fanout (1,000 subscribers, a burst of events)
#                             with N = 1 and 2, and subscribed connections at
#                             each N's open-file ceiling (19,000 per process),
#                             up to 100,000 with N = 6
#                             and rewrites its block of docs/BENCHMARKS.md
#                             (between the bench-scale:begin and :end
#                             markers; BENCH_NO_DOC=1 leaves the file alone)
#   bench/scale.sh share      N = 2 with the history stream shared by the
#                             processes and not: events/s and the broker's
#                             CPU per event (medians of BENCH_RUNS)
#   bench/scale.sh one N CONNS EVENTS   one run, for development
#                             (BENCH_GW_FLAGS: more gatewayd flags, e.g.
#                             --history.shared=0)
#
# Each run: a private broker (tests/lib/broker.sh), gatewayd with N
# processes, 2 workers, the load client (build/wsbench, which forks a client
# process per 15,000 sockets and spreads them over 16 source addresses) with
# CONNS connections subscribed to one group, then EVENTS events emitted at
# once. Every connection must get every event, in order.
#
# Figures (gateway = the supervisor and all its processes):
#   hs/s          handshakes per second, each answered by a worker
#   rss/conn      (RSS with the connections open - RSS before) / CONNS
#   deliv/s       events x connections / time from first to last arrival
#   cpu/deliv     gateway CPU (user + system, all processes) from the first
#                 event to the last, per delivery; on loopback the system
#                 time includes the kernel's receive path for the client
#   cpu %         the same CPU over that wall time, in % of one core
#   per process   open sockets in each gateway process, from /proc/PID/fd
#   kernel/socket growth of the kernel's slab memory (/proc/meminfo) with the
#                 connections open, / (2 x CONNS): both ends are on this host
#   events/s      deliv/s / CONNS: events through broker and gateway
#   emit/s        the emitter's publish rate (bench-emit, --rate 0)
#
# Nothing is pinned: with N processes the gateway is meant to use every
# core, and on this 2-core machine it shares them with the broker, the
# workers and the load client. Owns: its state folder, the broker and the
# daemons it starts (killed by pid, never by name).
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=scale
STOP_TICKS=400 # 50 ms each: 100,000 clients take a while to drain
RUNS=${BENCH_RUNS:-3}
# shellcheck source=bench/lib.sh
. bench/lib.sh
BUILD=${WSGW_BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$(pwd)/$BUILD
STATE=$(mktemp -d "${TMPDIR:-/tmp}/wsgw-scale.XXXXXX")
SECRET="scale-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
GROUP=jobs-bench
CLK_TCK=$(getconf CLK_TCK)
GW_PID=
WK_PIDS=()
WSB_PID=
ok=0

cleanup() {
  local rc=$?
  stop_stack
  tests/lib/broker.sh stop "$STATE/broker" >/dev/null 2>&1 || true
  if ((rc == 0 && ok)) && [[ -z ${BENCH_KEEP:-} ]]; then rm -rf "$STATE"; else echo "scale: logs kept in $STATE"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Whether the supervisor has its n children (n = 1: no supervisor, none).
children_are() { (($(pgrep -cP "$GW_PID" || true) == ($1 > 1 ? $1 : 0))); }

# The gateway's processes: the supervisor and its children (or the one).
# shellcheck disable=SC2046 # one word per pid is the point
gw_pids() { echo "$GW_PID" $(pgrep -P "$GW_PID" || true); }

# Sum over the gateway's processes of VmRSS (KiB) / utime+stime (ticks).
gw_rss_kib() {
  local p sum=0
  for p in $(gw_pids); do sum=$((sum + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status"))); done
  echo "$sum"
}
slab_kib() { awk '/^Slab:/ {print $2}' /proc/meminfo; }

gw_cpu_ticks() {
  local p sum=0
  for p in $(gw_pids); do sum=$((sum + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}'))); done
  echo "$sum"
}

# Open sockets per child process, e.g. "16672/16680/...".
gw_spread() {
  local p out=
  for p in $(pgrep -P "$GW_PID" || echo "$GW_PID"); do
    out+="${out:+/}$(find "/proc/$p/fd" -lname 'socket:*' 2>/dev/null | wc -l)"
  done
  echo "$out"
}

# As bench/run.sh, settings fit for load; and a send queue deep enough for a
# burst of 100,000 events to a client that reads slower than the broker
# delivers (the default 4 MiB closes it with 1008, as it should in production).
start_stack() {
  local n=$1
  GW_PORT=$(free_port)
  # shellcheck disable=SC2046 # the flag list is empty or two words
  "$BUILD/gatewayd" $(gateway_load_flags) --amqp.url="$AMQP_URL" --gateway.listen="127.0.0.1:$GW_PORT" \
    --gateway.metrics_listen= --gateway.processes="$n" --gateway.max_rate=1000000 \
    --gateway.max_send_queue=256MiB \
    --gateway.backlog=4096 --gateway.shutdown_spread=0 --gateway.shutdown_timeout=2s \
    --log.level=warn ${BENCH_GW_FLAGS:-} >>"$STATE/gatewayd.log" 2>&1 &
  GW_PID=$!
  WK_PIDS=()
  for _ in 1 2; do
    "$BUILD/workerd" --amqp.url="$AMQP_URL" --auth.secret="$SECRET" --log.level=warn \
      >>"$STATE/workerd.log" 2>&1 &
    WK_PIDS+=($!)
  done
  # Every process on the broker and every worker consuming: 1 s.
  wait_stack_up 1 children_are "$n"
}

# The broker's VM (beam.smp): utime + stime in ticks.
beam_ticks() {
  sed 's/^.*) //' "/proc/$(cat "$STATE/broker/node.pid")/stat" | awk '{print $12 + $13}'
}

# one N CONNS EVENTS: prints one line of key=value figures.
one() {
  local n=$1 conns=$2 events=$3 out=$STATE/run-$1-$2.out
  start_stack "$n"
  local rss0 rss1 cpu0 cpu1 spread slab0 slab1
  rss0=$(gw_rss_kib) slab0=$(slab_kib)
  "$BUILD/wsbench" --port "$GW_PORT" --token "$TOKEN" --conns "$conns" --sources 16 \
    --window 1024 --mode events --expect "$events" --idle-ms 10000 --timeout-ms 600000 \
    --linger-ms 0 >"$out" 2>>"$STATE/wsbench.err" &
  WSB_PID=$!
  wait_line "$out" READY 600 || die "N=$n: no READY line: $(tail -3 "$out" "$STATE/wsbench.err")"
  sleep 2 # the last subscriptions' binds
  rss1=$(gw_rss_kib) slab1=$(slab_kib)
  spread=$(gw_spread)
  cpu0=$(gw_cpu_ticks) t0=$(date +%s%N) b0=$(beam_ticks)
  "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count "$events" --rate 0 \
    >"$STATE/emit.out" || die "N=$n: emitter failed"
  wait_line "$out" RECEIVED 600 || die "N=$n: no RECEIVED line"
  cpu1=$(gw_cpu_ticks) t1=$(date +%s%N) b1=$(beam_ticks)
  wait "$WSB_PID" || true
  WSB_PID=
  stop_stack
  local got
  got=$(kv "$out" RESULT events)
  echo "n=$n conns=$conns events=$events ready=$(kv "$out" READY ready) hs_per_s=$(kv "$out" READY hs_per_s)" \
    "rss_per_conn=$(((rss1 - rss0) * 1024 / conns)) rss_mib=$((rss1 / 1024))" \
    "kernel_per_socket=$(((slab1 - slab0) * 1024 / conns / 2))" \
    "events_per_s=$(( $(kv "$out" RESULT deliv_per_s) / conns ))" \
    "emit_per_s=$(sed -n 's/.*rate=//p' "$STATE/emit.out")" \
    "spread=$spread deliveries=$got deliv_per_s=$(kv "$out" RESULT deliv_per_s)" \
    "us_per_delivery=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v d="${got:-0}" \
      'BEGIN {if (d > 0) printf "%.2f", t / hz * 1e6 / d; else print "n/a"}')" \
    "cpu_pct=$(awk -v t=$((cpu1 - cpu0)) -v hz="$CLK_TCK" -v w=$((t1 - t0)) \
      'BEGIN {printf "%.0f", t / hz * 1e9 / w * 100}')" \
    "broker_us_per_event=$(awk -v t=$((b1 - b0)) -v hz="$CLK_TCK" -v e="$events" \
      'BEGIN {printf "%.1f", t / hz * 1e6 / e}')" \
    "lost=$(kv "$out" RESULT lost) ooo=$(kv "$out" RESULT ooo) errors=$(kv "$out" RESULT errors)"
}

row() {
  local l=$1
  val() { tr ' ' '\n' <<<"$l" | sed -n "s/^$1=//p"; }
  # Per-connection memory means nothing below 1,000 connections (fixed costs).
  kib() { awk -v b="$1" -v n="$(val ready)" 'BEGIN {if (n < 1000) print "-"; else printf "%.2f KiB", b / 1024}'; }
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(val n)" \
    "$(val ready)" "$(val events)" "$(val spread)" "$(val hs_per_s)" \
    "$(kib "$(val rss_per_conn)")" "$(kib "$(val kernel_per_socket)")" \
    "$(val deliv_per_s)" "$(val events_per_s)" "$(val emit_per_s)" \
    "$(val us_per_delivery) µs" "$(val cpu_pct) %" \
    "$(val lost)/$(val ooo)/$(val errors)"
}

BEGIN_MARK='<!-- bench-scale:begin (written by bench/scale.sh; edits here are lost) -->'
END_MARK='<!-- bench-scale:end -->'

# The block of docs/BENCHMARKS.md this script owns: when and where, then the table.
doc_block() {
  echo "$BEGIN_MARK"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(commit)"
  echo "- Machine: $(machine); nothing pinned"
  echo "- Each row: the run with the median deliveries/s of $RUNS; reproduce: \`make bench-scale\` (BENCH_RUNS=N)"
  echo
  cat "$STATE/table.md"
  echo "$END_MARK"
}

write_doc() {
  doc_block >"$STATE/block.md"
  doc_put_block docs/BENCHMARKS.md "$BEGIN_MARK" "$END_MARK" "$STATE/block.md" \
    "Processes: gatewayd with N = 1, 2 and 6"
  echo "scale: wrote docs/BENCHMARKS.md" >&2
}

run_table() {
  local -a lines=()
  local spec
  # N CONNS EVENTS: events through the broker (20 subscribers), fanout (1,000
  # subscribers), then each N at its open-file ceiling.
  for spec in "1 20 100000" "2 20 100000" "1 1000 2000" "2 1000 2000" "1 19000 20" \
    "2 38000 20" "6 100000 10"; do
    echo "scale: N=${spec%% *} ${spec#* }" >&2
    : >"$STATE/lines"
    for ((r = 1; r <= RUNS; r++)); do
      # Not in $(...): a subshell would hold the daemons' pids, out of reach
      # of the cleanup trap if the run is interrupted.
      # shellcheck disable=SC2086 # N CONNS EVENTS, three words
      one $spec >"$STATE/line"
      echo "  run $r: $(cat "$STATE/line")" >&2
      cat "$STATE/line" >>"$STATE/lines"
    done
    # The run with the median deliveries/s, whole: its figures belong together.
    lines+=("$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^deliv_per_s=/) {split($i, kv, "="); print kv[2], $0}}' \
      "$STATE/lines" | sort -g | awk -v m=$(((RUNS + 1) / 2)) 'NR == m' | cut -d' ' -f2-)")
  done
  {
  echo "| N | connections | events | sockets per process | handshakes/s | gateway RSS per connection | kernel per socket | deliveries/s | events/s | emitted/s | gateway CPU per delivery | gateway CPU | lost/out of order/errors |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  for l in "${lines[@]}"; do row "$l"; done
  } >"$STATE/table.md"
  cat "$STATE/table.md"
  [[ -n ${BENCH_NO_DOC:-} ]] || write_doc
}

LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
for b in gatewayd workerd chanctl wsbench bench-emit; do
  [[ -x $BUILD/$b ]] || die "$BUILD/$b is missing: make bench-build"
done
tests/lib/broker.sh start "$STATE/broker" >"$STATE/broker.log" 2>&1 ||
  { cat "$STATE/broker.log"; die "broker did not start"; }
# shellcheck disable=SC1091 # written by broker.sh at run time
AMQP_URL="amqp://guest:guest@127.0.0.1:$(. "$STATE/broker/env" && echo "$AMQP_PORT")/"
TOKEN=$("$BUILD/chanctl" token --user 1 --ttl 86400 --auth.secret="$SECRET")
# share: two processes, 20 subscribers, a burst of 200,000 events, with the
# stream shared (history.shared, process 0 its one consumer) and without
# (each process a consumer): events/s and the broker's CPU per event (issue
# 17, "the broker's share"). RUNS runs each, all lines and the medians.
run_share() {
  local flags label
  echo "| history.shared | events/s | emitted/s | broker CPU per event | gateway CPU per delivery | lost/out of order/errors |"
  echo "|---|---|---|---|---|---|"
  for label in "16MiB (default)" "0 (off)"; do
    flags=""
    [[ $label == 0* ]] && flags="--history.shared=0"
    : >"$STATE/lines"
    for ((r = 1; r <= RUNS; r++)); do
      BENCH_GW_FLAGS="$flags" one 2 20 200000 >"$STATE/line"
      echo "  shared=$label run $r: $(cat "$STATE/line")" >&2
      cat "$STATE/line" >>"$STATE/lines"
    done
    med() { tr ' ' '\n' <"$STATE/lines" | sed -n "s/^$1=//p" | sort -g | awk -v m=$(((RUNS + 1) / 2)) 'NR == m'; }
    printf '| %s | %s | %s | %s µs | %s µs | %s/%s/%s |\n' "$label" "$(med events_per_s)" \
      "$(med emit_per_s)" "$(med broker_us_per_event)" "$(med us_per_delivery)" \
      "$(med lost)" "$(med ooo)" "$(med errors)"
  done
}

case ${1:-table} in
  table) run_table ;;
  one) shift && one "$@" ;;
  share) run_share ;;
  *) die "usage: bench/scale.sh [table | one N CONNS EVENTS | share]" ;;
esac
ok=1
