#!/usr/bin/env bash
# broker.sh - a private RabbitMQ node for tests and `make run`.
#
# Owns: one RabbitMQ node per state folder DIR, with its own HOME (Erlang
# cookie), node name, loopback AMQP port, distribution port, mnesia and log
# folders, config and an empty plugin list. Never touches the system service.
#
#   broker.sh start DIR       start in the background, wait for AMQP, write DIR/env
#   broker.sh run DIR         same node in the foreground (exec; for the Procfile)
#   broker.sh stop DIR        stop the node started with `start`
#   broker.sh kill DIR        SIGKILL the node (a crash: no clean shutdown)
#   broker.sh restart DIR     start a stopped or killed node again on the same
#                             ports, node name and data folder (fault tests)
#   broker.sh ctl DIR ARGS..  rabbitmqctl against that node, e.g. `list_bindings -p v`
#   broker.sh status DIR      exit 0 when the node's AMQP port accepts
#   broker.sh cluster DIR N   start N nodes in DIR/node1..N sharing one Erlang
#                             cookie, join node2..N to node1, write DIR/env
#                             (AMQP_URLS, comma-separated; CLUSTER_NODES=N); each
#                             node is then an ordinary DIR/nodeI for the verbs
#                             above (kill, restart, stop, ctl)
#   broker.sh join DIR SEED   join the started node in DIR to the cluster of the
#                             node in SEED (stop_app, reset, join_cluster,
#                             start_app); for nodes started one by one, e.g. in
#                             separate network namespaces (tests/lib/netns.sh)
#
# DIR/env holds shell-style KEY=value lines (also readable by foreman -e and
# by the pytest fixtures): AMQP_PORT, AMQP_URL, DIST_PORT, NODENAME,
# BROKER_HOME, BROKER_DIR, BROKER_PID, NODE_IP, USE_LONGNAME.
#
# A node on another address (a network namespace playing a host): by
# default the node listens on 127.0.0.1 and is named NAME@localhost. Set
#   BROKER_IP=10.x.y.z        listen there (AMQP); guest may then log in from
#                             other addresses too (loopback_users off)
#   BROKER_NODE_HOST=10.x.y.z host part of the node name; a name with a dot
#                             (an address, a FQDN) makes it a long name
#                             (RABBITMQ_USE_LONGNAME, rabbitmqctl -l), which
#                             other hosts reach without a hosts file
#   BROKER_CONF='key = value' extra rabbitmq.conf lines (newline-separated),
#                             e.g. net_ticktime, cluster_partition_handling;
#                             kept in DIR/extra.conf, reused by restart
# `start` must then run inside that namespace (ip netns exec NS broker.sh
# start DIR); ctl, join, stop and kill work from any namespace that reaches
# the address.
#
# Ports: BROKER_AMQP_PORT and BROKER_DIST_PORT choose them; otherwise free
# ones are picked at run time. Facts behind the choices:
# shared/notes/rabbitmq-private-node.md in the steering repo (dist port outside 35672-35682,
# create mnesia/log folders first, run the node's own script, not the
# /usr/sbin wrapper that switches to the rabbitmq user).
set -euo pipefail

RMQ_BIN=${RMQ_BIN:-/usr/lib/rabbitmq/bin}
# Read from DIR/env, never from the caller's environment.
unset NODE_IP USE_LONGNAME
START_TIMEOUT=${BROKER_START_TIMEOUT:-60}

die() { echo "broker.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

# A free loopback TCP port below the kernel's ephemeral range, so that no
# client connection of the tests (storms of 1,000 take 1,000 ephemeral
# ports) can take it between this choice and the node binding it seconds
# later (it happened once: "could not bind to distribution port"); also
# outside 35672-35682 (the RabbitMQ CLI tools' own distribution ports).
free_port() {
  local lo _hi
  read -r lo _hi < /proc/sys/net/ipv4/ip_local_port_range
  /usr/bin/python3 - "$lo" <<'PY'
import random, socket, sys
lo = int(sys.argv[1])
while True:
    p = random.randrange(10000, max(lo, 10001))
    if 35672 <= p <= 35682:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
}

port_open() { (exec 3<>"/dev/tcp/${NODE_IP:-127.0.0.1}/$1") 2>/dev/null; }

# Exports everything the node's scripts and rabbitmqctl need for DIR.
node_env() {
  local dir=$1
  export HOME="$dir/home"
  export RABBITMQ_NODENAME=$NODENAME
  export RABBITMQ_NODE_IP_ADDRESS=${NODE_IP:-127.0.0.1}
  if [[ ${USE_LONGNAME:-false} == true ]]; then export RABBITMQ_USE_LONGNAME=true; fi
  export RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_DIST_PORT=$DIST_PORT
  export RABBITMQ_MNESIA_BASE="$dir/mnesia"
  export RABBITMQ_LOG_BASE="$dir/log"
  export RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
  export RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
  export RABBITMQ_PID_FILE="$dir/node.pid"
  # Log to files only; the console output goes to DIR/log/console.log.
  export RABBITMQ_LOGS="$dir/log/node.log"
}

# Reads DIR/env (written by prepare) into the shell.
load_env() {
  local dir=$1
  [[ -f $dir/env ]] || die "$dir/env not found: is a broker started in $dir?"
  # shellcheck disable=SC1091
  . "$dir/env"
}

# Creates the node's folders and files, chooses its name and ports, writes
# DIR/env. The node is not started.
prepare() {
  local dir=$1
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  chmod 700 "$dir/home"
  # Cluster members must share the cookie; the node creates one otherwise.
  if [[ -n ${BROKER_COOKIE:-} && ! -f $dir/home/.erlang.cookie ]]; then
    (umask 077 && printf '%s' "$BROKER_COOKIE" >"$dir/home/.erlang.cookie")
    chmod 400 "$dir/home/.erlang.cookie"
  fi
  AMQP_PORT=${BROKER_AMQP_PORT:-$(free_port)}
  DIST_PORT=${BROKER_DIST_PORT:-$(free_port)}
  while [[ $DIST_PORT == "$AMQP_PORT" ]]; do DIST_PORT=$(free_port); done
  NODE_IP=${BROKER_IP:-127.0.0.1}
  local node_host=${BROKER_NODE_HOST:-localhost} loopback=true
  USE_LONGNAME=false
  [[ $node_host == *.* ]] && USE_LONGNAME=true
  [[ $NODE_IP == 127.* ]] || loopback=false
  # One name per folder, so that a restart in the same folder reuses its
  # mnesia data; the folder's hash keeps two folders apart.
  NODENAME="wsgw-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)@$node_host"
  cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.default = $NODE_IP:$AMQP_PORT
loopback_users.guest = $loopback
log.console = false
log.file.level = info
disk_free_limit.absolute = 50MB
EOF
  printf '%s\n' "${BROKER_CONF:-}" | sed '/^[[:space:]]*$/d' >"$dir/extra.conf"
  cat "$dir/extra.conf" >>"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  rm -f "$dir/node.pid"
  : >"$dir/rabbitmq-env.conf"
  rm -f "$dir/advanced.config"
  cat >"$dir/env" <<EOF
AMQP_PORT=$AMQP_PORT
AMQP_URL=amqp://guest:guest@$NODE_IP:$AMQP_PORT/
DIST_PORT=$DIST_PORT
NODENAME=$NODENAME
BROKER_HOME=$dir/home
BROKER_DIR=$dir
NODE_IP=$NODE_IP
USE_LONGNAME=$USE_LONGNAME
EOF
  BROKER_DIR=$dir
}

print_logs() {
  local dir=$1 f
  for f in "$dir/log/console.log" "$dir/log/node.log"; do
    [[ -s $f ]] || continue
    echo "---- $f (last 60 lines) ----" >&2
    tail -n 60 "$f" >&2
  done
}

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# Alive and not a zombie: a killed node whose parent has not reaped it yet
# still answers kill -0.
pid_running() {
  pid_alive "$1" && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]
}

cmd_start() {
  local dir=$1
  if [[ -f $dir/env ]]; then
    load_env "$dir"
    if pid_alive "${BROKER_PID:-}" && port_open "$AMQP_PORT"; then
      echo "broker already running: $AMQP_URL"
      return 0
    fi
  fi
  prepare "$dir"
  dir=$BROKER_DIR
  node_env "$dir"
  # setsid: the node is not in the caller's process group, so a terminal's
  # Ctrl-C reaches the caller, whose trap runs `broker.sh stop`.
  setsid "$RMQ_BIN/rabbitmq-server" >"$dir/log/console.log" 2>&1 </dev/null &
  local pid=$!
  echo "BROKER_PID=$pid" >>"$dir/env"
  local deadline=$((SECONDS + START_TIMEOUT))
  until port_open "$AMQP_PORT"; do
    if ! pid_alive "$pid"; then
      print_logs "$dir"
      die "the node exited before listening on $NODE_IP:$AMQP_PORT"
    fi
    if ((SECONDS >= deadline)); then
      print_logs "$dir"
      cmd_stop "$dir" || true
      die "the node did not listen on $NODE_IP:$AMQP_PORT within ${START_TIMEOUT}s"
    fi
    sleep 0.2
  done
  echo "broker started: amqp://guest:guest@$NODE_IP:$AMQP_PORT/ (node $NODENAME, state in $dir)"
}

cmd_run() {
  local dir=$1
  prepare "$dir"
  dir=$BROKER_DIR
  node_env "$dir"
  echo "BROKER_PID=$$" >>"$dir/env"
  echo "broker: amqp://guest:guest@$NODE_IP:$AMQP_PORT/ (node $NODENAME, log $dir/log/node.log)"
  # The node's script turns SIGTERM and SIGINT into a clean stop.
  exec "$RMQ_BIN/rabbitmq-server"
}

# 0 when pid is alive and its command line contains pattern: a pid file
# left from an earlier run may name a recycled pid of another program.
pid_is() {
  local pid=$1 pattern=$2
  pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

cmd_stop() {
  local dir=$1
  [[ -f $dir/env ]] || { echo "broker.sh: no broker in $dir"; return 0; }
  load_env "$dir"
  local pid='' node_pid='' p
  pid_is "${BROKER_PID:-}" rabbitmq-server && pid=$BROKER_PID
  if [[ -f $dir/node.pid ]]; then
    p=$(cat "$dir/node.pid" 2>/dev/null || true)
    pid_is "$p" "$(vm_marker)" && node_pid=$p
  fi
  [[ -n $pid || -n $node_pid ]] || return 0
  # SIGTERM: the node's script and the Erlang VM both stop cleanly on it.
  for p in $pid $node_pid; do kill -TERM "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + 20))
  while pid_alive "$pid" || pid_alive "$node_pid"; do
    if ((SECONDS >= deadline)); then
      echo "broker.sh: node did not stop within 20s; killing it" >&2
      for p in $node_pid $pid; do kill -KILL "$p" 2>/dev/null || true; done
      break
    fi
    sleep 0.1
  done
  echo "broker stopped ($NODENAME)"
}

# What the Erlang VM's command line holds of this node: not its name (that
# goes through the environment) but its private HOME.
vm_marker() { printf -- '-home %s ' "$BROKER_HOME"; }

# The pids of the node started in DIR: its start script and the Erlang VM
# (the VM's pid comes from the pid file the node writes once it runs).
node_pids() {
  local dir=$1 p
  load_env "$dir"
  pid_is "${BROKER_PID:-}" rabbitmq-server && echo "$BROKER_PID"
  if [[ -f $dir/node.pid ]]; then
    p=$(cat "$dir/node.pid" 2>/dev/null || true)
    pid_is "$p" "$(vm_marker)" && echo "$p"
  fi
  return 0
}

# A crash, not a stop: the VM gets SIGKILL and writes nothing to disk, so a
# restart must recover from whatever state it left.
cmd_kill() {
  local dir=$1 p pids
  [[ -f $dir/env ]] || die "no broker in $dir"
  load_env "$dir"
  pids=$(node_pids "$dir")
  [[ -n $pids ]] || { echo "broker.sh: no running node in $dir"; return 0; }
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  local deadline=$((SECONDS + 20))
  for p in $pids; do
    while pid_running "$p"; do
      ((SECONDS < deadline)) || die "pid $p survived SIGKILL for 20s"
      sleep 0.05
    done
  done
  echo "broker killed ($NODENAME)"
}

# Same ports, node name and mnesia folder as the last start: clients see the
# same broker come back (durable queues and exchanges included).
cmd_restart() {
  local dir=$1
  load_env "$dir"
  [[ -z $(node_pids "$dir") ]] || die "the node in $dir is still running"
  # Same address, name and extra settings as before (an env file written
  # before these existed means loopback and no extras).
  local conf=''
  [[ -f $dir/extra.conf ]] && conf=$(cat "$dir/extra.conf")
  BROKER_AMQP_PORT=$AMQP_PORT BROKER_DIST_PORT=$DIST_PORT BROKER_IP=${NODE_IP:-127.0.0.1} \
    BROKER_NODE_HOST=${NODENAME#*@} BROKER_CONF=$conf cmd_start "$dir"
}

cmd_ctl() {
  local dir=$1
  shift
  load_env "$dir"
  export HOME=$BROKER_HOME
  local longnames=() src
  if [[ ${USE_LONGNAME:-false} == true ]]; then
    longnames=(-l)
    # rabbitmqctl is an Erlang node too, named after this machine's hostname,
    # and the nodes answering a cluster-wide query (list_queues) connect back
    # to it by that name, which a node in another network namespace cannot
    # resolve: name it by the address the node is reached from instead.
    src=$(ip -o route get "$NODE_IP" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
    if [[ -n $src && -z ${RABBITMQ_CTL_ERL_ARGS:-} ]]; then
      export RABBITMQ_CTL_ERL_ARGS="-name rabbitmqcli-$$@$src"
    fi
  fi
  exec "$RMQ_BIN/rabbitmqctl" -q "${longnames[@]}" -n "$NODENAME" "$@"
}

cmd_status() {
  local dir=$1
  load_env "$dir"
  port_open "$AMQP_PORT"
}

# Joins the node in DIR to the cluster of the node in SEED (reset first: a
# fresh node holds nothing worth keeping).
join_node() {
  local dir=$1 seed=$2 seed_node verb log=$1/log/join.log
  seed_node=$(load_env "$seed" && echo "$NODENAME")
  for verb in stop_app reset "join_cluster $seed_node" start_app; do
    # shellcheck disable=SC2086 # verb holds the command and its argument
    "$0" ctl "$dir" $verb >>"$log" 2>&1 || { tail -n 20 "$log" >&2; return 1; }
  done
}

# The nodes start in parallel (each takes several seconds on its own), then
# join one by one; a failure stops every node already started.
cmd_cluster() {
  local dir=$1 n=$2 i urls='' failed=0
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "cluster: N must be a positive number"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  BROKER_COOKIE=$(/usr/bin/python3 -c 'import secrets; print(secrets.token_hex(20).upper())')
  export BROKER_COOKIE
  local pids=()
  for ((i = 1; i <= n; i++)); do
    "$0" start "$dir/node$i" >/dev/null &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || failed=1; done
  for ((i = 2; i <= n && !failed; i++)); do
    join_node "$dir/node$i" "$dir/node1" || failed=1
  done
  if ((failed)); then
    for ((i = 1; i <= n; i++)); do "$0" stop "$dir/node$i" >/dev/null 2>&1 || true; done
    die "cluster: a node failed to start or join (logs in $dir/node*/log)"
  fi
  for ((i = 1; i <= n; i++)); do
    urls+="${urls:+,}$(load_env "$dir/node$i" && echo "$AMQP_URL")"
  done
  printf 'AMQP_URLS=%s\nCLUSTER_NODES=%s\n' "$urls" "$n" >"$dir/env"
  echo "cluster of $n nodes started: $urls"
}

[[ $# -ge 2 ]] || usage
cmd=$1
dir=$2
shift 2
case $cmd in
  start) cmd_start "$dir" ;;
  run) cmd_run "$dir" ;;
  stop) cmd_stop "$dir" ;;
  kill) cmd_kill "$dir" ;;
  restart) cmd_restart "$dir" ;;
  ctl) cmd_ctl "$dir" "$@" ;;
  status) cmd_status "$dir" ;;
  cluster) [[ $# -eq 1 ]] || usage; cmd_cluster "$dir" "$1" ;;
  join) [[ $# -eq 1 ]] || usage; join_node "$dir" "$1" ;;
  *) usage ;;
esac
