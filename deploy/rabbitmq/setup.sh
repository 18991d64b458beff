#!/usr/bin/env bash
# setup.sh - RabbitMQ vhost, users and least-privilege permissions for wsgw.
#
# Owns: what each party may do on the broker. Run it on a RabbitMQ node
# (or anywhere rabbitmqctl reaches the cluster) as an administrator; it is
# idempotent: a second run keeps the passwords and resets the permissions
# (other users, vhosts and permissions are left alone).
#
#   deploy/rabbitmq/setup.sh [--vhost NAME] [--prefix P] [--secrets DIR]
#                            [--host HOST:PORT]
#
#   --vhost NAME     vhost to create (default: wsgw)
#   --prefix P       user names are P + gateway, worker, emitter (default: wsgw-)
#   --secrets DIR    where passwords and URLs are kept (default: ./wsgw-secrets):
#                    ROLE.password (reused when present) and ROLE-amqp.url, the
#                    amqp.url for that party; all mode 0600. Copy the URLs to
#                    /etc/wsgw/ (gateway-amqp.url, worker-amqp.url) for the units.
#   --host HOST:PORT the broker address written into the URLs (default:
#                    127.0.0.1:5672)
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
#   gateway  declares the websocket.* queues and the groups exchange (every
#            party declares the topology it uses), declares, consumes and
#            binds its own server-named queue (amq.gen-*), publishes
#            websocket.connect/receive/disconnect through the default
#            exchange. It may NOT consume websocket.*: reading those is the
#            workers' job.
#   worker   declares and consumes the websocket.* queues, publishes replies
#            to the gateways' queues through the default exchange; declares
#            websocket.dead and moves poison messages there (nobody consumes
#            it: operators inspect it as administrators).
#   emitter  publishes to the groups exchange only (events, and kicks: the
#            gateways' control keys wsgw!user.N and wsgw!gw.QUEUE live on
#            the same exchange, docs/PROTOCOL.md): write on it, configure
#            nothing (so it cannot delete or redeclare it, which would drop
#            every gateway's bindings), read nothing. `chanctl emit` checks
#            the exchange with a passive declare, which needs no permission.
# The script declares websocket.groups itself (durable direct, as the
# daemons declare it), so an emitter works before any gateway has started.
# RabbitMQ checks a publish through the default exchange as "write" on the
# exchange amq.default, whatever the queue: a party that replies or relays
# that way can address any queue of the vhost. That is why wsgw gets a vhost
# of its own. queue.bind checks write on the queue and read on the exchange.
set -euo pipefail

VHOST=wsgw
PREFIX=wsgw-
SECRETS=./wsgw-secrets
HOST=127.0.0.1:5672

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
    --emitter-no-declare) shift ;;
    -h|--help) usage ;;
    *) echo "setup.sh: unknown argument: $1" >&2; usage ;;
  esac
done

read -r -a CTL <<<"${RABBITMQCTL:-rabbitmqctl}"
ctl() { "${CTL[@]}" "$@"; }

# RabbitMQ regexes for the three parties.
Q='websocket\.(connect|receive|disconnect)'
X='websocket\.groups'
OWN='amq\.gen-.*'
DEAD='websocket\.dead'
declare -A CONFIGURE=(
  [gateway]="^($Q|$X|$OWN)\$"
  [worker]="^($Q|$DEAD|$X)\$"
  [emitter]='^$'
)
declare -A WRITE=(
  [gateway]="^(amq\.default|$OWN)\$"
  [worker]="^amq\.default\$"
  [emitter]="^$X\$"
)
declare -A READ=(
  [gateway]="^($X|$OWN)\$"
  [worker]="^$Q\$"
  [emitter]='^$'
)

mkdir -p "$SECRETS"
chmod 700 "$SECRETS"

if ctl list_vhosts --no-table-headers name | grep -qxF -- "$VHOST"; then
  echo "vhost $VHOST: exists"
else
  echo "vhost $VHOST: created"
fi

# One password per role, generated once and kept: a second run changes
# nothing a running daemon depends on.
for role in gateway worker emitter; do
  pwfile=$SECRETS/$role.password
  if [[ ! -s $pwfile ]]; then
    (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$pwfile")
  fi
done

# Everything goes in as one RabbitMQ definitions document (import_definitions
# upserts: vhost, users, permissions), read from standard input, so one
# rabbitmqctl call does it all and no password is on a command line. Users
# carry a salted SHA-256 hash (RabbitMQ's rabbit_password_hashing_sha256),
# not the password. The URLs each party uses are written next to the
# passwords.
/usr/bin/python3 - "$SECRETS" "$VHOST" "$PREFIX" "$HOST" \
  "${CONFIGURE[gateway]}" "${WRITE[gateway]}" "${READ[gateway]}" \
  "${CONFIGURE[worker]}" "${WRITE[worker]}" "${READ[worker]}" \
  "${CONFIGURE[emitter]}" "${WRITE[emitter]}" "${READ[emitter]}" <<'PY' >"$SECRETS/.definitions.json"
import base64, hashlib, json, os, sys, urllib.parse
secrets, vhost, prefix, host = sys.argv[1:5]
perms = sys.argv[5:]
doc = {"vhosts": [{"name": vhost}], "users": [], "permissions": [],
       "exchanges": [{"name": "websocket.groups", "vhost": vhost, "type": "direct",
                      "durable": True, "auto_delete": False, "internal": False,
                      "arguments": {}}]}
q = lambda s: urllib.parse.quote(s, safe="")
for i, role in enumerate(("gateway", "worker", "emitter")):
    user = prefix + role
    with open(os.path.join(secrets, role + ".password")) as f:
        pw = f.readline().rstrip("\r\n")
    salt = os.urandom(4)
    digest = hashlib.sha256(salt + pw.encode()).digest()
    doc["users"].append({"name": user, "tags": "",
                         "hashing_algorithm": "rabbit_password_hashing_sha256",
                         "password_hash": base64.b64encode(salt + digest).decode()})
    conf, write, read = perms[3 * i:3 * i + 3]
    doc["permissions"].append({"user": user, "vhost": vhost, "configure": conf,
                               "write": write, "read": read})
    path = os.path.join(secrets, role + "-amqp.url")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"amqp://{q(user)}:{q(pw)}@{host}/{q(vhost)}\n")
json.dump(doc, sys.stdout)
PY
chmod 600 "$SECRETS/.definitions.json"
ctl import_definitions --format json <"$SECRETS/.definitions.json" >/dev/null
rm -f "$SECRETS/.definitions.json"

for role in gateway worker emitter; do
  echo "user $PREFIX$role: configure '${CONFIGURE[$role]}' write '${WRITE[$role]}' read '${READ[$role]}'"
done
echo "done: URLs in $SECRETS/{gateway,worker,emitter}-amqp.url (mode 0600)"
