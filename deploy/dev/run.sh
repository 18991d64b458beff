#!/usr/bin/env bash
# run.sh - `make run`: the whole stack on this machine for development.
#
# Owns: the dev state folder .run/ (broker data, ports, a dev secret) and the
# start of deploy/Procfile. Steps: install missing packages, build, pick free
# ports, write .run/env, start broker + gatewayd + workerd + the event
# console's server with honcho (if installed) or foreman, wait until the
# gateway answers, then print the console's URL and a ws:// URL with a fresh
# token (it may join what the console subscribes by default: jobs
# status_changed and job_events 42), a way to connect from a shell, and emit
# lines whose events the console shows.
# Ctrl-C stops everything, the broker included. Compression (permessage-deflate)
# is on here, so that the console's browser gets events compressed (off by default).
#
# Settings (environment):
#   WSGW_DEV_PORT=8051   gateway port (default 8051, or a free one if taken)
#   WORKERS=3            run three workerd (foreman -m all=1,worker=3;
#                        honcho -c worker=3). By hand:
#                        foreman start -f deploy/Procfile -d . -e .run/env -m all=1,worker=3
#   WSGW_DEV_USER=1      user id of the printed token
# The printed token's object grants: the console's default groups
# (deploy/demo/index.html) must all be allowed, or its first screen is a
# red "access denied".
DEV_OBJECTS='{"job_events": [42]}'
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$(pwd)
RUN=$ROOT/.run
WORKERS=${WORKERS:-1}
DEV_USER=${WSGW_DEV_USER:-1}

tests/lib/deps.sh
make -j"$(nproc 2>/dev/null || echo 2)" all

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_free() {
  /usr/bin/python3 -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}
# The broker's ports: free now, outside 35672-35682 (used by rabbitmqctl).
pick_port() {
  local p
  while :; do
    p=$(free_port)
    if ((p < 35672 || p > 35682)); then echo "$p"; return; fi
  done
}

mkdir -p "$RUN"
chmod 700 "$RUN"
if [[ ! -s $RUN/secret ]]; then
  (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$RUN/secret")
fi
SECRET=$(cat "$RUN/secret")
# emitd's API key file (lines "NAME KEY"; not readable by others): a key
# made once, kept like the secret.
if [[ ! -s $RUN/emit.keys ]]; then
  (umask 077 && printf 'dev %s\n' "$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')" >"$RUN/emit.keys")
fi
EMIT_KEY=$(awk '{ print $2; exit }' "$RUN/emit.keys")

GW_PORT=${WSGW_DEV_PORT:-8051}
if ! port_free "$GW_PORT"; then
  echo "run.sh: port $GW_PORT is taken; using a free one"
  GW_PORT=$(pick_port)
fi
AMQP_PORT=$(pick_port)
DIST_PORT=$(pick_port)
DEMO_PORT=$(pick_port) # the event console (deploy/demo), Procfile's demo process
METRICS_PORT=$(pick_port)
EMIT_PORT=$(pick_port) # emitd: POST http://127.0.0.1:$EMIT_PORT/emit?group=G, key $EMIT_KEY
AMQP_URL="amqp://guest:guest@127.0.0.1:$AMQP_PORT/"

# Read by the Procfile's processes (foreman/honcho -e). Settings follow
# common/config.h: WSGW_<SECTION>_<KEY>.
(umask 077 && cat >"$RUN/env" <<EOF
BROKER_AMQP_PORT=$AMQP_PORT
BROKER_DIST_PORT=$DIST_PORT
WSGW_AMQP_URL=$AMQP_URL
WSGW_GATEWAY_LISTEN=127.0.0.1:$GW_PORT
WSGW_GATEWAY_METRICS_LISTEN=127.0.0.1:$METRICS_PORT
WSGW_AUTH_SECRET=$SECRET
WSGW_GATEWAY_ECHO=true
WSGW_WORKER_ECHO=true
WSGW_GATEWAY_ECHO_MAX_MESSAGE=16MiB
WSGW_GATEWAY_ECHO_MAX_SEND_QUEUE=64MiB
WSGW_GATEWAY_ECHO_MAX_RATE=100000
WSGW_GATEWAY_ECHO_MAX_PENDING=10000
WSGW_COMPRESSION_ENABLED=true
DEMO_PORT=$DEMO_PORT
WSGW_EMIT_LISTEN=127.0.0.1:$EMIT_PORT
WSGW_EMIT_KEY_FILE=$RUN/emit.keys
EMIT_URL=http://127.0.0.1:$EMIT_PORT
EMIT_KEY=$EMIT_KEY
EOF
)

# 0 when a websocket handshake with the token gets 101: the gateway is up,
# on the broker, and a worker answered.
gateway_accepts() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$GW_PORT" || exit 1
    printf 'GET /websocket/?token=%s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n' "$1" >&3
    timeout 10 head -c 12 <&3 | grep -q '^HTTP/1\.1 101'
  ) 2>/dev/null
}

# 0 when every gateway process answers /readyz with 200 (on the broker,
# queue declared). One accepted handshake proves only the process that took
# it: with gateway.processes > 1 (one per core by default) the kernel spreads
# the next client over all of them, and one still connecting answers 503.
processes_ready() {
  local n i
  n=$(nproc 2>/dev/null || echo 1)
  for ((i = 0; i < n; i++)); do
    (
      exec 3<>"/dev/tcp/127.0.0.1/$((METRICS_PORT + i))" || exit 1
      printf 'GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
      timeout 5 head -c 12 <&3 | grep -q '^HTTP/1\.1 200'
    ) 2>/dev/null || return 1
  done
}

# The emit lines announce() prints, one per way to emit; each event goes to
# a group the console subscribes by default, so it shows up there.
emit_lines() {
  cat <<EOF
   build/chanctl emit jobs-status_changed '{"status": "running"}' --amqp.url=$AMQP_URL
   build/chanctl emit job_events-42 '{"counter": 1, "stdout": "hello from chanctl"}' --amqp.url=$AMQP_URL
   curl -sS -H "Authorization: Bearer $EMIT_KEY" -d '{"counter": 2, "stdout": "hello over HTTP"}' "http://127.0.0.1:$EMIT_PORT/emit?group=job_events-42"
   WSGW_AMQP_URL=$AMQP_URL PYTHONPATH=clients/python /usr/bin/python3 -c "import wsgw; wsgw.emit('job_events-42', {'counter': 3, 'stdout': 'hello from Python'})"
EOF
}

# 0 when emitd answers /readyz with 200 (on the broker): the printed HTTP
# emit line works.
emit_ready() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$EMIT_PORT" || exit 1
    printf 'GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
    timeout 5 head -c 12 <&3 | grep -q '^HTTP/1\.1 200'
  ) 2>/dev/null
}

# Prints the connection details once the stack is up; runs beside the
# runner, which stays in the foreground so that Ctrl-C reaches it.
announce() {
  local runner=$1 deadline=$((SECONDS + 120)) token
  token=$(WSGW_AUTH_SECRET=$SECRET build/chanctl token --user "$DEV_USER" \
    --objects "$DEV_OBJECTS") || {
    echo "run.sh: chanctl token failed" >&2
    return
  }
  until gateway_accepts "$token" && processes_ready && emit_ready; do
    if ! kill -0 "$runner" 2>/dev/null; then return; fi
    if ((SECONDS >= deadline)); then
      echo "run.sh: the gateway did not accept a websocket on 127.0.0.1:$GW_PORT within 120s" >&2
      return
    fi
    sleep 0.5
  done
  local url="ws://127.0.0.1:$GW_PORT/websocket/?token=$token"
  cat <<EOF

================================================================================
 gateway up: ws://127.0.0.1:$GW_PORT/websocket/   broker: $AMQP_URL
 gateway metrics: http://127.0.0.1:$METRICS_PORT/metrics (gateway process i: port + i)
 token for user $DEV_USER (may join job_events 42): $token

 event console: open in a browser, press Connect (it subscribes to jobs
 status_changed and job_events 42), then emit below:
   http://127.0.0.1:$DEMO_PORT/?token=$token

 connect (type the subscribe line, then watch events arrive):
   /usr/bin/python3 -m websockets '$url'
   > {"groups": {"jobs": ["status_changed"], "job_events": [42]}}

 emit, from another shell:
$(emit_lines)

 echo route for conformance clients (Autobahn's fuzzingclient; development only,
 with the limits its category 9 needs: 16 MiB messages, 100,000 messages/s):
   ws://127.0.0.1:$GW_PORT/websocket/echo?token=$token

 broker: tests/lib/broker.sh ctl .run/broker list_bindings     Ctrl-C stops everything
================================================================================

EOF
}

# Detached (double fork): after the exec below the shell becomes foreman,
# and foreman stops the whole stack when any child of its exits, which a
# plain background job would be once it has printed its message.
(announce $$ &)

if command -v honcho >/dev/null; then
  exec honcho start -f deploy/Procfile -d . -e .run/env -c "worker=$WORKERS"
fi
exec foreman start -f deploy/Procfile -d . -e .run/env -t 20 -m "all=1,worker=$WORKERS"
