#!/usr/bin/env bash
# setup.sh - RabbitMQ vhost, users, least-privilege permissions and the
# shared topology (the groups exchange, the control exchange bound from it,
# the history stream) for wsgw.
#
# Owns: what each party may do on the broker, and the objects that must
# exist before the first emit. Run it on a RabbitMQ node (or anywhere
# rabbitmqctl reaches the cluster) as an administrator; it is idempotent: a
# second run keeps the passwords and resets the permissions (other users,
# vhosts and permissions are left alone).
#
#   deploy/rabbitmq/setup.sh [--vhost NAME] [--prefix P] [--secrets DIR]
#                            [--host HOST:PORT] [--migrate] [--no-history]
#                            [--history-stream NAME] [--history-max-age D]
#                            [--history-max-bytes S] [--history-segment-bytes S]
#                            [--history-replicas N]
#
#   --vhost NAME     vhost to create (default: wsgw)
#   --prefix P       user names are P + gateway, worker, emitter (default: wsgw-)
#   --secrets DIR    where passwords and URLs are kept (default: ./wsgw-secrets):
#                    ROLE.password (reused when present) and ROLE-amqp.url, the
#                    amqp.url for that party; all mode 0600. Copy the URLs to
#                    /etc/wsgw/ (gateway-amqp.url, worker-amqp.url) for the units.
#   --host HOST:PORT the broker address written into the URLs (default:
#                    127.0.0.1:5672)
#   --migrate        websocket.groups exists as a direct exchange (every broker
#                    set up before the event history): delete it and declare it
#                    again as topic. Deleting it drops every binding on it, so
#                    stop all gateways and workers first; emitters are refused
#                    (404) for the seconds in between. Steps: docs/OPERATIONS.md,
#                    "Upgrading to history". Without --migrate, such a broker
#                    is refused (exit 1) and nothing is changed.
#   --no-history     history.enabled = false: no stream, and the gateway user
#                    gets no permission on it and no write on the groups
#                    exchange.
#   --history-stream NAME, --history-max-age D (default 24h),
#   --history-max-bytes S (default 1GiB), --history-segment-bytes S
#   (default 64MiB), --history-replicas N (default 0: not set)
#                    the [history] settings of wsgw.ini (stream, max_age,
#                    max_bytes, segment_bytes, replicas), in its units (D: 90,
#                    90s, 15m, 24h; S: 1048576, 512k, 64MiB, 1GiB). The
#                    gateways declare the stream with exactly these arguments:
#                    RabbitMQ refuses (406 PRECONDITION_FAILED) a declare whose
#                    arguments differ from the existing stream's.
#   --emitter-no-declare  accepted and ignored: the emitter may not
#                    declare the groups exchange in any case now.
#
# RABBITMQCTL: the command to run (default: rabbitmqctl), split on spaces,
# e.g. "rabbitmqctl -n rabbit@mq1". Needs python3 (hashing, URL encoding).
# Users, their password hashes and permissions go to rabbitmqctl as one
# definitions document on standard input, never on a command line.
#
# The permissions (configure, write, read regexes; RabbitMQ matches them
# unanchored, so each is anchored here):
#   gateway  declares the websocket.* queues, the groups exchange, the
#            control exchange and the history stream (every party declares
#            the topology it uses), binds the control exchange to the groups
#            exchange (write on the control exchange, read on the groups
#            exchange), declares, consumes and binds its own server-named
#            queue (amq.gen-*: groups on the groups exchange when the
#            history is off, its control keys on the control exchange),
#            binds the stream to the groups exchange (write on the stream,
#            read on the exchange) and consumes it, publishes
#            websocket.connect/receive/disconnect through the default
#            exchange and its markers (wsgw!mark.QUEUE) to the groups
#            exchange. Topic permissions limit its publishes to the marker
#            keys on the groups exchange and to nothing on the control
#            exchange (its write there is for the binding): it cannot emit
#            events or kicks. It may NOT consume websocket.*: reading those
#            is the workers' job.
#   worker   declares and consumes the websocket.* queues, publishes replies
#            to the gateways' queues through the default exchange; declares
#            websocket.dead and moves poison messages there (nobody consumes
#            it: operators inspect it as administrators).
#   emitd    (the HTTP emit daemon) write on the groups exchange only, topic
#            write on any key but the gateways' (wsgw!...): events, no kicks,
#            no markers; configure and read nothing.
#   emitter  publishes events to the groups exchange and kicks to the
#            control exchange (the gateways' control keys wsgw!user.N and
#            wsgw!gw.QUEUE, docs/PROTOCOL.md; a kick to the groups exchange
#            still arrives too): write on both, configure nothing (so it
#            cannot delete or redeclare them, which would drop every
#            gateway's bindings, nor the stream), read nothing (so it cannot
#            read the history). Topic permissions refuse it the marker keys
#            (wsgw!mark.*), which only gateways publish, on the groups
#            exchange, and everything but the kick keys on the control
#            exchange. `chanctl emit` checks the exchange with a passive
#            declare, which needs no permission.
# The script declares websocket.groups and websocket.control itself
# (durable topic, as the gateways declare them), the control exchange's
# bindings from the groups exchange (wsgw!user.* and wsgw!gw.#), the stream
# and its binding (key '#': every message sent to the groups exchange), so
# an emitter works, and its events are kept, before any gateway has started.
# RabbitMQ checks a publish through the default exchange as "write" on the
# exchange amq.default, whatever the queue: a party that replies or relays
# that way can address any queue of the vhost. That is why wsgw gets a vhost
# of its own. queue.bind checks write on the queue and read on the exchange;
# exchange.bind write on the destination and read on the source; both check
# the topic read permission of the source for the binding key.
set -euo pipefail

VHOST=wsgw
PREFIX=wsgw-
SECRETS=./wsgw-secrets
HOST=127.0.0.1:5672
MIGRATE=0
HISTORY=1
STREAM=websocket.history
MAX_AGE=24h
MAX_BYTES=1GiB
SEGMENT_BYTES=64MiB
REPLICAS=0

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

while (($#)); do
  case $1 in
    --vhost) VHOST=${2:?}; shift 2 ;;
    --prefix) PREFIX=${2?}; shift 2 ;;
    --secrets) SECRETS=${2:?}; shift 2 ;;
    --host) HOST=${2:?}; shift 2 ;;
    --migrate) MIGRATE=1; shift ;;
    --no-history) HISTORY=0; shift ;;
    --history-stream) STREAM=${2:?}; shift 2 ;;
    --history-max-age) MAX_AGE=${2:?}; shift 2 ;;
    --history-max-bytes) MAX_BYTES=${2:?}; shift 2 ;;
    --history-segment-bytes) SEGMENT_BYTES=${2:?}; shift 2 ;;
    --history-replicas) REPLICAS=${2:?}; shift 2 ;;
    --emitter-no-declare) shift ;;
    -h|--help) usage ;;
    *) echo "setup.sh: unknown argument: $1" >&2; usage ;;
  esac
done

read -r -a CTL <<<"${RABBITMQCTL:-rabbitmqctl}"
ctl() { "${CTL[@]}" "$@"; }
die() { echo "setup.sh: $*" >&2; exit 1; }

# The stream's arguments, checked and converted here (units as in
# wsgw.ini) before anything on the broker changes.
STREAM_ARGS=$(/usr/bin/python3 - "$STREAM" "$MAX_AGE" "$MAX_BYTES" "$SEGMENT_BYTES" "$REPLICAS" <<'PY'
import json, re, sys
stream, age, size, seg, replicas = sys.argv[1:]
def unit(text, units, what):
    m = re.fullmatch(r"([0-9]+)([A-Za-z]*)", text)
    if not m or m.group(2).lower() not in units:
        sys.exit(f"setup.sh: {what} = {text!r}: expected a number with one of the units "
                 + ", ".join(u or "(none)" for u in units))
    return int(m.group(1)) * units[m.group(2).lower()]
ms = unit(age, {"": 1000, "ms": 1, "s": 1000, "m": 60000, "h": 3600000}, "--history-max-age")
if ms % 1000 or ms == 0:
    sys.exit(f"setup.sh: --history-max-age = {age!r}: a whole number of seconds, at least 1")
size_units = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
              "g": 1 << 30, "gib": 1 << 30}
max_bytes = unit(size, size_units, "--history-max-bytes")
seg_bytes = unit(seg, size_units, "--history-segment-bytes")
if not 0 < seg_bytes <= max_bytes:
    sys.exit("setup.sh: --history-segment-bytes must be above 0 and at most --history-max-bytes")
if not re.fullmatch(r"[0-9]{1,3}", replicas):
    sys.exit(f"setup.sh: --history-replicas = {replicas!r}: a node count (0: not set)")
if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", stream) or stream.startswith("amq."):
    sys.exit(f"setup.sh: --history-stream = {stream!r}: letters, digits, _ . : - only, not amq.*")
args = {"x-queue-type": "stream", "x-max-age": f"{ms // 1000}s",
        "x-max-length-bytes": max_bytes, "x-stream-max-segment-size-bytes": seg_bytes}
if int(replicas):
    args["x-initial-cluster-size"] = int(replicas)
print(json.dumps(args))
PY
) || exit 1

# RabbitMQ regexes for the three parties.
Q='websocket\.(connect|receive|disconnect)'
X='websocket\.groups'
C='websocket\.control'
OWN='amq\.gen-.*'
DEAD='websocket\.dead'
H=${STREAM//./\\.}
if ((HISTORY)); then
  GW_CONFIGURE="^($Q|$X|$C|$H|$OWN)\$"
  GW_WRITE="^(amq\.default|$X|$C|$H|$OWN)\$"
  GW_READ="^($X|$C|$H|$OWN)\$"
  # Topic permissions (regexes on routing keys, per exchange): RabbitMQ
  # checks write on publish, read on queue.bind and exchange.bind (of the
  # source). On websocket.groups the gateway publishes markers only and
  # binds any key (groups with history off, '#' for the stream, the control
  # exchange's two); the emitter publishes anything but a marker and binds
  # nothing.
  GW_TOPIC='^wsgw!mark\.'
else
  GW_CONFIGURE="^($Q|$X|$C|$OWN)\$"
  GW_WRITE="^(amq\.default|$C|$OWN)\$"
  GW_READ="^($X|$C|$OWN)\$"
  GW_TOPIC='^$'
fi
EMITTER_TOPIC='^(?!wsgw!mark\.)'
# On websocket.control: the emitter publishes kicks (the two control key
# prefixes) only; the gateway binds its control keys and publishes nothing
# ('^$': an empty key, which no binding there takes).
KICK_KEYS='^wsgw!(user|gw)\.'
# emitd (the HTTP emit daemon) publishes events to websocket.groups and
# nothing else: no kicks (no control key, on either exchange), no markers.
EMITD_TOPIC='^(?!wsgw!)'
declare -A CONFIGURE=(
  [gateway]=$GW_CONFIGURE
  [worker]="^($Q|$DEAD|$X)\$"
  [emitter]='^$'
  [emitd]='^$'
)
declare -A WRITE=(
  [gateway]=$GW_WRITE
  [worker]="^amq\.default\$"
  [emitter]="^($X|$C)\$"
  [emitd]="^$X\$"
)
declare -A READ=(
  [gateway]=$GW_READ
  [worker]="^$Q\$"
  [emitter]='^$'
  [emitd]='^$'
)
declare -A TOPIC_WRITE=(
  [gateway]=$GW_TOPIC
  [worker]='^$'
  [emitter]=$EMITTER_TOPIC
  [emitd]=$EMITD_TOPIC
)
declare -A TOPIC_READ=(
  [gateway]='.*'
  [worker]='^$'
  [emitter]='^$'
  [emitd]='^$'
)
declare -A CONTROL_WRITE=(
  [gateway]='^$'
  [worker]='^$'
  [emitter]=$KICK_KEYS
  [emitd]='^$'
)
declare -A CONTROL_READ=(
  [gateway]=$KICK_KEYS
  [worker]='^$'
  [emitter]='^$'
  [emitd]='^$'
)

mkdir -p "$SECRETS"
chmod 700 "$SECRETS"

# Listings are read whole before they are searched: `ctl ... | grep -q`
# lets grep exit at the first match, rabbitmqctl then dies writing the rest
# (":terminated"), and under pipefail the vhost would look absent: 1 try in
# 20 on a test node with 31 vhosts, and an older broker then looked new.
VHOSTS=$(ctl list_vhosts --no-table-headers name) || die "rabbitmqctl list_vhosts failed; nothing was changed."
if grep -qxF -- "$VHOST" <<<"$VHOSTS"; then
  echo "vhost $VHOST: exists"
  XTYPE=$(ctl list_exchanges -p "$VHOST" --no-table-headers name type |
          awk -F '\t' '$1 == "websocket.groups" { print $2 }')
else
  echo "vhost $VHOST: created"
  XTYPE=
fi

# An existing stream keeps its arguments (an import would not change them,
# and RabbitMQ cannot): when they differ from these, every gateway's declare
# would be refused, so stop here and say how to change them.
if ((HISTORY)) && [[ -n $XTYPE ]]; then
  ctl list_queues -p "$VHOST" --no-table-headers name arguments |
    /usr/bin/python3 -c '
import json, re, sys
stream, want = sys.argv[1], json.loads(sys.argv[2])
for line in sys.stdin:
    name, _, args = line.rstrip("\n").partition("\t")
    if name != stream:
        continue
    have = {k: (s if n == "" else int(n)) for k, s, n in
            re.findall(r"\{\"([^\"]+)\",(?:\"([^\"]*)\"|(-?[0-9]+))\}", args)}
    if have != want:
        sys.exit(f"setup.sh: the stream {stream} exists with the arguments {json.dumps(have)},"
                 f" not {json.dumps(want)}: the gateways would be refused (406). Keep its"
                 " values, or stop every gateway, delete it (rabbitmqctl delete_queue; the"
                 " history is lost) and run again (docs/OPERATIONS.md, Sizing the history)."
                 " Nothing was changed.")
' "$STREAM" "$STREAM_ARGS" || exit 1
fi

# websocket.groups of a broker set up before the history: a direct exchange.
# A type cannot be changed in place, and an import would keep the old one
# silently, so it is deleted (with every binding on it) and declared again
# by the import below, a second or two later.
if [[ -n $XTYPE && $XTYPE != topic ]]; then
  if ((!MIGRATE)); then
    die "websocket.groups in vhost $VHOST is a $XTYPE exchange (a broker set up before the event history); stop every gateway and worker, then run again with --migrate (docs/OPERATIONS.md, \"Upgrading to history\"). Nothing was changed."
  fi
  # The vhost name as Erlang bytes: no quoting to get wrong.
  vbytes=$(printf '%s' "$VHOST" | od -An -tu1 -v | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
  out=$(ctl eval "rabbit_exchange:delete(rabbit_misc:r(list_to_binary([$vbytes]), exchange, <<\"websocket.groups\">>), false, <<\"setup.sh\">>).")
  case $out in
    ok|*not_found*) echo "exchange websocket.groups: $XTYPE deleted (--migrate)" ;;
    *) die "deleting the $XTYPE exchange websocket.groups failed: $out" ;;
  esac
elif ((MIGRATE)); then
  echo "exchange websocket.groups: ${XTYPE:-absent}, nothing to migrate"
fi

# One password per role, generated once and kept: a second run changes
# nothing a running daemon depends on.
for role in gateway worker emitter emitd; do
  pwfile=$SECRETS/$role.password
  if [[ ! -s $pwfile ]]; then
    (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$pwfile")
  fi
done

# Everything goes in as one RabbitMQ definitions document (import_definitions
# upserts: vhost, exchanges, stream, bindings, users, permissions), read from
# standard input, so one rabbitmqctl call does it all and no password is on
# a command line. An existing stream is kept as it is (its messages too);
# an import does not compare arguments: the gateways' declares do. Users
# carry a salted SHA-256 hash (RabbitMQ's rabbit_password_hashing_sha256),
# not the password. The URLs each party uses are written next to the
# passwords.
/usr/bin/python3 - "$SECRETS" "$VHOST" "$PREFIX" "$HOST" "$HISTORY" "$STREAM" "$STREAM_ARGS" \
  "${CONFIGURE[gateway]}" "${WRITE[gateway]}" "${READ[gateway]}" "${TOPIC_WRITE[gateway]}" "${TOPIC_READ[gateway]}" "${CONTROL_WRITE[gateway]}" "${CONTROL_READ[gateway]}" \
  "${CONFIGURE[worker]}" "${WRITE[worker]}" "${READ[worker]}" "${TOPIC_WRITE[worker]}" "${TOPIC_READ[worker]}" "${CONTROL_WRITE[worker]}" "${CONTROL_READ[worker]}" \
  "${CONFIGURE[emitter]}" "${WRITE[emitter]}" "${READ[emitter]}" "${TOPIC_WRITE[emitter]}" "${TOPIC_READ[emitter]}" "${CONTROL_WRITE[emitter]}" "${CONTROL_READ[emitter]}" \
  "${CONFIGURE[emitd]}" "${WRITE[emitd]}" "${READ[emitd]}" "${TOPIC_WRITE[emitd]}" "${TOPIC_READ[emitd]}" "${CONTROL_WRITE[emitd]}" "${CONTROL_READ[emitd]}" \
  <<'PY' >"$SECRETS/.definitions.json"
import base64, hashlib, json, os, sys, urllib.parse
secrets, vhost, prefix, host, history, stream, stream_args = sys.argv[1:8]
perms = sys.argv[8:]
X, C = "websocket.groups", "websocket.control"
doc = {"vhosts": [{"name": vhost}], "users": [], "permissions": [], "topic_permissions": [],
       "exchanges": [{"name": name, "vhost": vhost, "type": "topic",
                      "durable": True, "auto_delete": False, "internal": False,
                      "arguments": {}} for name in (X, C)],
       # A kick sent to the groups exchange reaches the gateways through these.
       "bindings": [{"source": X, "vhost": vhost, "destination": C,
                     "destination_type": "exchange", "routing_key": key, "arguments": {}}
                    for key in ("wsgw!user.*", "wsgw!gw.#")]}
if history == "1":
    doc["queues"] = [{"name": stream, "vhost": vhost, "durable": True, "auto_delete": False,
                      "arguments": json.loads(stream_args)}]
    doc["bindings"].append({"source": X, "vhost": vhost, "destination": stream,
                            "destination_type": "queue", "routing_key": "#", "arguments": {}})
q = lambda s: urllib.parse.quote(s, safe="")
for i, role in enumerate(("gateway", "worker", "emitter", "emitd")):
    user = prefix + role
    with open(os.path.join(secrets, role + ".password")) as f:
        pw = f.readline().rstrip("\r\n")
    salt = os.urandom(4)
    digest = hashlib.sha256(salt + pw.encode()).digest()
    doc["users"].append({"name": user, "tags": "",
                         "hashing_algorithm": "rabbit_password_hashing_sha256",
                         "password_hash": base64.b64encode(salt + digest).decode()})
    conf, write, read, topic_write, topic_read, ctl_write, ctl_read = perms[7 * i:7 * i + 7]
    doc["permissions"].append({"user": user, "vhost": vhost, "configure": conf,
                               "write": write, "read": read})
    doc["topic_permissions"].append({"user": user, "vhost": vhost, "exchange": X,
                                     "write": topic_write, "read": topic_read})
    doc["topic_permissions"].append({"user": user, "vhost": vhost, "exchange": C,
                                     "write": ctl_write, "read": ctl_read})
    path = os.path.join(secrets, role + "-amqp.url")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"amqp://{q(user)}:{q(pw)}@{host}/{q(vhost)}\n")
json.dump(doc, sys.stdout)
PY
chmod 600 "$SECRETS/.definitions.json"
ctl import_definitions --format json <"$SECRETS/.definitions.json" >/dev/null
rm -f "$SECRETS/.definitions.json"

echo "exchange websocket.groups: topic"
echo "exchange websocket.control: topic, bound to websocket.groups with 'wsgw!user.*' and 'wsgw!gw.#'"
if ((HISTORY)); then
  echo "stream $STREAM: $STREAM_ARGS, bound to websocket.groups with '#'"
fi
for role in gateway worker emitter emitd; do
  echo "user $PREFIX$role: configure '${CONFIGURE[$role]}' write '${WRITE[$role]}' read '${READ[$role]}' topic on websocket.groups: write '${TOPIC_WRITE[$role]}' read '${TOPIC_READ[$role]}' on websocket.control: write '${CONTROL_WRITE[$role]}' read '${CONTROL_READ[$role]}'"
done
echo "done: URLs in $SECRETS/{gateway,worker,emitter,emitd}-amqp.url (mode 0600)"
