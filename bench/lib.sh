# shellcheck shell=bash
# lib.sh - shell functions the benchmark scripts share (run.sh, workers.sh,
# scale.sh source it after cd-ing to the repository root).
#
# Owns: stopping a process by pid, a free loopback port, reading the load
# client's key=value report lines, waiting for one, and medians. Must not:
# start anything or keep state; each script owns its processes and cleanup.
# Each script sets BENCH_NAME (for messages) and WSB_PID (the load client,
# which wait_line watches).

die() { echo "${BENCH_NAME:-bench}: $*" >&2; exit 1; }

# TERM, then KILL after STOP_TICKS x 50 ms (default 5 s), then reap.
stop_pid() {
  local pid=$1
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq "${STOP_TICKS:-100}"); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The value of key=VALUE in the last line of file f that starts with tag.
kv() {
  local f=$1 tag=$2 key=$3
  grep "^$tag " "$f" | tail -1 | tr ' ' '\n' | sed -n "s/^$key=//p"
}

# Waits until file f has a line starting with tag; fails when the load
# client ($WSB_PID) exits without it or after t seconds.
wait_line() {
  local f=$1 tag=$2 deadline=$((SECONDS + $3))
  until grep -q "^$tag " "$f" 2>/dev/null; do
    kill -0 "$WSB_PID" 2>/dev/null || grep -q "^$tag " "$f" || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.02
  done
}

# median KEY LINE... : the median of KEY's values in the lines.
median() {
  local key=$1
  shift
  # problems="..." (last on a line) repeats some keys: not a figure.
  printf '%s\n' "$@" | sed 's/ problems=".*//' | tr ' ' '\n' | sed -n "s/^$key=//p" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR + 1) / 2];
         else printf "%g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}

# Waits until the stack started by the caller ($GW_PID listening on
# $GW_PORT) accepts a websocket handshake with $TOKEN, which a worker must
# answer, and the optional command "$2..." succeeds too; then sleeps $1
# seconds for the other workers' consumers. Fails after 20 s or when the
# gateway exits ($STATE/gatewayd.log shows why).
wait_stack_up() {
  local settle=$1
  shift
  for _ in $(seq 100); do
    if "$BUILD/wsbench" --port "$GW_PORT" --token "$TOKEN" --conns 1 --sub '' \
      --timeout-ms 2000 >/dev/null 2>&1 && { (($# == 0)) || "$@"; }; then
      sleep "$settle"
      return 0
    fi
    kill -0 "$GW_PID" 2>/dev/null || { tail -20 "$STATE/gatewayd.log" >&2; die "gatewayd exited"; }
    sleep 0.2
  done
  die "the stack did not accept a connection within 20 s"
}

# Stops the load client and the daemons ($WSB_PID, $GW_PID, $WK_PIDS), then
# empties the work queues: the disconnects of the sockets just closed must
# not become the next run's work.
stop_stack() {
  local p
  stop_pid "$WSB_PID"
  stop_pid "$GW_PID"
  for p in "${WK_PIDS[@]}"; do stop_pid "$p"; done
  if [[ -n $GW_PID ]]; then
    "$BUILD/bench-emit" --url "$AMQP_URL" --purge >/dev/null 2>&1 || true
  fi
  GW_PID='' WSB_PID=''
  WK_PIDS=()
}

# ---- the generated blocks of docs/BENCHMARKS.md ------------------------------

# "2 CPUs (model), 23.5 GiB RAM, Linux x.y, load average before the run: ..."
# ($LOAD0: /proc/loadavg read by the caller before it started anything).
machine() {
  local cpu mem
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
  mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "$(nproc) CPUs ($cpu), $mem RAM, $(uname -sr), load average before the run: $LOAD0"
}

# A load client is one address (or a few): the per-address limits
# (gateway.max_per_client, max_handshakes_per_client) are off for it, when
# the binary has them.
gateway_load_flags() {
  local help
  # Read whole: `| grep -q` may close the pipe before the gateway is done
  # writing, and under pipefail its SIGPIPE would read as "no such flag".
  help=$("$BUILD/gatewayd" --help 2>&1 || true)
  if [[ $help == *--gateway.max_handshakes_per_client=* ]]; then
    echo "--gateway.max_per_client=0 --gateway.max_handshakes_per_client=0"
  fi
}

# The commit measured, and whether the daemons' sources differ from it.
commit() {
  local c
  c=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ -n $(git status --porcelain -- gatewayd workerd proto common 2>/dev/null) ]]; then
    c="$c (with uncommitted changes to the daemons)"
  fi
  echo "$c"
}

# doc_put_block DOC BEGIN END FILE HEADING: replaces the lines of DOC from the
# one starting with BEGIN to the one starting with END by FILE (which holds
# both markers); appends "## HEADING" and FILE when DOC has no such block.
# The rest of DOC, written by hand, is kept.
doc_put_block() {
  local doc=$1 begin=$2 end=$3 file=$4 heading=$5
  if [[ -f $doc ]] && grep -qF -- "$begin" "$doc" && grep -qF -- "$end" "$doc"; then
    awk -v gen="$file" -v b="$begin" -v e="$end" '
      index($0, b) == 1 {while ((getline l < gen) > 0) print l; skip = 1; next}
      index($0, e) == 1 {skip = 0; next}
      !skip {print}' "$doc" >"$doc.tmp" && mv "$doc.tmp" "$doc"
  else
    printf '\n## %s\n\n' "$heading" >>"$doc"
    cat "$file" >>"$doc"
  fi
}
