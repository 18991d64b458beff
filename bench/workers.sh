#!/usr/bin/env bash
# workers.sh - how connect and subscribe throughput grows with the number of
# workerd instances (`make bench-workers`, ~2 minutes).
#
#   bench/workers.sh          for each worker count (1, 2, 4): one gatewayd
#                             and N workerd on a private broker; measures
#                             handshakes/s and subscription requests/s, each
#                             the median of BENCH_RUNS runs, with the CPU
#                             share of the broker, the gateway, the workers
#                             together and the load client during the phase;
#                             prints markdown tables and rewrites the
#                             generated part of docs/BENCHMARKS.md's section
#                             "Workers: 1, 2 and 4 instances" (between the
#                             bench-workers:begin and :end markers; appended
#                             at the end of the file when missing)
#
# Phases (the load client is build/wsbench):
#   handshakes     BENCH_HS_CONNS connections (16 source addresses, 512 in
#                  flight), no subscription: each handshake waits for a
#                  worker's answer to websocket.connect. Rate = accepted /
#                  (last accept - first connect); CPU from the client's
#                  start to its READY line.
#   subscriptions  BENCH_SUB_CONNS connections, each sending a subscription
#                  change as soon as the previous one is answered (churn
#                  mode), for BENCH_SUB_MS: each request is a
#                  websocket.receive answered by a worker. CPU from READY
#                  (churn starts) to RECEIVED (churn over, replies in).
# CPU share = (utime + stime + reaped children's) / wall time, in % of one
# core, summed over a process and its descendants: the broker (the node's
# start script and beam.smp), gatewayd, all workerd, wsbench. From
# /proc/stat, for the whole machine: softirq (interrupt work billed to no
# process, mostly loopback TCP), other processes (process time not of the
# four: someone else's work on a shared machine), machine busy (all).
# Before each run the machine is left to go quiet (the disconnects of the
# last run's sockets are work for the workers); a run during which other
# processes took CPU is done again (BENCH_MAX_OTHERS, BENCH_RETRIES).
#
# Owns: one private RabbitMQ node for the whole run (tests/lib/broker.sh),
# the daemons and clients it starts (stopped by pid, never by name, also
# on Ctrl-C or failure), a temporary state folder (removed at the end
# unless something failed or BENCH_KEEP=1). No pinning: every process
# floats over every CPU, as it would in a deployment on one machine.
#
# Environment: WSGW_BUILD (default build), BENCH_RUNS (3), BENCH_WORKERS
# ("1 2 4"), BENCH_HS_CONNS (15000), BENCH_SUB_CONNS (400), BENCH_SUB_MS
# (4000), BENCH_QUIET_WAIT (15: seconds to wait for a quiet machine before
# each run), BENCH_MAX_OTHERS (25: a run in which other processes used more
# than this % of one core is done again) and BENCH_RETRIES (3: how many
# times at most), BENCH_WORKER_ARGS (extra workerd flags, e.g.
# --worker.prefetch=256), BENCH_KEEP=1 keeps the state folder,
# BENCH_NO_DOC=1 leaves docs/BENCHMARKS.md alone.
set -euo pipefail

cd "$(dirname "$0")/.."
BENCH_NAME=bench-workers
# shellcheck source=bench/lib.sh
. bench/lib.sh
ROOT=$(pwd)
BUILD=${WSGW_BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$ROOT/$BUILD
RUNS=${BENCH_RUNS:-3}
WORKER_COUNTS=${BENCH_WORKERS:-"1 2 4"}
HS_CONNS=${BENCH_HS_CONNS:-15000}
SUB_CONNS=${BENCH_SUB_CONNS:-400}
SUB_MS=${BENCH_SUB_MS:-4000}
SECRET="bench-secret-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
CLK_TCK=$(getconf CLK_TCK)
QUIET_TICKS=$((CLK_TCK / 10)) # 0.5 s at 20 % of one core
MAX_OTHERS=${BENCH_MAX_OTHERS:-25}
RETRIES=${BENCH_RETRIES:-3}
RETRY_UNTIL=200 # seconds into the run: no retries after, to stay near ~5 minutes
DOC=$ROOT/docs/BENCHMARKS.md
BEGIN_MARK='<!-- bench-workers:begin (written by bench/workers.sh; edits here are lost) -->'
END_MARK='<!-- bench-workers:end -->'

STATE=$(mktemp -d "${TMPDIR:-/tmp}/wsgw-workers.XXXXXX")
BROKER_DIR=$STATE/broker
BROKER_ROOT_PID=
GW_PID=
WK_PIDS=()
WSB_PID=
LINE=
ok=0

say() { echo "$*" >&2; }

# ---- process hygiene -------------------------------------------------------

cleanup() {
  local rc=$?
  trap - INT TERM
  stop_pid "$WSB_PID"
  stop_stack
  tests/lib/broker.sh stop "$BROKER_DIR" >/dev/null 2>&1 || true
  if ((rc == 0 && ok)) && [[ -z ${BENCH_KEEP:-} ]]; then
    rm -rf "$STATE"
  else
    say "bench-workers: logs kept in $STATE"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- broker and daemons ----------------------------------------------------

# The value of KEY in the broker's env file (KEY=value lines).
broker_env() { sed -n "s/^$1=//p" "$BROKER_DIR/env" | tail -1; }

start_broker() {
  tests/lib/broker.sh start "$BROKER_DIR" >"$STATE/broker.log" 2>&1 ||
    { cat "$STATE/broker.log" >&2; die "broker did not start"; }
  BROKER_ROOT_PID=$(broker_env BROKER_PID)
  AMQP_URL="amqp://guest:guest@127.0.0.1:$(broker_env AMQP_PORT)/"
  TOKEN=$("$BUILD/chanctl" token --user 1 --ttl 86400 --auth.secret="$SECRET")
}

# The name of the Erlang VM process, to say what "broker" measured.
broker_vm() {
  local pid
  pid=$(cat "$BROKER_DIR/node.pid" 2>/dev/null || true)
  [[ -n $pid && -r /proc/$pid/comm ]] && cat "/proc/$pid/comm" || echo "?"
}

# One gateway process when the binary has the setting (0 would mean one
# per core); older builds are one process anyway.
gateway_process_flags() {
  if "$BUILD/gatewayd" --help 2>&1 | grep -q -- '--gateway.processes='; then
    echo "--gateway.processes=1"
  fi
}

# No cap on a connection's group changes (churn mode measures the path, not
# the cap), when the binary has one.
gateway_churn_flags() {
  if "$BUILD/gatewayd" --help 2>&1 | grep -q -- '--gateway.group_changes_rate='; then
    echo "--gateway.group_changes_rate=1000000 --gateway.group_changes_burst=1000000"
  fi
}

# Settings fit for load, as bench/run.sh uses them: no message rate cap, a
# deep accept backlog, warnings only, a quick stop.
start_stack() {
  local workers=$1 i
  GW_PORT=$(free_port)
  # shellcheck disable=SC2046 # the flag lists are empty or plain words
  "$BUILD/gatewayd" $(gateway_process_flags) $(gateway_load_flags) $(gateway_churn_flags) \
    --amqp.url="$AMQP_URL" \
    --gateway.listen="127.0.0.1:$GW_PORT" --gateway.metrics_listen= \
    --gateway.max_rate=1000000 --gateway.backlog=4096 \
    --gateway.shutdown_spread=0 --gateway.shutdown_timeout=1s \
    --log.level=warn >>"$STATE/gatewayd.log" 2>&1 &
  GW_PID=$!
  WK_PIDS=()
  for ((i = 0; i < workers; i++)); do
    # shellcheck disable=SC2086 # extra flags, split on spaces
    "$BUILD/workerd" --amqp.url="$AMQP_URL" --auth.secret="$SECRET" \
      --log.level=warn ${BENCH_WORKER_ARGS:-} >>"$STATE/workerd.log" 2>&1 &
    WK_PIDS+=($!)
  done
  wait_stack_up 0.3
}

# ---- CPU accounting --------------------------------------------------------

# pid and all its descendants, one per line (bash builtins only: this runs
# several times a second and must not load the machine it measures).
tree_pids() {
  local pid=$1 f kid
  local -a kids
  [[ -n $pid && -d /proc/$pid ]] || return 0
  echo "$pid"
  for f in /proc/"$pid"/task/*/children; do
    read -r -a kids <"$f" 2>/dev/null || true
    for kid in "${kids[@]}"; do tree_pids "$kid"; done
  done
}

# Clock ticks used by pids and their descendants: utime + stime + the
# children's they reaped (a client process that ended between two samples
# is not lost). A process that ends while being read is skipped. 0 when
# none runs.
tree_ticks() {
  local root pid line lines=()
  for root in "$@"; do
    [[ -n $root ]] || continue
    while read -r pid; do
      read -r line 2>/dev/null <"/proc/$pid/stat" && lines+=("${line##*) }")
    done < <(tree_pids "$root")
  done
  printf '%s\n' "${lines[@]}" | awk 'NF {t += $12 + $13 + $14 + $15} END {print t + 0}'
}

# Clock ticks of the whole machine, all CPUs: processes (user, nice,
# system), then interrupts (irq, softirq: most of it the loopback network's
# receive path, billed to no process).
machine_ticks() {
  awk '$1 == "cpu" {print $2 + $3 + $4, $7 + $8; exit}' /proc/stat
}

# Busy ticks of the whole machine, one number.
machine_busy() { machine_ticks | awk '{print $1 + $2}'; }

# One sample: wall clock (us), then the ticks of broker, gateway, workers,
# load client, all processes and interrupts.
snapshot() {
  echo "${EPOCHREALTIME/./}" "$(tree_ticks "$BROKER_ROOT_PID")" "$(tree_ticks "$GW_PID")" \
    "$(tree_ticks "${WK_PIDS[@]}")" "$(tree_ticks "$WSB_PID")" "$(machine_ticks)"
}

# shares "SAMPLE0" "SAMPLE1": key=value CPU shares (% of one core) between:
# the four, softirq (interrupts), others (processes but the four), busy
# (the whole machine).
shares() {
  awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN {
    split(a, x, " "); split(b, y, " "); wall = (y[1] - x[1]) / 1e6
    n = split("broker gateway workers client", name, " ")
    for (i = 1; i <= n; i++) {
      s = (y[i + 1] - x[i + 1]) / hz / wall * 100; if (s < 0) s = 0
      ours += s; printf "%s=%.0f ", name[i], s
    }
    procs = (y[6] - x[6]) / hz / wall * 100; irq = (y[7] - x[7]) / hz / wall * 100
    others = procs - ours; if (others < 0) others = 0
    printf "softirq=%.0f others=%.0f busy=%.0f wall_s=%.2f", irq, others, procs + irq, wall }'
}

# Waits until the machine is quiet: at most QUIET_TICKS busy ticks (all
# CPUs) in 0.5 s, which also means the disconnects of the last run are
# done. Other people's work on a shared machine may never stop: after
# BENCH_QUIET_WAIT seconds it measures anyway (the others column shows it).
settle() {
  local deadline=$((SECONDS + ${BENCH_QUIET_WAIT:-15})) t0 t1
  t0=$(machine_busy)
  while ((SECONDS < deadline)); do
    sleep 0.5
    t1=$(machine_busy)
    ((t1 - t0 <= QUIET_TICKS)) && return 0
    t0=$t1
  done
  say "  (the machine did not go quiet within ${BENCH_QUIET_WAIT:-15} s; measuring anyway)"
}

# ---- the load client -------------------------------------------------------

wsb_start() {
  local out=$1
  shift
  : >"$out"
  "$BUILD/wsbench" --port "$GW_PORT" --token "$TOKEN" "$@" >"$out" 2>>"$STATE/wsbench.err" &
  WSB_PID=$!
}

wsb_wait() {
  local rc=0
  wait "$WSB_PID" || rc=$?
  WSB_PID=
  return "$rc"
}

# Errors, refused or missing connections as one word, or "none".
problems() {
  local f=$1 errs ready conns
  errs=$(kv "$f" RESULT errors) ready=$(kv "$f" RESULT ready) conns=$(kv "$f" RESULT conns)
  [[ -n $errs ]] || { echo "no-RESULT-line"; return; }
  if [[ $errs != 0 || $ready != "$conns" ]]; then
    echo "errors=$errs,ready=$ready/$conns"
  else
    echo none
  fi
}

# ---- the two phases --------------------------------------------------------
# Each sets LINE to one line of key=value figures. They run in this shell,
# not in $(...), so that the cleanup knows the client's pid.

measure_handshakes() {
  local out=$STATE/hs-$1-$2.out s0 s1
  settle
  s0=$(snapshot)
  wsb_start "$out" --conns "$HS_CONNS" --sources 16 --window 512 --sub '' --mode none \
    --timeout-ms 60000
  wait_line "$out" READY 120 || { stop_pid "$WSB_PID"; die "handshakes: no READY line"; }
  s1=$(snapshot)
  wsb_wait || true
  LINE="rate=$(kv "$out" READY hs_per_s) $(shares "$s0" "$s1") problems=$(problems "$out")"
}

measure_subscriptions() {
  local out=$STATE/sub-$1-$2.out s0 s1
  settle
  wsb_start "$out" --conns "$SUB_CONNS" --sources 16 --mode churn --churn-ms "$SUB_MS" \
    --timeout-ms 30000
  wait_line "$out" READY 60 || { stop_pid "$WSB_PID"; die "subscriptions: no READY line"; }
  s0=$(snapshot)
  wait_line "$out" RECEIVED $((SUB_MS / 1000 + 40)) ||
    { stop_pid "$WSB_PID"; die "subscriptions: no RECEIVED line"; }
  s1=$(snapshot)
  wsb_wait || true
  LINE="rate=$(kv "$out" RESULT churn_per_s) p99_us=$(kv "$out" RESULT churn_p99_us)"
  LINE+=" $(shares "$s0" "$s1") problems=$(problems "$out")"
}

# ---- medians ---------------------------------------------------------------

# The problems of the runs that had any, or "" when none had.
run_problems() {
  printf '%s\n' "$@" | tr ' ' '\n' | sed -n 's/^problems=//p' | { grep -v '^none$' || true; } | sort -u |
    tr '\n' ' ' | sed 's/ $//'
}

# FIG[phase_workers_key] = median over the runs.
declare -A FIG=()

# 0 when LINE's other processes used more than MAX_OTHERS % of one core:
# someone else's work took CPU from this run.
disturbed() {
  awk -v l="$LINE" -v max="$MAX_OTHERS" 'BEGIN {
    n = split(l, f, " "); for (i = 1; i <= n; i++) if (f[i] ~ /^others=/) o = substr(f[i], 8)
    exit !(o + 0 > max + 0) }'
}

# run_phase PHASE WORKERS: BENCH_RUNS runs of one phase, medians into FIG.
# A run disturbed by other work is done again, up to RETRIES times and only
# in the first RETRY_UNTIL seconds; the last attempt counts whatever it saw
# (and the table says so).
run_phase() {
  local phase=$1 w=$2 i k try disturbed_runs=0
  local -a lines=()
  for ((i = 1; i <= RUNS; i++)); do
    for ((try = 1; ; try++)); do
      "measure_$phase" "$w" "$i"
      say "  $phase, run $i: $LINE"
      disturbed || break
      if ((try > RETRIES || SECONDS > RETRY_UNTIL)); then
        disturbed_runs=$((disturbed_runs + 1))
        break
      fi
      say "  (other processes used CPU during that run: again)"
    done
    lines+=("$LINE")
  done
  for k in rate p99_us broker gateway workers client softirq others busy; do
    FIG[${phase}_${w}_$k]=$(median "$k" "${lines[@]}")
  done
  FIG[${phase}_${w}_problems]=$(run_problems "${lines[@]}")
  if ((disturbed_runs)); then
    FIG[${phase}_${w}_problems]+="${FIG[${phase}_${w}_problems]:+, }$disturbed_runs of $RUNS runs disturbed"
  fi
}

# ---- the report ------------------------------------------------------------

# A median share as "S %", or "S % (U us)" with U the CPU time per
# operation at the median rate.
cell() {
  local share=$1 rate=${2:-}
  awk -v s="$share" -v r="$rate" 'BEGIN {
    if (s == "n/a") { print s; exit }
    if (r == "" || r == "n/a" || r + 0 <= 0) { printf "%s %%\n", s; exit }
    printf "%s %% (%.0f us)\n", s, s * 1e4 / r }'
}

phase_table() {
  local phase=$1 title=$2 w f rate extra p
  echo "| workerd | $title | broker | gateway | workers (all) | load client | softirq | other processes | machine busy |"
  echo "|---|---|---|---|---|---|---|---|---|"
  for w in $WORKER_COUNTS; do
    f=${phase}_${w}
    rate=${FIG[${f}_rate]}
    extra=''
    [[ $phase == subscriptions ]] &&
      extra=" (p99 $(awk -v u="${FIG[${f}_p99_us]}" 'BEGIN {
        if (u == "n/a") print u; else printf "%.0f ms", u / 1000}'))"
    p=${FIG[${f}_problems]}
    [[ -n $p ]] && extra+=" [$p]"
    printf '| %s | %s%s | %s | %s | %s | %s | %s | %s | %s |\n' "$w" \
      "$(awk -v r="$rate" 'BEGIN {if (r == "n/a") print r; else printf "%.0f", r}')" "$extra" \
      "$(cell "${FIG[${f}_broker]}" "$rate")" "$(cell "${FIG[${f}_gateway]}" "$rate")" \
      "$(cell "${FIG[${f}_workers]}" "$rate")" "$(cell "${FIG[${f}_client]}" "$rate")" \
      "$(cell "${FIG[${f}_softirq]}")" "$(cell "${FIG[${f}_others]}")" \
      "$(cell "${FIG[${f}_busy]}")"
  done
}

tables() {
  echo "Connect: $HS_CONNS handshakes, 512 in flight, no subscription; each waits for a"
  echo "worker's answer to websocket.connect."
  echo
  phase_table handshakes "handshakes/s"
  echo
  echo "Subscribe: $SUB_CONNS connections, each sending a subscription change as soon as"
  echo "the previous one is answered, for $((SUB_MS / 1000)) s; each is a websocket.receive answered"
  echo "by a worker."
  echo
  phase_table subscriptions "requests/s"
  echo
  echo "CPU shares in % of one core (the machine has $(nproc)00 %), with the CPU time per"
  echo "handshake or request in brackets. softirq: the kernel's interrupt work, billed to"
  echo "no process (mostly the loopback network's receive path); other processes: the"
  echo "rest of the machine's process time (other work on a shared machine); machine"
  echo "busy: everything."
}



generated() {
  echo "$BEGIN_MARK"
  echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- Commit: $(commit)"
  echo "- Machine: $(machine)"
  echo "- Each figure: median of $RUNS runs; CPU share = CPU seconds / wall seconds of the"
  echo "  phase; broker = the node's start script and $BROKER_VM; gatewayd as one process;"
  echo "  no pinning"
  echo "- Reproduce: \`make bench-workers\` (BENCH_RUNS, BENCH_WORKERS, BENCH_HS_CONNS,"
  echo "  BENCH_SUB_CONNS, BENCH_SUB_MS: see bench/workers.sh)"
  echo
  tables
  echo "$END_MARK"
}

# Replaces the generated block of docs/BENCHMARKS.md, or appends the section.
write_doc() {
  generated >"$STATE/generated.md"
  doc_put_block "$DOC" "$BEGIN_MARK" "$END_MARK" "$STATE/generated.md" \
    "Workers: 1, 2 and 4 instances"
  say "bench-workers: wrote docs/BENCHMARKS.md"
}

# ---- main ------------------------------------------------------------------

main() {
  local w
  LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
  for w in gatewayd workerd chanctl wsbench bench-emit; do
    [[ -x $BUILD/$w ]] || die "$BUILD/$w missing: make bench-build"
  done
  say "bench-workers: starting a private broker"
  start_broker
  BROKER_VM=$(broker_vm)
  for w in $WORKER_COUNTS; do
    say "bench-workers: $w workerd"
    start_stack "$w"
    run_phase handshakes "$w"
    run_phase subscriptions "$w"
    stop_stack
  done
  echo
  tables
  [[ -n ${BENCH_NO_DOC:-} ]] || write_doc
  ok=1
}

main
