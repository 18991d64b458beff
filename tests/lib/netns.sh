#!/usr/bin/env bash
# netns.sh - network namespaces that play separate hosts on one machine, for
# tests that cut a host off the network (tests/integration/test_faults_hosts.py).
#
# Owns: for a TAG, a Linux bridge TAG-br in the root namespace holding
# SUBNET.254/24, and per host I (1..N) a namespace TAG-hI whose eth0 holds
# SUBNET.I/24, joined to the bridge by a veth pair whose root end is named
# TAG-hI. The root namespace reaches every host through the bridge (and so
# does every host reach every other one). Needs root (CAP_NET_ADMIN).
#
#   netns.sh up TAG SUBNET N   create the bridge and N hosts (after a `down`
#                              of whatever an earlier run left under TAG)
#   netns.sh down TAG          kill every process still inside the TAG-h*
#                              namespaces (by pid: `ip netns pids`), delete the
#                              namespaces, veths and bridge; idempotent, quiet
#                              when nothing is there, exit 0 unless something
#                              could not be removed
#   netns.sh cut TAG I         take host I off the network: its root-side
#                              veth goes down, so its packets are dropped
#                              (no RST, no ICMP from the host): a partition
#   netns.sh heal TAG I        bring that veth up again
#   netns.sh exec TAG I CMD..  run CMD inside host I (ip netns exec; the
#                              command replaces this script, so its pid is
#                              the command's)
#
# TAG is at most 11 characters (interface names are at most 15: TAG-h99,
# TAG-br); SUBNET is three octets, e.g. 10.231.0. Nothing here touches an
# interface or namespace outside TAG-*, nor /etc.
set -euo pipefail

die() { echo "netns.sh: $*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

check_tag() {
  [[ $1 =~ ^[a-z][a-z0-9]{0,10}$ ]] || die "TAG must be 1-11 lowercase letters or digits: $1"
}

# The namespaces of TAG that exist now (ip netns list prints "NAME (id: N)").
tag_namespaces() {
  ip netns list 2>/dev/null | awk -v p="$1-h" 'index($1, p) == 1 { print $1 }'
}

link_exists() { ip link show dev "$1" >/dev/null 2>&1; }

# Every process inside namespace NS gets SIGTERM, then SIGKILL after a
# grace period (daemons and RabbitMQ stop cleanly on SIGTERM; epmd, which
# each Erlang node starts in its namespace, too).
kill_inside() {
  local ns=$1 pids p deadline
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  [[ -n $pids ]] || return 0
  for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
  deadline=$((SECONDS + 10))
  while :; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [[ -n $pids ]] || return 0
    ((SECONDS < deadline)) || break
    sleep 0.1
  done
  for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
  deadline=$((SECONDS + 10))
  while [[ -n $(ip netns pids "$ns" 2>/dev/null || true) ]]; do
    ((SECONDS < deadline)) || { echo "netns.sh: processes survive in $ns: $pids" >&2; return 1; }
    sleep 0.1
  done
}

cmd_down() {
  local tag=$1 ns link rc=0
  check_tag "$tag"
  for ns in $(tag_namespaces "$tag"); do
    kill_inside "$ns" || rc=1
    ip netns delete "$ns" 2>/dev/null || { echo "netns.sh: cannot delete namespace $ns" >&2; rc=1; }
  done
  # A veth whose namespace end is gone disappears with it; a root end left
  # from a half-finished `up` is removed here.
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
    [[ $link == "$tag"-h* || $link == "$tag-br" ]] || continue
    ip link delete "$link" 2>/dev/null || true
  done
  if link_exists "$tag-br"; then
    echo "netns.sh: cannot delete bridge $tag-br" >&2
    rc=1
  fi
  return "$rc"
}

cmd_up() {
  local tag=$1 subnet=$2 n=$3 i ns
  check_tag "$tag"
  [[ $subnet =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "SUBNET must be three octets: $subnet"
  [[ $n =~ ^[1-9][0-9]?$ ]] || die "N must be 1-99: $n"
  command -v ip >/dev/null || die "ip (iproute2) is not installed"
  cmd_down "$tag" || die "could not clear what an earlier run left under $tag"
  # The subnet must be ours alone: another interface holding it would take
  # the route and the test's traffic would go elsewhere.
  if ip -o -4 addr show | grep -q " inet $subnet\."; then
    die "an interface outside $tag already holds an address in $subnet.0/24"
  fi
  ip link add "$tag-br" type bridge
  ip addr add "$subnet.254/24" dev "$tag-br"
  ip link set "$tag-br" up
  for ((i = 1; i <= n; i++)); do
    ns="$tag-h$i"
    ip netns add "$ns"
    ip link add "$tag-h$i" type veth peer name eth0 netns "$ns"
    ip link set "$tag-h$i" master "$tag-br"
    ip link set "$tag-h$i" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$subnet.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  # Up = each host's eth0 has its carrier and its bridge port forwards
  # (STP is off on a new bridge, so at once; checked all the same).
  local deadline=$((SECONDS + 15))
  for ((i = 1; i <= n; i++)); do
    until ip -n "$tag-h$i" -o link show dev eth0 | grep -q 'state UP' &&
      [[ $(cat "/sys/class/net/$tag-h$i/brport/state" 2>/dev/null) == 3 ]]; do
      ((SECONDS < deadline)) || die "host $i's link did not come up"
      sleep 0.1
    done
  done
  echo "netns: $n hosts $tag-h1..$n on $subnet.1-$n, root $subnet.254 on $tag-br"
}

cmd_cut() {
  check_tag "$1"
  link_exists "$1-h$2" || die "no host $2 under $1"
  ip link set "$1-h$2" down
}

cmd_heal() {
  check_tag "$1"
  link_exists "$1-h$2" || die "no host $2 under $1"
  ip link set "$1-h$2" up
}

[[ $# -ge 2 ]] || usage
cmd=$1
tag=$2
shift 2
case $cmd in
  up) [[ $# -eq 2 ]] || usage; cmd_up "$tag" "$1" "$2" ;;
  down) [[ $# -eq 0 ]] || usage; cmd_down "$tag" ;;
  cut) [[ $# -eq 1 ]] || usage; cmd_cut "$tag" "$1" ;;
  heal) [[ $# -eq 1 ]] || usage; cmd_heal "$tag" "$1" ;;
  exec)
    [[ $# -ge 2 ]] || usage
    check_tag "$tag"
    host=$1
    shift
    exec ip netns exec "$tag-h$host" "$@"
    ;;
  *) usage ;;
esac
