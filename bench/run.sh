#!/usr/bin/env bash
# run.sh - the benchmark scenarios: `make bench` (full) and `make bench-smoke`
# (smoke, also run by `make test`).
#
#   bench/run.sh full      S1-S4 (S2 and S3 with the event history on and
#                          off, S3 also with the whole stack on one core),
#                          R1-R2 (replay), Z (compression, as `compress`
#                          below), each figure the median of
#                          BENCH_RUNS runs; prints a table and rewrites the
#                          generated part of docs/BENCHMARKS.md (between the
#                          bench:begin and bench:end markers; the rest of the
#                          file is kept)
#   bench/run.sh smoke     a few hundred connections, seconds: fails when a
#                          client sees a lost or out-of-order event or any
#                          error (with compression on: or no compressed
#                          frame), never on speed
#   bench/run.sh compress  the compression scenarios alone (AWX job events,
#                          permessage-deflate off and on, 1 and 1,000
#                          subscribers, and the whole stack on one core):
#                          medians, the ratios, a table; writes no file
#   bench/run.sh storm-table  the reconnect storm alone (STORM_CONNS
#                          clients at once, the whole stack on one core,
#                          amqp_batch 64 and 1): medians, a table; no file
#   bench/run.sh s1|events|s4|replay|zevents|storm|onecore ARGS...   one run of
#                          one scenario (see below; e.g. `events s3 100
#                          20000 2000 off`, `replay r1 1 100000`, `onecore
#                          events s3c 100 20000 2000 on`, `zevents z 1000
#                          1000 100 on`, `onecore storm 19000 4096 1 64`)
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
# on CPU 0, load client on CPU 1, when there are two CPUs or more (with
# `onecore`, the broker's VM and the workers on CPU 0 too, and the emitter
# on CPU 1; only with a broker of its own).
#
# Environment: WSGW_BUILD (default build), BENCH_RUNS (3), BENCH_S1_SIZES
# ("10000 19000"), BENCH_KEEP=1 keeps the state folder, BENCH_R1_EVENTS
# (100000), BENCH_R2_CONNS (1000), BENCH_R2_EVENTS (1000),
# BENCH_REPLAY_SETTLE (2: seconds between the emitter's last confirm and
# the clients' return, so the gateway has read the stream), BENCH_GW_FLAGS
# (more gatewayd flags for the scenarios of S2, S3, R1, R2, e.g.
# "--history.segment_bytes=1MiB"), BENCH_Z_RATE (50: AWX events/s of the
# compression scenarios), BENCH_Z_SECONDS (10: for how long),
# BENCH_STORM_CONNS (19000: the storm's clients).
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

R1_EVENTS=${BENCH_R1_EVENTS:-100000}
R2_CONNS=${BENCH_R2_CONNS:-1000}
R2_EVENTS=${BENCH_R2_EVENTS:-1000}
REPLAY_SETTLE=${BENCH_REPLAY_SETTLE:-2}
Z_RATE=${BENCH_Z_RATE:-50}
Z_SECONDS=${BENCH_Z_SECONDS:-10}
STORM_CONNS=${BENCH_STORM_CONNS:-19000}

GW_PID=
WK_PIDS=()
WSB_PID=
WSB2_PID= # a second load client (the smoke's plain clients beside compressed ones)
WSB3_PID= # a third (the smoke's clients offering server_no_context_takeover)
GW_EXTRA=() # per-scenario gateway flags (history on/off)
EMIT_PIN=() # the emitter floats, except on `onecore` (CPU 1, with the client)
WK_PIN=()   # the workers float, except on `onecore` (CPU 0)
ok=0

# ---- process hygiene -------------------------------------------------------

cleanup() {
  local rc=$?
  stop_pid "$WSB_PID"
  stop_pid "$WSB2_PID"
  stop_pid "$WSB3_PID"
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

# The broker's Erlang VM (beam.smp), whose CPU is "broker CPU per event".
beam_pid() { cat "$BROKER_DIR/node.pid" 2>/dev/null || true; }

# CPU time of every thread of process $1 in ns: the scheduler's own count
# (/proc/PID/task/*/schedstat, first field), exact where utime+stime come
# in 10 ms ticks (S2's 2,000 events cost the broker a few ticks). Threads
# that ended in between are not counted: the gateway's and the VM's live as
# long as the process. Falls back to utime+stime when schedstat reads 0.
cpu_ns() {
  local pid=$1 ns
  [[ -n $pid && -d /proc/$pid/task ]] || { echo 0; return; }
  ns=$(cat /proc/"$pid"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}')
  if [[ $ns == 0 ]]; then
    ns=$(sed 's/^.*) //' "/proc/$pid/stat" | awk -v hz="$CLK_TCK" '{printf "%.0f", ($12 + $13) * 1e9 / hz}')
  fi
  echo "$ns"
}

# 0 when this gatewayd has the event history (issue 14): [history] enabled.
# The help is read whole first: `| grep -q` would exit at the match and the
# gateway's next write would fail (SIGPIPE), which pipefail reports as no.
has_history() {
  local help
  help=$("$BUILD/gatewayd" --help 2>&1 || true)
  [[ $help == *--history.enabled=* ]]
}

# GW_EXTRA for history "on" or "off" ("" or "default": the binary's
# default). A binary without the history runs "off" only.
set_hist() {
  GW_EXTRA=()
  case ${1:-default} in
    default | "") ;;
    on) has_history || die "this gatewayd has no event history"
      GW_EXTRA=(--history.enabled=true) ;;
    off) if has_history; then GW_EXTRA=(--history.enabled=false); fi ;;
    *) die "history must be on, off or default, not $1" ;;
  esac
  local -a more
  read -ra more <<<"${BENCH_GW_FLAGS:-}"
  GW_EXTRA+=("${more[@]}")
  # Every run starts without a history: an "off" run must not feed a stream
  # an earlier "on" run left bound to the exchange (the broker would still
  # store every event), and "on" runs start alike (no preload of earlier
  # runs' events). The stack is down here, so nobody holds the stream.
  if has_history; then
    "$BUILD/bench-emit" --url "$AMQP_URL" --delete-queue websocket.history >/dev/null ||
      die "could not delete the history stream"
  fi
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
    --log.level=warn "${GW_EXTRA[@]}" >>"$STATE/gatewayd.log" 2>&1 &
  GW_PID=$!
  WK_PIDS=()
  for ((i = 0; i < workers; i++)); do
    "${WK_PIN[@]}" "$BUILD/workerd" --amqp.url="$AMQP_URL" --auth.secret="$SECRET" \
      --log.level=warn >>"$STATE/workerd.log" 2>&1 &
    WK_PIDS+=($!)
  done
  wait_stack_up 0.2
}

# ---- measuring -------------------------------------------------------------

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status"; }

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
  # wsgw.2 runs only (absent keys are 0): duplicates, recovery not "ok", notices.
  local dups rexp runk notices
  dups=$(kv "$f" "$tag" dups) rexp=$(kv "$f" "$tag" rec_expired)
  runk=$(kv "$f" "$tag" rec_unknown) notices=$(kv "$f" "$tag" notices)
  if [[ $errs != 0 || ${lost:-0} != 0 || ${ooo:-0} != 0 || $ready != "$conns" ||
    ${dups:-0} != 0 || ${rexp:-0} != 0 || ${runk:-0} != 0 || ${notices:-0} != 0 ]]; then
    echo "errors=$errs lost=${lost:-0} ooo=${ooo:-0} dups=${dups:-0} expired=${rexp:-0}" \
      "unknown=${runk:-0} notices=${notices:-0} ready=$ready/$conns" \
      "$(grep -o 'first_error=.*' "$f" | tail -1)"
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

# Reconnect storm: n clients connect and subscribe at once (w handshakes
# in flight): the stack's CPU per connection (gateway, workers and the
# broker's VM, from the first handshake to the last reply) and the time it
# took. BATCH: the gateway's amqp_batch (default: the binary's; 1: every
# channel message alone, as before issue 17); USERS: one (every client
# user 1) or distinct (users 1..n: a control key bound per user, as in a
# real storm). Meant under `onecore` (the
# whole stack on one core). BENCH_STORM_PERF=1 / BENCH_STORM_STRACE=1 keep
# a profile of each process / the gateway's syscall counts.
storm() {
  local n=$1 w=${2:-4096} workers=${3:-1} batch=${4:-} users=${5:-one} out=$STATE/storm-$1.out
  local -a who=(--token "$TOKEN")
  if [[ $users == distinct ]]; then # a token per client, users 1..n
    mint_tokens "$n" "$STATE/tokens"
    who=(--tokens "$STATE/tokens")
  fi
  GW_EXTRA=()
  [[ -z $batch ]] || GW_EXTRA=(--gateway.amqp_batch="$batch")
  start_stack "$workers"
  GW_EXTRA=()
  local -a perf=()
  if [[ -n ${BENCH_STORM_PERF:-} ]]; then # where the time goes: one report per process
    perf record -F 4000 -g -o "$STATE/storm-gw.perf" -p "$GW_PID" >/dev/null 2>&1 &
    perf+=($!)
    perf record -F 4000 -g -o "$STATE/storm-wk.perf" -p "${WK_PIDS[0]}" >/dev/null 2>&1 &
    perf+=($!)
    perf record -F 4000 -o "$STATE/storm-beam.perf" -p "$(beam_pid)" >/dev/null 2>&1 &
    perf+=($!)
    sleep 0.5
  fi
  if [[ -n ${BENCH_STORM_STRACE:-} ]]; then # syscalls of the gateway, counted
    strace -c -f -o "$STATE/storm-gw.strace" -p "$GW_PID" 2>/dev/null &
    perf+=($!)
    sleep 0.5
  fi
  local g0 g1 k0 k1 b0 b1 t0 t1 t2 p
  g0=$(cpu_ns "$GW_PID") k0=$(workers_cpu_ns) b0=$(cpu_ns "$(beam_pid)") t0=$(date +%s%N)
  "${CL_PIN[@]}" "$BUILD/wsbench" --port "$GW_PORT" "${who[@]}" --conns "$n" --sources 8 \
    --window "$w" --mode hold --timeout-ms 120000 >"$out" 2>>"$STATE/wsbench.err" &
  WSB_PID=$!
  wait_line "$out" READY 180 || { stop_pid "$WSB_PID"; die "storm $n: no READY line ($(problems "$out" READY))"; }
  t1=$(date +%s%N)
  # The stack's work may outlive the last reply (binds of users' control
  # keys wait behind publishes): counted until it is quiet.
  wait_quiet
  g1=$(cpu_ns "$GW_PID") k1=$(workers_cpu_ns) b1=$(cpu_ns "$(beam_pid)") t2=$(date +%s%N)
  if ((${#perf[@]})); then
    kill -INT "${perf[@]}"
    wait "${perf[@]}" || true
    echo "storm: perf/strace data in $STATE/storm-*" >&2
  fi
  p=$(problems "$out" READY)
  kill -TERM "$WSB_PID"
  wsb_wait || true
  stop_stack
  echo "stack_us_per_conn=$(per_us $((g1 - g0 + k1 - k0 + b1 - b0)) "$n")" \
    "gateway_us=$(per_us $((g1 - g0)) "$n") worker_us=$(per_us $((k1 - k0)) "$n")" \
    "broker_us=$(per_us $((b1 - b0)) "$n")" \
    "seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", (b - a) / 1e9}')" \
    "quiet_seconds=$(awk -v a="$t0" -v b="$t2" 'BEGIN {printf "%.2f", (b - a) / 1e9}')" \
    "errors=$(kv "$out" READY errors) problems=\"$p\""
}

# Waits (60 s at most) until the gateway, the workers and the broker
# together use under 5 % of a core over 200 ms; the wait's own last 200 ms
# are counted, a few ms of CPU.
wait_quiet() {
  local a b i
  a=$(($(cpu_ns "$GW_PID") + $(workers_cpu_ns) + $(cpu_ns "$(beam_pid)")))
  for ((i = 0; i < 300; i++)); do
    sleep 0.2
    b=$(($(cpu_ns "$GW_PID") + $(workers_cpu_ns) + $(cpu_ns "$(beam_pid)")))
    ((b - a < 10000000)) && return 0
    a=$b
  done
}

# n tokens for users 1..n, one per line, signed with $SECRET (HS256, as
# chanctl token makes them; minted here, 19,000 chanctl runs take minutes).
mint_tokens() {
  /usr/bin/python3 - "$1" "$2" "$SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
n, path, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
exp = int(time.time()) + 86400
with open(path, "w") as f:
    for u in range(1, n + 1):
        body = head + "." + b64(json.dumps({"sub": str(u), "exp": exp}, separators=(",", ":")).encode())
        sig = hmac.new(secret, body.encode(), hashlib.sha256).digest()
        f.write(body + "." + b64(sig) + "\n")
PY
}

# CPU ns of the workers together.
workers_cpu_ns() {
  local p t=0
  for p in "${WK_PIDS[@]}"; do t=$((t + $(cpu_ns "$p"))); done
  echo "$t"
}

# CPU ns t over n things, in us each ("n/a" when n is 0).
per_us() {
  awk -v t="$1" -v n="$2" 'BEGIN {
    if (n + 0 > 0) printf "%.2f", t / 1000 / n; else print "n/a" }'
}

# Events to subscribed connections: latency, loss, deliveries/s, gateway
# CPU per delivery and broker (beam.smp) CPU per emitted event, both
# CPU time (cpu_ns) from READY to RECEIVED. HIST: on, off or default (the
# binary's); PROTO: 1 (old protocol, as AWX's clients) or 2 (wsgw.2).
events() {
  local name=$1 conns=$2 count=$3 rate=$4 hist=${5:-default} proto=${6:-1}
  local out=$STATE/$1.out
  local -a p2=()
  ((proto == 2)) && p2=(--protocol wsgw.2)
  set_hist "$hist"
  start_stack 1
  wsb_start "$out" --conns "$conns" --mode events --expect "$count" --idle-ms 3000 \
    --timeout-ms 120000 "${p2[@]}"
  wait_line "$out" READY 60 || { stop_pid "$WSB_PID"; die "$name: no READY line ($(problems "$out" READY))"; }
  local cpu0 cpu1 b0 b1 k0 k1
  cpu0=$(cpu_ns "$GW_PID") b0=$(cpu_ns "$(beam_pid)") k0=$(workers_cpu_ns)
  "${EMIT_PIN[@]}" "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count "$count" \
    --rate "$rate" >"$STATE/$name.emit" || die "$name: emitter failed"
  wait_line "$out" RECEIVED 180 || die "$name: no RECEIVED line"
  cpu1=$(cpu_ns "$GW_PID") b1=$(cpu_ns "$(beam_pid)") k1=$(workers_cpu_ns)
  wsb_wait || true
  stop_stack
  GW_EXTRA=()
  local ev
  ev=$(kv "$out" RESULT events)
  echo "deliv_per_s=$(kv "$out" RESULT deliv_per_s)" \
    "us_per_delivery=$(per_us $((cpu1 - cpu0)) "$ev")" \
    "stack_us_per_delivery=$(per_us $((cpu1 - cpu0 + b1 - b0 + k1 - k0)) "$ev")" \
    "broker_us_per_event=$(per_us $((b1 - b0)) "$count")" \
    "p50_us=$(kv "$out" RESULT lat_p50_us) p99_us=$(kv "$out" RESULT lat_p99_us)" \
    "max_us=$(kv "$out" RESULT lat_max_us) lost=$(kv "$out" RESULT lost)" \
    "events=$ev problems=\"$(problems "$out")\""
}

# The whole stack on one core: the broker's VM (every thread), the gateway
# and the workers on CPU 0, the load client and the emitter on CPU 1; then
# "$@" (a scenario), then the broker floats again. Needs a broker of its own
# and two CPUs.
onecore() {
  local pid rc=0 all
  pid=$(beam_pid)
  if ! ((OWN_BROKER)) || [[ -z $pid ]] || (($(nproc) < 2)); then
    die "onecore needs a broker of its own and two CPUs"
  fi
  all=0-$(($(nproc) - 1))
  taskset -a -p -c 0 "$pid" >/dev/null
  EMIT_PIN=("${CL_PIN[@]}") WK_PIN=("${GW_PIN[@]}")
  "$@" || rc=$?
  EMIT_PIN=() WK_PIN=()
  taskset -a -p -c "$all" "$pid" >/dev/null || true
  return "$rc"
}

# R1/R2, replay: CONNS wsgw.2 clients subscribe (each reply gives the
# group's position), all disconnect, COUNT events are emitted to the group,
# then all reconnect at once naming their positions and must each get
# exactly those COUNT events (0 lost, 0 duplicates, recovery "ok").
# Figures: time from the first reconnect until the last client has all
# (catch-up), events/s and MB/s (envelopes) over that time, reconnects/s
# (connect to the subscription reply with recovery), gateway CPU per
# replayed delivery.
replay() {
  local name=$1 conns=$2 count=$3 hist=${4:-on} out=$STATE/$1.out
  set_hist "$hist"
  start_stack 1
  wsb_start "$out" --protocol wsgw.2 --conns "$conns" --window "$conns" --mode recover \
    --expect "$count" --idle-ms 5000 --timeout-ms 120000 --linger-ms 0
  wait_line "$out" AWAY 120 || { stop_pid "$WSB_PID"; die "$name: no AWAY line ($(problems "$out" READY))"; }
  "${EMIT_PIN[@]}" "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count "$count" \
    >"$STATE/$name.emit" || die "$name: emitter failed"
  sleep "$REPLAY_SETTLE"
  local cpu0 cpu1
  cpu0=$(cpu_ns "$GW_PID")
  kill -USR1 "$WSB_PID"
  wait_line "$out" RECEIVED 300 || die "$name: no RECEIVED line"
  cpu1=$(cpu_ns "$GW_PID")
  wsb_wait || true
  stop_stack
  GW_EXTRA=()
  local f=RESULT
  echo "catchup_ms=$(kv "$out" $f catchup_ms) ev_per_s=$(kv "$out" $f replay_ev_per_s)" \
    "mb_per_s=$(kv "$out" $f replay_mb_per_s) resume_per_s=$(kv "$out" $f resume_per_s)" \
    "resume_p50_us=$(kv "$out" $f resume_p50_us) resume_p99_us=$(kv "$out" $f resume_p99_us)" \
    "catchup_p99_us=$(kv "$out" $f catchup_p99_us)" \
    "us_per_delivery=$(per_us $((cpu1 - cpu0)) "$(kv "$out" $f resume_events)")" \
    "lost=$(kv "$out" $f lost) dups=$(kv "$out" $f dups) rec_ok=$(kv "$out" $f rec_ok)" \
    "resumed=$(kv "$out" $f resumed) replayed=$(kv "$out" $f replayed)" \
    "problems=\"$(problems "$out")\""
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

# ---- compression (issue 16): AWX job events, permessage-deflate off and on ----

# 0 when this gatewayd has permessage-deflate ([compression] settings).
has_compression() {
  local help
  help=$("$BUILD/gatewayd" --help 2>&1 || true)
  [[ $help == *--compression.enabled=* ]]
}

# The gateway's counter $1 on its /metrics (port $MX_PORT), 0 when absent.
metric() {
  curl -s --max-time 5 "http://127.0.0.1:$MX_PORT/metrics" |
    awk -v n="$1" '$1 == n {v = $2} END {print v + 0}'
}

# Busy time of CPU 0 in ns from /proc/stat (user, nice, system, irq,
# softirq, steal): with the stack pinned there (onecore), everything it
# costs, the kernel's loopback work included, but also whatever else ran
# there (in 10 ms ticks): in the run's line only, too noisy for the table.
cpu0_ns() {
  awk -v hz="$CLK_TCK" '$1 == "cpu0" {printf "%.0f\n", ($2 + $3 + $4 + $7 + $8 + $9) * 1e9 / hz}' /proc/stat
}

# CPU ns of every workerd.
workers_ns() {
  local p t=0
  for p in "${WK_PIDS[@]}"; do t=$((t + $(cpu_ns "$p"))); done
  echo "$t"
}

# One sample of the counters the compression figures are made of
# (compressions: events compressed alone; chained: once more after their
# group's previous event, for the clients that kept their context).
z_sample() {
  echo "$(cpu_ns "$GW_PID") $(cpu_ns "$(beam_pid)") $(workers_ns) $(cpu0_ns)" \
    "$(metric wsgw_gateway_bytes_sent_total) $(metric wsgw_gateway_compressions_total)" \
    "$(metric wsgw_gateway_compressions_chained_total)"
}

# a / b with 2 decimals, "n/a" when b is 0.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b + 0 > 0) printf "%.2f", a / b; else print "n/a"}'; }

# AWX job events (bench-emit --sample awx) at RATE/s to CONNS subscribers of
# one group, permessage-deflate Z (on: the gateway's [compression] enabled
# and every client offering it as browsers do, --deflate: the 101 may keep
# the gateway's context or not, zctx= counts the connections that kept an
# inflater; off: neither). From READY to RECEIVED:
# bytes on the wire per delivery (the gateway's wsgw_gateway_bytes_sent_total
# delta, and the client's count of the events' frames), the events' size
# once inflated, gateway CPU per delivery, the stack's (gateway, broker,
# workers) and CPU 0's (onecore) per delivery. Old-protocol clients, the
# binary's default history (on).
zevents() {
  local name=$1 conns=$2 count=$3 rate=$4 z=$5 out=$STATE/$1.out
  local -a zc=()
  has_compression || die "this gatewayd has no [compression] settings"
  set_hist default
  MX_PORT=$(free_port)
  GW_EXTRA+=(--gateway.metrics_listen="127.0.0.1:$MX_PORT")
  case $z in
    on) GW_EXTRA+=(--compression.enabled=true) zc=(--deflate) ;;
    off) GW_EXTRA+=(--compression.enabled=false) ;;
    *) die "compression must be on or off, not $z" ;;
  esac
  start_stack 1
  wsb_start "$out" --conns "$conns" --mode events --expect "$count" --idle-ms 3000 \
    --timeout-ms 120000 "${zc[@]}"
  wait_line "$out" READY 60 || { stop_pid "$WSB_PID"; die "$name: no READY line ($(problems "$out" READY))"; }
  local -a a b
  read -ra a <<<"$(z_sample)"
  "${EMIT_PIN[@]}" "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count "$count" \
    --rate "$rate" --sample awx >"$STATE/$name.emit" || die "$name: emitter failed"
  wait_line "$out" RECEIVED 180 || die "$name: no RECEIVED line"
  read -ra b <<<"$(z_sample)"
  wsb_wait || true
  stop_stack
  GW_EXTRA=()
  local ev zf p
  ev=$(kv "$out" RESULT events) zf=$(kv "$out" RESULT zframes)
  p=$(problems "$out")
  if [[ $z == on && ${zf:-0} == 0 ]]; then p="no compressed frame $p"; fi
  if [[ $z == off && ${zf:-0} != 0 ]]; then p="compressed frames with compression off $p"; fi
  echo "us_per_delivery=$(per_us $((b[0] - a[0])) "$ev")" \
    "stack_us_per_delivery=$(per_us $((b[0] - a[0] + b[1] - a[1] + b[2] - a[2])) "$ev")" \
    "cpu0_us_per_delivery=$(per_us $((b[3] - a[3])) "$ev")" \
    "gw_bytes_per_delivery=$(ratio $((b[4] - a[4])) "$ev")" \
    "cl_bytes_per_delivery=$(ratio "$(kv "$out" RESULT ev_wire_bytes)" "$ev")" \
    "plain_bytes_per_delivery=$(ratio "$(kv "$out" RESULT ev_bytes)" "$ev")" \
    "compressions=$((b[5] - a[5])) chained=$((b[6] - a[6]))" \
    "zframes=$zf pframes=$(kv "$out" RESULT pframes)" \
    "zctx=$(kv "$out" RESULT zctx)" \
    "p50_us=$(kv "$out" RESULT lat_p50_us) p99_us=$(kv "$out" RESULT lat_p99_us)" \
    "lost=$(kv "$out" RESULT lost) events=$ev problems=\"$p\""
}

# ---- medians and the table ----------------------------------------------------

# total KEY LINE...: the sum of KEY's values (lost and duplicates: any run's
# loss must show, a median would hide it).
total() {
  local key=$1
  shift
  printf '%s\n' "$@" | sed 's/ problems=".*//' | tr ' ' '\n' | sed -n "s/^$key=//p" |
    awk '{s += $1; n++} END {if (n == 0) print "n/a"; else print s}'
}

# event_figs KEY SCENARIO ARGS...: RUNS runs; the medians (sums for lost)
# into FIG[KEY_*].
event_figs() {
  local key=$1 k
  shift
  local -a r=()
  repeat r "$@"
  for k in deliv_per_s us_per_delivery stack_us_per_delivery broker_us_per_event p50_us p99_us \
    max_us; do
    FIG[${key}_$k]=$(median "$k" "${r[@]}")
  done
  FIG[${key}_lost]=$(total lost "${r[@]}")
}

replay_figs() {
  local key=$1 k
  shift
  local -a r=()
  repeat r "$@"
  for k in catchup_ms ev_per_s mb_per_s resume_per_s resume_p50_us resume_p99_us \
    catchup_p99_us us_per_delivery; do
    FIG[${key}_$k]=$(median "$k" "${r[@]}")
  done
  for k in lost dups rec_ok resumed; do FIG[${key}_$k]=$(total "$k" "${r[@]}"); done
}

# z_figs KEY SCENARIO ARGS...: RUNS runs of zevents (or onecore zevents);
# the medians, and sums of what must show from any run, into FIG[KEY_*].
z_figs() {
  local key=$1 k
  shift
  local -a r=()
  repeat r "$@"
  for k in us_per_delivery stack_us_per_delivery cpu0_us_per_delivery gw_bytes_per_delivery \
    cl_bytes_per_delivery plain_bytes_per_delivery p50_us p99_us; do
    FIG[${key}_$k]=$(median "$k" "${r[@]}")
  done
  for k in lost zframes pframes events; do FIG[${key}_$k]=$(total "$k" "${r[@]}"); done
  FIG[${key}_bad_runs]=$(printf '%s\n' "${r[@]}" | grep -vc 'problems=""$' || true)
}

# The compression scenarios: AWX events at Z_RATE/s for Z_SECONDS to 1 and
# to 1,000 subscribers, off and on; then the same with the whole stack on
# CPU 0 (a broker of its own and two CPUs only).
run_compress_figs() {
  if ! has_compression; then
    echo "compression scenarios skipped: this gatewayd has no [compression] settings" >&2
    return 0
  fi
  local n z count=$((Z_RATE * Z_SECONDS))
  for n in 1 1000; do
    for z in off on; do
      echo "Z: AWX job events to $n subscriber(s), $Z_RATE/s for $Z_SECONDS s, compression $z" >&2
      z_figs "z${n}_$z" zevents "z$n-$z" "$n" "$count" "$Z_RATE" "$z"
    done
  done
  ((OWN_BROKER && $(nproc) >= 2)) || return 0
  for n in 1 1000; do
    for z in off on; do
      echo "Z on one core: broker, gateway and worker on CPU 0, $n subscriber(s), compression $z" >&2
      z_figs "zc${n}_$z" onecore zevents "zc$n-$z" "$n" "$count" "$Z_RATE" "$z"
    done
  done
}

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

# "p50 / p99 / max" in ms of FIG[KEY_*].
lat() { echo "$(ms "${FIG[${1}_p50_us]}") / $(ms "${FIG[${1}_p99_us]}") / $(ms "${FIG[${1}_max_us]}")"; }
# a + b, "n/a" when either is.
sum2() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || a == "" || b == "") print "n/a"; else print a + b}'; }
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
  # Without the history (a gatewayd before issue 14) only "off" exists.
  local -a hists=(off)
  HAS_HIST=0
  if has_history; then HAS_HIST=1 hists=(off on); fi
  ONE_CORE=0
  ((OWN_BROKER && $(nproc) >= 2)) && ONE_CORE=1
  local h
  for h in "${hists[@]}"; do
    echo "S2: burst fanout, 1000 subscribers, 2000 events, history $h" >&2
    event_figs "s2_$h" events "s2-$h" 1000 2000 0 "$h"
  done
  if ((HAS_HIST)); then
    echo "S2: burst fanout, history on, 1000 wsgw.2 subscribers" >&2
    event_figs s2_p2 events s2-p2 1000 2000 0 on 2
  fi
  for h in "${hists[@]}"; do
    echo "S3: steady stream, 100 subscribers, 2000 events/s for 10 s, history $h" >&2
    event_figs "s3_$h" events "s3-$h" 100 20000 2000 "$h"
  done
  if ((ONE_CORE)); then
    for h in "${hists[@]}"; do
      echo "S3 on one core: broker, gateway and worker on CPU 0, history $h" >&2
      event_figs "s3c_$h" onecore events "s3c-$h" 100 20000 2000 "$h"
    done
  fi
  if ((HAS_HIST)); then
    echo "R1: replay of $R1_EVENTS events to one wsgw.2 client" >&2
    replay_figs r1 replay r1 1 "$R1_EVENTS"
    echo "R2: $R2_CONNS wsgw.2 clients reconnect at once, $R2_EVENTS events missed" >&2
    replay_figs r2 replay r2 "$R2_CONNS" "$R2_EVENTS"
  fi
  for w in 1 2; do
    echo "S4: subscription churn, 200 connections, $w worker(s)" >&2
    r=()
    repeat r s4 "$w" 200 5000
    FIG[s4_rps_$w]=$(median req_per_s "${r[@]}")
    FIG[s4_p99_$w]=$(median p99_us "${r[@]}")
  done
  run_storm_figs
  run_compress_figs
  write_report
}

# The reconnect storm on one core (issue 17), with batches and without.
run_storm_figs() {
  ((OWN_BROKER && $(nproc) >= 2)) || { echo "storm skipped: needs a broker of its own and two CPUs" >&2; return 0; }
  has_batches || { echo "storm skipped: this gatewayd has no amqp_batch" >&2; return 0; }
  local b f
  local -a r
  for b in 64 1; do
    echo "Storm: $STORM_CONNS clients (users) at once, whole stack on one core, amqp_batch=$b" >&2
    r=()
    repeat r onecore storm "$STORM_CONNS" 4096 1 "$b" distinct
    for f in stack_us_per_conn gateway_us worker_us broker_us seconds quiet_seconds; do
      FIG[storm${b}_$f]=$(median "$f" "${r[@]}")
    done
    FIG[storm${b}_errors]=$(printf '%s\n' "${r[@]}" | sed -n 's/.* errors=\([0-9]*\).*/\1/p' |
      awk '{s += $1} END {print s + 0}')
  done
}

# The storm's rows: whole-stack CPU per connection at most 130 us and
# 19,000 clients in under 3 s (issue 17), against amqp_batch=1.
storm_table() {
  local b h
  for b in 64 1; do
    [[ -n ${FIG[storm${b}_seconds]:-} ]] || continue
    h="Storm, $STORM_CONNS users at once, stack on one core, amqp_batch=$b"
    row "$h" "stack CPU per connection (us): gateway / worker / broker" \
      "${FIG[storm${b}_stack_us_per_conn]} (${FIG[storm${b}_gateway_us]} / ${FIG[storm${b}_worker_us]} / ${FIG[storm${b}_broker_us]})" \
      "$( ((b > 1)) && echo '<= 130' || echo '-')" \
      "$( ((b > 1)) && met le "${FIG[storm${b}_stack_us_per_conn]}" 130)"
    row "$h" "seconds to all connected and subscribed (to the stack idle)" \
      "${FIG[storm${b}_seconds]} (${FIG[storm${b}_quiet_seconds]})" \
      "$( ((b > 1)) && echo '< 3' || echo '-')" \
      "$( ((b > 1)) && met le "${FIG[storm${b}_seconds]}" 2.999)"
    row "$h" "clients refused or failed (all runs)" "${FIG[storm${b}_errors]}" "0" \
      "$(met le "${FIG[storm${b}_errors]}" 0)"
  done
}

# `bench/run.sh storm-table`: the storm scenarios alone, their table.
run_storm() {
  declare -gA FIG=()
  run_storm_figs
  echo
  echo "| scenario | figure | measured (median of $RUNS) | target | |"
  echo "|---|---|---|---|---|"
  storm_table
}

# 0 when this gatewayd batches channel messages (issue 17).
has_batches() {
  local help
  help=$("$BUILD/gatewayd" --help 2>&1 || true)
  [[ $help == *--gateway.amqp_batch=* ]]
}

# `bench/run.sh compress`: the compression scenarios alone, their table.
run_compress() {
  declare -gA FIG=()
  has_compression || die "this gatewayd has no [compression] settings"
  run_compress_figs
  echo
  echo "| scenario | figure | measured (median of $RUNS) | target | |"
  echo "|---|---|---|---|---|"
  z_table
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
  local h k
  for k in s2_off s2_on s2_p2; do
    [[ -n ${FIG[${k}_lost]:-} ]] || continue
    case $k in
      s2_off) h="S2 burst fanout$( ((HAS_HIST)) && echo ', history off')" ;;
      s2_on) h="S2 burst fanout, history on" ;;
      s2_p2) h="S2 burst fanout, history on, wsgw.2 clients" ;;
    esac
    row "$h" "deliveries/s" "$(us "${FIG[${k}_deliv_per_s]}")" "-" ""
    row "$h" "gateway CPU per delivery (us)" "${FIG[${k}_us_per_delivery]}" "<= 1.0" \
      "$(met le "${FIG[${k}_us_per_delivery]}" 1.0)"
    row "$h" "broker CPU per event (us)" "${FIG[${k}_broker_us_per_event]}" "-" ""
    row "$h" "latency p50 / p99 / max (ms)" "$(lat "$k")" "-" ""
    row "$h" "deliveries lost (all runs)" "${FIG[${k}_lost]}" "0" "$(met le "${FIG[${k}_lost]}" 0)"
  done
  for k in s3_off s3_on s3c_off s3c_on; do
    [[ -n ${FIG[${k}_lost]:-} ]] || continue
    case $k in
      s3_off) h="S3 steady 2000/s$( ((HAS_HIST)) && echo ', history off')" ;;
      s3_on) h="S3 steady 2000/s, history on" ;;
      s3c_off) h="S3 on one core$( ((HAS_HIST)) && echo ', history off')" ;;
      s3c_on) h="S3 on one core, history on" ;;
    esac
    if [[ $k == s3c_* ]]; then
      # Issue 17: the whole stack on one core, a trickle (one event at a time).
      row "$h" "latency p50 / p99 / max (ms)" "$(lat "$k")" "p99 <= 5 ms" \
        "$(met le "${FIG[${k}_p99_us]}" 5000)"
      row "$h" "stack CPU per delivery (us): gateway + broker + workers" \
        "${FIG[${k}_stack_us_per_delivery]}" "<= 1.5" \
        "$(met le "${FIG[${k}_stack_us_per_delivery]}" 1.5)"
    else
      row "$h" "latency p50 / p99 / max (ms)" "$(lat "$k")" "p99 <= 5 ms" \
        "$(met le "${FIG[${k}_p99_us]}" 5000)"
    fi
    row "$h" "gateway CPU per delivery (us)" "${FIG[${k}_us_per_delivery]}" "-" ""
    row "$h" "broker CPU per event (us)" "${FIG[${k}_broker_us_per_event]}" "-" ""
    row "$h" "deliveries lost (all runs)" "${FIG[${k}_lost]}" "0" "$(met le "${FIG[${k}_lost]}" 0)"
  done
  if [[ -n ${FIG[r1_lost]:-} ]]; then
    h="R1 replay to 1 client, $R1_EVENTS events"
    row "$h" "events/s (MB/s of envelopes)" \
      "$(us "${FIG[r1_ev_per_s]}") (${FIG[r1_mb_per_s]})" "-" ""
    row "$h" "reconnect to caught up (ms)" "${FIG[r1_catchup_ms]}" "-" ""
    row "$h" "gateway CPU per replayed delivery (us)" "${FIG[r1_us_per_delivery]}" "-" ""
    row "$h" "lost / duplicates (all runs)" "${FIG[r1_lost]} / ${FIG[r1_dups]}" "0 / 0" \
      "$(met le "$(sum2 "${FIG[r1_lost]}" "${FIG[r1_dups]}")" 0)"
  fi
  if [[ -n ${FIG[r2_lost]:-} ]]; then
    h="R2 storm, $R2_CONNS clients x $R2_EVENTS events"
    row "$h" "first reconnect to all caught up (ms)" "${FIG[r2_catchup_ms]}" "-" ""
    row "$h" "handshakes/s with recovery (p50 / p99 ms)" \
      "$(us "${FIG[r2_resume_per_s]}") ($(ms "${FIG[r2_resume_p50_us]}") / $(ms "${FIG[r2_resume_p99_us]}"))" "-" ""
    row "$h" "deliveries/s while catching up" "$(us "${FIG[r2_ev_per_s]}")" "-" ""
    row "$h" "gateway CPU per replayed delivery (us)" "${FIG[r2_us_per_delivery]}" "-" ""
    row "$h" "lost / duplicates (all runs)" "${FIG[r2_lost]} / ${FIG[r2_dups]}" "0 / 0" \
      "$(met le "$(sum2 "${FIG[r2_lost]}" "${FIG[r2_dups]}")" 0)"
    row "$h" "recovered ok / reconnects (all runs)" "${FIG[r2_rec_ok]} / ${FIG[r2_resumed]}" \
      "$((R2_CONNS * RUNS))" "$(met ge "${FIG[r2_rec_ok]}" $((R2_CONNS * RUNS)))"
  fi
  row "S4 churn" "changes/s, 1 worker (p99 ms)" \
    "$(us "${FIG[s4_rps_1]}") ($(ms "${FIG[s4_p99_1]}"))" "-" ""
  row "S4 churn" "changes/s, 2 workers (p99 ms)" \
    "$(us "${FIG[s4_rps_2]}") ($(ms "${FIG[s4_p99_2]}"))" ">= 5000" \
    "$(met ge "${FIG[s4_rps_2]}" 5000)"
  storm_table
  [[ -z ${FIG[z1_off_lost]:-} ]] || z_table
}

# "a on / b off = ratio" of FIG[KEY_on_FIG] and FIG[KEY_off_FIG].
on_off() {
  local k=$1 f=$2
  echo "${FIG[${k}_on_$f]} / ${FIG[${k}_off_$f]}"
}

# The rows of the compression scenarios. Targets (issue 16) at 1,000
# subscribers: compressed CPU per delivery at most 1.2x the plain one, for
# at least 3x fewer bytes on the wire.
z_table() {
  local n z h k r subs
  for n in 1 1000; do
    subs="$n subscriber"
    ((n == 1)) || subs+=s
    for z in off on; do
      k=z${n}_$z h="Z AWX events, $subs, compression $z"
      row "$h" "bytes on the wire per delivery: gateway / client" \
        "${FIG[${k}_gw_bytes_per_delivery]} / ${FIG[${k}_cl_bytes_per_delivery]}" "-" ""
      row "$h" "event size per delivery (bytes, inflated)" "${FIG[${k}_plain_bytes_per_delivery]}" "-" ""
      row "$h" "gateway CPU per delivery (us)" "${FIG[${k}_us_per_delivery]}" "-" ""
      row "$h" "latency p50 / p99 (ms)" "$(ms "${FIG[${k}_p50_us]}") / $(ms "${FIG[${k}_p99_us]}")" "-" ""
      row "$h" "lost / runs with problems (all runs)" "${FIG[${k}_lost]} / ${FIG[${k}_bad_runs]}" \
        "0 / 0" "$(met le "$(sum2 "${FIG[${k}_lost]}" "${FIG[${k}_bad_runs]}")" 0)"
      row "$h" "event frames compressed / plain (all runs)" \
        "${FIG[${k}_zframes]} / ${FIG[${k}_pframes]}" "-" ""
    done
    k=z$n h="Z AWX events, $subs, on vs off"
    r=$(ratio "${FIG[${k}_on_us_per_delivery]}" "${FIG[${k}_off_us_per_delivery]}")
    row "$h" "gateway CPU per delivery, on / off" "$r" \
      "$( ((n == 1000)) && echo '<= 1.2' || echo -)" "$( ((n == 1000)) && met le "$r" 1.2)"
    r=$(ratio "${FIG[${k}_off_gw_bytes_per_delivery]}" "${FIG[${k}_on_gw_bytes_per_delivery]}")
    row "$h" "bytes on the wire per delivery, off / on" "$r" \
      "$( ((n == 1000)) && echo '>= 3' || echo -)" "$( ((n == 1000)) && met ge "$r" 3)"
  done
  for n in 1 1000; do
    subs="$n subscriber"
    ((n == 1)) || subs+=s
    k=zc$n h="Z on one core, $subs, on / off"
    [[ -n ${FIG[${k}_on_lost]:-} ]] || continue
    row "$h" "stack CPU per delivery (us): gatewayd + broker + workerd" \
      "$(on_off "$k" stack_us_per_delivery) = $(ratio "${FIG[${k}_on_stack_us_per_delivery]}" \
        "${FIG[${k}_off_stack_us_per_delivery]}")x" "-" ""
    row "$h" "gateway CPU per delivery (us)" "$(on_off "$k" us_per_delivery) = $(ratio \
      "${FIG[${k}_on_us_per_delivery]}" "${FIG[${k}_off_us_per_delivery]}")x" "-" ""
    row "$h" "bytes on the wire per delivery (gateway)" \
      "$(on_off "$k" gw_bytes_per_delivery)" "-" ""
    row "$h" "lost / runs with problems (all runs)" \
      "$(sum2 "${FIG[${k}_on_lost]}" "${FIG[${k}_off_lost]}") / $(sum2 "${FIG[${k}_on_bad_runs]}" \
        "${FIG[${k}_off_bad_runs]}")" "0 / 0" "$(met le "$(sum2 "$(sum2 "${FIG[${k}_on_lost]}" \
        "${FIG[${k}_off_lost]}")" "$(sum2 "${FIG[${k}_on_bad_runs]}" "${FIG[${k}_off_bad_runs]}")")" 0)"
  done
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
  echo "delivery = gateway CPU time (all threads, /proc schedstat) while they flowed /"
  echo "deliveries."
  echo "S3 100 members, 2,000 events/s for 10 s. S4 200 connections each sending"
  echo "a subscription change as soon as the previous one is answered, alternating"
  echo "two groups, for 5 s. Latency = receipt (CLOCK_REALTIME) - the emitter's"
  echo "stamp in the event. Lost deliveries are summed over the runs."
  if ((HAS_HIST)); then
    echo
    echo "History on and off: S2 and S3 run once with the gateway's event history off"
    echo "(\`--history.enabled=false\`: a queue bound per group, as before issue 14) and"
    echo "once on (the default: every event read from the stream \`websocket.history\`),"
    echo "with old-protocol clients both times; \"wsgw.2 clients\" is S2 again with"
    echo "clients that negotiated wsgw.2 (each event in its envelope with group and"
    echo "position). Broker CPU per event = the broker VM's (beam.smp) CPU time over"
    echo "the same interval / events emitted. Each S2, S3 and R run starts with the"
    echo "stream deleted (no earlier run's events in it); S1 and S4 run with the default"
    echo "(history on)."
  fi
  if [[ -n ${FIG[s3c_off_lost]:-} ]]; then
    echo
    echo "S3 on one core: the whole stack on CPU 0 (RabbitMQ's VM, every thread, with"
    echo "gatewayd and workerd), the load client and the emitter on CPU 1; otherwise S3."
    echo "What one core carries when it runs everything, as a small host would."
  fi
  if [[ -n ${FIG[r1_lost]:-} ]]; then
    echo
    echo "R1 replay to one client: one wsgw.2 client subscribes to \`jobs-bench\` and keeps"
    echo "the reply's position, then disconnects; $R1_EVENTS events of 256 bytes are"
    echo "emitted; ${REPLAY_SETTLE} s after the last confirm (the gateway has read them from"
    echo "the stream) the client reconnects naming its position and must get exactly those"
    echo "events, in order, none twice, recovery \"ok\". Events/s and MB/s (bytes of the"
    echo "envelopes as received) run from the reconnect's TCP connect to the last event;"
    echo "gateway CPU per replayed delivery over the same time."
  fi
  if [[ -n ${FIG[r2_lost]:-} ]]; then
    echo
    echo "R2 reconnect storm: the same with $R2_CONNS clients and $R2_EVENTS events, all"
    echo "$R2_CONNS reconnecting at once (all handshakes in flight together), as after a"
    echo "gateway restart: time from the first connect to the last client's last event;"
    echo "handshakes/s with recovery = reconnects / (last subscription reply - first"
    echo "connect), each a TCP connect, an upgrade whose token a worker checks, and a"
    echo "subscription naming a position, answered with recovery \"ok\"; then every client"
    echo "gets its $R2_EVENTS missed events ($((R2_CONNS * R2_EVENTS)) deliveries)."
  fi
  if [[ -n ${FIG[z1_off_lost]:-} ]]; then
    echo
    echo "Z compression (permessage-deflate, issue 16): AWX job events (\`bench-emit"
    echo "--sample awx\`: stdout with ANSI colour codes, 0.5-4 KB, ~2 KB on average) at"
    echo "$Z_RATE/s for $Z_SECONDS s to 1 and to 1,000 old-protocol subscribers of one group, with"
    echo "the gateway's \`[compression] enabled\` off (clients offer nothing) and on (every"
    echo "client offers permessage-deflate and inflates; level 1, min_size 256). Bytes"
    echo "on the wire per delivery: the gateway's wsgw_gateway_bytes_sent_total delta /"
    echo "deliveries, and the load client's count of the events' frames (headers and"
    echo "payloads as received); gateway CPU per delivery as in S2. \"On one core\": the"
    echo "same with RabbitMQ, gatewayd and workerd on CPU 0 (as S3 on one core): stack"
    echo "CPU = their CPU time together per delivery."
  fi
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
    grep -E '^(hs_per_s|events|lat_p99_us|churn_reqs|replayed|rec_ok)=' | tr '\n' ' '))"
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
  local checks=4
  if has_history; then
    smoke_wsgw2 "$out" || fails=$((fails + $?))
    checks=6
  else
    echo "bench-smoke: wsgw.2 skipped: this gatewayd has no event history"
  fi
  stop_stack
  if has_compression; then
    smoke_compress "$out" || fails=$((fails + $?))
    checks=$((checks + 2))
  else
    echo "bench-smoke: compression skipped: this gatewayd has no [compression] settings"
  fi
  ((fails == 0)) || die "$fails smoke check(s) failed"
  echo "bench-smoke: $((checks - fails)) passed, 0 failed"
}

# wsgw.2 on the running stack: a drop in the middle of a paced stream with
# a reconnect naming the position (the seam between replay and live), and
# everyone away while events are emitted, then back. Fails on loss, a
# duplicate, disorder, a recovery other than "ok" or a reconnect that is
# not answered; never on speed. Returns the number of failed checks.
smoke_wsgw2() {
  local out=$1 fails=0 resumed
  wsb_start "$out.5" --protocol wsgw.2 --conns 20 --mode events --expect 400 \
    --reconnect-after 150 --idle-ms 3000 --timeout-ms 30000
  if wait_line "$out.5" READY 30; then
    "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count 400 --rate 1000 >/dev/null ||
      fails=$((fails + 1))
  fi
  wsb_wait || true
  resumed=$(kv "$out.5" RESULT resumed)
  if [[ ${resumed:-0} != 20 ]]; then
    echo "bench-smoke: FAILED: wsgw.2 reconnect: ${resumed:-0} of 20 reconnects answered" \
      "$(grep -o 'first_error=.*' "$out.5" | tail -1)"
    fails=$((fails + 1))
  else
    smoke_check "wsgw.2 20 x 400 events at 1000/s, each reconnecting after 150" "$out.5" ||
      fails=$((fails + 1))
  fi
  wsb_start "$out.6" --protocol wsgw.2 --conns 50 --window 50 --mode recover --expect 300 \
    --idle-ms 3000 --timeout-ms 30000 --linger-ms 0
  if wait_line "$out.6" AWAY 30; then
    "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count 300 >/dev/null ||
      fails=$((fails + 1))
    kill -USR1 "$WSB_PID" 2>/dev/null || true
  fi
  wsb_wait || true
  resumed=$(kv "$out.6" RESULT resumed)
  if [[ ${resumed:-0} != 50 ]]; then
    echo "bench-smoke: FAILED: wsgw.2 recovery: ${resumed:-0} of 50 reconnects answered" \
      "$(grep -o 'first_error=.*' "$out.6" | tail -1)"
    fails=$((fails + 1))
  else
    smoke_check "wsgw.2 50 away for 300 events, back with positions" "$out.6" ||
      fails=$((fails + 1))
  fi
  return "$fails"
}

# permessage-deflate on a gateway of its own with compression on: 50
# clients that offer it as browsers do (--deflate: the gateway may keep its
# context), 10 that offer server_no_context_takeover (--deflate-no-takeover)
# and 20 that offer nothing, in one group, get the same 300 AWX job events
# at 1000/s. Fails on loss, disorder or errors (a plain client given an
# RSV1 frame is one; a compressed client whose 101 is not what it offered
# or whose message does not inflate is one), when no event came compressed
# to the former two or one did to the latter; never on speed. The 101 may
# answer the 50 either way: with server_no_context_takeover (no kept
# inflater: zctx=0) or without (one kept per connection: zctx=50); anything
# between is a failure. The 10 must never keep one. Returns the number of
# failed checks.
smoke_compress() {
  local out=$1 fails=0 zf zctx how
  GW_EXTRA=(--compression.enabled=true)
  start_stack 1
  GW_EXTRA=()
  wsb_start "$out.7" --conns 20 --mode events --expect 300 --idle-ms 3000 --timeout-ms 30000
  WSB2_PID=$WSB_PID
  wait_line "$out.7" READY 30 || true
  wsb_start "$out.9" --deflate-no-takeover --conns 10 --mode events --expect 300 \
    --idle-ms 3000 --timeout-ms 30000
  WSB3_PID=$WSB_PID
  wait_line "$out.9" READY 30 || true
  wsb_start "$out.8" --deflate --conns 50 --mode events --expect 300 --idle-ms 3000 \
    --timeout-ms 30000
  if wait_line "$out.8" READY 30; then
    "$BUILD/bench-emit" --url "$AMQP_URL" --group "$GROUP" --count 300 --rate 1000 \
      --sample awx >/dev/null || fails=$((fails + 1))
  fi
  wsb_wait || true
  WSB_PID=$WSB3_PID WSB3_PID=
  wsb_wait || true
  WSB_PID=$WSB2_PID WSB2_PID=
  wsb_wait || true
  stop_stack
  zf=$(kv "$out.8" RESULT zframes) zctx=$(kv "$out.8" RESULT zctx)
  case ${zctx:-0} in
    0) how="each inflated alone (server_no_context_takeover)" ;;
    50) how="context kept: 50 inflaters" ;;
    *) how= ;;
  esac
  if [[ ${zf:-0} == 0 ]]; then
    echo "bench-smoke: FAILED: compression: no event came compressed" \
      "$(grep -o 'first_error=.*' "$out.8" | tail -1)"
    fails=$((fails + 1))
  elif [[ -z $how ]]; then
    echo "bench-smoke: FAILED: compression: $zctx of 50 connections kept a context (0 or 50)"
    fails=$((fails + 1))
  else
    smoke_check "compression 50 x 300 AWX events at 1000/s, $zf frames compressed, $how" \
      "$out.8" || fails=$((fails + 1))
  fi
  zf=$(kv "$out.9" RESULT zframes) zctx=$(kv "$out.9" RESULT zctx)
  if [[ ${zf:-0} == 0 || ${zctx:-0} != 0 ]]; then
    echo "bench-smoke: FAILED: compression without context takeover: zframes=${zf:-0}" \
      "zctx=${zctx:-0} (want > 0 and 0) $(grep -o 'first_error=.*' "$out.9" | tail -1)"
    fails=$((fails + 1))
  else
    smoke_check "the same to 10 offering server_no_context_takeover, $zf frames compressed" \
      "$out.9" || fails=$((fails + 1))
  fi
  zf=$(kv "$out.7" RESULT zframes)
  if [[ ${zf:-0} != 0 ]]; then
    echo "bench-smoke: FAILED: compression: $zf compressed frames to clients that did not offer it"
    fails=$((fails + 1))
  else
    smoke_check "the same to 20 clients without permessage-deflate, all plain" "$out.7" ||
      fails=$((fails + 1))
  fi
  return "$fails"
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
  full | smoke | profile | compress | storm-table | s1 | events | s4 | replay | zevents | storm | onecore) ;;
  *) die "usage: bench/run.sh full|smoke|profile|compress|storm-table, or one run: s1 N WORKERS | events NAME CONNS COUNT RATE [on|off [1|2]] | s4 WORKERS CONNS MS | replay NAME CONNS COUNT | zevents NAME CONNS COUNT RATE on|off | storm CONNS [WINDOW [WORKERS [BATCH]]] | onecore events|zevents|storm ..." ;;
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
  compress) run_compress ;;
  storm-table) run_storm ;;
  *) shift && "$MODE" "$@" ;; # one run of one scenario, for development
esac
ok=1
