#!/bin/bash
# A real Slurm cluster of N nodes on this one machine (Debian/Ubuntu, run as root): each node a
# network namespace with its own address and hostname, joined by a bridge, so that jobs, node
# deaths, lost links and slow links behave as on a cluster of machines. For tests and for trying
# launch/slurm.sbatch across nodes:
#
#   eval "$(launch/slurm_cluster.sh up 2)"      # bridge, 2 namespaces, munged, slurmctld, slurmds
#   sbatch --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 --gres=none launch/slurm.sbatch ...
#   launch/slurm_cluster.sh status              # daemons, sinfo, squeue, links and caps
#   launch/slurm_cluster.sh kill-node 2         # SIGKILL every process of node 2 (a dead node)
#   launch/slurm_cluster.sh start-node 2        # ... and boot it again (its slurmd)
#   launch/slurm_cluster.sh link 2 down|up      # unplug / plug node 2's cable
#   launch/slurm_cluster.sh cap 2 10mbit|off    # limit node 2's link both ways (tc tbf)
#   launch/slurm_cluster.sh run 2 CMD...        # run a command on node 2 (its network, hostname)
#   launch/slurm_cluster.sh down                # cancels jobs, stops everything, removes it all
#
# Layout (SUITE_CLUSTER_SUBNET=10.214.0, SUITE_CLUSTER_PREFIX=suite): a bridge suite-br with
# 10.214.0.1/24 in this machine's network namespace, where slurmctld runs as host suite-ctl
# (under `unshare --uts`, so that its hostname matches SlurmctldHost; it listens on port
# SUITE_CLUSTER_CTLD_PORT, default 6917, so a one-node cluster's 6817 stays free); node i is the
# namespace suite-n<i> with 10.214.0.(10+i) on eth0, a veth pair into the bridge (suite-n<i>h on
# this side), and its slurmd started by
#   nsenter --net=/var/run/netns/suite-n<i> unshare --uts sh -c "hostname suite-n<i>; slurmd"
# (`ip netns exec` would remount /sys, and slurmd then finds no cgroups: "Hybrid mode is not
# supported"). The hostnames go into /etc/hosts (lines ending "# slurm_cluster.sh STATE_DIR"),
# which every namespace shares, so TensorFlow's Slurm resolver finds each node by name. One
# munged serves all nodes through its socket. A node stops answering Slurm after
# SUITE_CLUSTER_SLURMD_TIMEOUT (default 300, as in Slurm) s without a response: then its jobs are
# requeued.
# Only private addresses on this bridge are used; nothing leaves the machine.
#
# STATE_DIR (the last argument, default /tmp/suite-slurm-cluster) holds slurm.conf, cluster.env,
# logs, state, pid files and munge's socket. `up` cleans up after itself if any step fails, and
# `down` removes every process, namespace, link, qdisc and hosts line it made (also after a
# failed or interrupted `up`). Messages go to stderr; stdout carries only `export SLURM_CONF=`.
set -euo pipefail

say() { echo "slurm_cluster: $*" >&2; }
usage() {
    echo "usage: $0 up N [STATE_DIR] | down [STATE_DIR] | status [STATE_DIR]" >&2
    echo "       $0 kill-node|start-node I [STATE_DIR] | link I up|down [STATE_DIR]" >&2
    echo "       $0 cap I RATE|off [STATE_DIR] | run I CMD..." >&2
    exit 2
}

cmd="${1:-}"
[ -n "$cmd" ] || usage
shift
case "$cmd" in
    up) N="${1:-}"; STATE="${2:-/tmp/suite-slurm-cluster}" ;;
    down|status) STATE="${1:-/tmp/suite-slurm-cluster}" ;;
    kill-node|start-node) NODE="${1:-}"; STATE="${2:-/tmp/suite-slurm-cluster}" ;;
    link|cap) NODE="${1:-}"; ARG="${2:-}"; STATE="${3:-/tmp/suite-slurm-cluster}" ;;
    run) NODE="${1:-}"; shift || true; STATE="${SUITE_CLUSTER_STATE:-/tmp/suite-slurm-cluster}" ;;
    *) usage ;;
esac
STATE="$(realpath -m "$STATE")"
CONF="$STATE/slurm.conf"
ENV_FILE="$STATE/cluster.env"
# shellcheck source=launch/slurm_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/slurm_common.sh"

# The cluster's names: from cluster.env once `up` wrote it, so that `down` removes what `up`
# made whatever the environment says now.
if [ -s "$ENV_FILE" ]; then
    # shellcheck disable=SC1090
    . "$ENV_FILE"
else
    SUBNET="${SUITE_CLUSTER_SUBNET:-10.214.0}"
    PREFIX="${SUITE_CLUSTER_PREFIX:-suite}"
    CTLD_PORT="${SUITE_CLUSTER_CTLD_PORT:-6917}"
    SLURMD_TIMEOUT="${SUITE_CLUSTER_SLURMD_TIMEOUT:-300}"
    NODES=0
fi
BRIDGE="$PREFIX-br"
CTL="$PREFIX-ctl"
MARK="# slurm_cluster.sh $STATE"
node_name() { echo "$PREFIX-n$1"; }  # hostname, Slurm NodeName and namespace
node_addr() { echo "$SUBNET.$((10 + $1))"; }
host_veth() { echo "$PREFIX-n$1h"; }

check_node() {
    [[ "${NODE:-}" =~ ^[1-9][0-9]*$ ]] && [ "$NODE" -le "$NODES" ] || {
        say "no node '${NODE:-}': this cluster ($STATE) has nodes 1..$NODES"; exit 2; }
}

# -- up -------------------------------------------------------------------------------------
write_conf() {
    local cpus mem i
    cpus="$(nproc)"
    mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / NODES ))
    {
        echo "# Written by launch/slurm_cluster.sh: $NODES nodes in network namespaces."
        echo "ClusterName=$PREFIX"
        echo "SlurmctldHost=$CTL($SUBNET.1)"
        echo "SlurmctldPort=$CTLD_PORT"
        common_conf
        # A node that stops answering for this long is DOWN, its jobs requeued (NODE_FAIL).
        echo "SlurmdTimeout=$SLURMD_TIMEOUT"
        echo "StateSaveLocation=$STATE/ctld"
        echo "SlurmdSpoolDir=$STATE/spool-%n"
        echo "SlurmctldPidFile=$STATE/slurmctld.pid"
        echo "SlurmdPidFile=$STATE/slurmd-%n.pid"
        echo "SlurmctldLogFile=$STATE/slurmctld.log"
        echo "SlurmdLogFile=$STATE/slurmd-%n.log"
        for i in $(seq "$NODES"); do  # every node sees all CPUs: they share this machine's
            echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") CPUs=$cpus" \
                 "RealMemory=$mem State=UNKNOWN"
        done
        echo "PartitionName=debug Nodes=$PREFIX-n[1-$NODES] Default=YES MaxTime=INFINITE State=UP"
    } >"$CONF"
}

add_hosts() {
    local lines i
    lines="$SUBNET.1 $CTL $MARK"
    for i in $(seq "$NODES"); do lines+=$'\n'"$(node_addr "$i") $(node_name "$i") $MARK"; done
    remove_hosts
    printf '%s\n' "$lines" >>/etc/hosts
}

remove_hosts() {  # rewritten in place: /etc/hosts may be a bind mount that cannot be renamed
    grep -qF "$MARK" /etc/hosts 2>/dev/null || return 0
    local kept; kept="$(grep -vF "$MARK" /etc/hosts || true)"
    printf '%s\n' "$kept" >/etc/hosts
}

make_node() {
    local i="$1" ns veth
    ns="$(node_name "$i")"; veth="$(host_veth "$i")"
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}

start_slurmd() {
    local ns; ns="$(node_name "$1")"
    alive "$STATE/slurmd-$ns.pid" && return 0
    nsenter --net="/var/run/netns/$ns" unshare --uts \
        sh -c 'hostname "$1" && exec slurmd -f "$2" -N "$1"' sh "$ns" "$CONF"
}

wait_ready() {  # every node up and answering (a trailing '*' in sinfo means not responding)
    local i states bad=""
    for i in $(seq 90); do
        states="$(SLURM_CONF="$CONF" sinfo -h -N -o '%N %T' 2>/dev/null || true)"
        bad="$(awk '$2 !~ /^(idle|mixed|allocated)$/' <<<"$states")"
        [ -n "$states" ] && [ -z "$bad" ] && return 0
        sleep 1
    done
    say "nodes not ready after 90 s: ${bad:-slurmctld does not answer}; see $STATE/*.log"
    return 1
}

up() {
    [[ "$N" =~ ^[1-9][0-9]*$ ]] && [ "$N" -le 200 ] || { say "up needs a node count 1..200"; exit 2; }
    if [ -s "$ENV_FILE" ]; then
        if alive "$STATE/slurmctld.pid"; then
            say "already up ($STATE, $NODES nodes)"; echo "export SLURM_CONF=$CONF"; exit 0
        fi
        say "$STATE holds a cluster that is not running: run '$0 down $STATE' first"; exit 1
    fi
    [ "$(id -u)" = 0 ] || { say "must run as root (namespaces, links, /etc/hosts)"; exit 1; }
    [ "${#PREFIX}" -le 9 ] && [[ "$PREFIX" =~ ^[a-z][a-z0-9]*$ ]] || {
        say "SUITE_CLUSTER_PREFIX='$PREFIX': lowercase letters and digits, at most 9"; exit 2; }
    [[ "$SUBNET" =~ ^10\.[0-9]+\.[0-9]+$ ]] || {
        say "SUITE_CLUSTER_SUBNET='$SUBNET': give the first three numbers of a private 10.x.y.0/24"
        exit 2; }
    ip link show "$BRIDGE" >/dev/null 2>&1 && {
        say "a link named $BRIDGE exists already (another cluster?): set SUITE_CLUSTER_PREFIX"
        exit 1; }
    install_packages
    for tool in ip nsenter unshare tc; do
        command -v "$tool" >/dev/null || { say "$tool is missing (iproute2, util-linux)"; exit 1; }
    done
    NODES="$N"
    mkdir -p "$STATE/ctld"
    # Written first: whatever fails below, `down` (run by the trap) knows what to remove.
    printf 'SUBNET=%s\nPREFIX=%s\nCTLD_PORT=%s\nSLURMD_TIMEOUT=%s\nNODES=%s\n' \
        "$SUBNET" "$PREFIX" "$CTLD_PORT" "$SLURMD_TIMEOUT" "$NODES" >"$ENV_FILE"
    trap 'rc=$?; if [ "$rc" != 0 ]; then say "up failed: removing what it made"; down; fi' EXIT
    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    add_hosts
    local i
    for i in $(seq "$NODES"); do make_node "$i"; mkdir -p "$STATE/spool-$(node_name "$i")"; done
    start_munged
    write_conf
    unshare --uts sh -c 'hostname "$1" && exec slurmctld -c -f "$2"' sh "$CTL" "$CONF"
    for i in $(seq "$NODES"); do start_slurmd "$i"; done
    wait_ready
    trap - EXIT
    say "$NODES nodes up after ${SECONDS}s: $PREFIX-n[1-$NODES] on $SUBNET.0/24 ($STATE)"
    echo "export SLURM_CONF=$CONF"
}

# -- down -----------------------------------------------------------------------------------
kill_namespace() {  # SIGKILL every process whose network namespace is node $1's
    local ns pids i
    ns="$(node_name "$1")"
    [ -e "/var/run/netns/$ns" ] || return 0
    for i in $(seq 20); do
        pids="$(ip netns pids "$ns" 2>/dev/null || true)"
        [ -z "$pids" ] && return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.5
    done
    say "processes of $ns still alive after SIGKILL: $(ip netns pids "$ns" | tr '\n' ' ')"
}

down() {
    local i ns
    trap - EXIT
    cancel_all_jobs
    for i in $(seq "$NODES"); do
        ns="$(node_name "$i")"
        stop_pidfile "$STATE/slurmd-$ns.pid" || true
        kill_namespace "$i"
    done
    stop_pidfile "$STATE/slurmctld.pid" || true
    stop_pidfile "$STATE/munged.pid" || true
    for i in $(seq "$NODES"); do
        ns="$(node_name "$i")"
        ip link del "$(host_veth "$i")" 2>/dev/null || true
        [ -e "/var/run/netns/$ns" ] && { ip netns del "$ns" || say "could not delete netns $ns"; }
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    remove_hosts
    rm -f "$ENV_FILE"
    say "down: no process, namespace, link or hosts line of $STATE is left"
}

# -- faults and status ----------------------------------------------------------------------
status() {
    [ -s "$ENV_FILE" ] || { echo "no cluster in $STATE"; return 0; }
    local i ns
    for d in munged slurmctld; do
        if alive "$STATE/$d.pid"; then echo "$d: running (pid $(cat "$STATE/$d.pid"))"
        else echo "$d: stopped"; fi
    done
    for i in $(seq "$NODES"); do
        ns="$(node_name "$i")"
        echo "$ns $(node_addr "$i"): slurmd $(alive "$STATE/slurmd-$ns.pid" && echo running \
            || echo stopped), link $(ip -br link show "$(host_veth "$i")" 2>/dev/null \
            | awk '{print $2}'), $(ip netns pids "$ns" 2>/dev/null | wc -l) processes," \
            "qdisc: $(tc qdisc show dev "$(host_veth "$i")" 2>/dev/null | head -1)"
    done
    alive "$STATE/slurmctld.pid" && SLURM_CONF="$CONF" sinfo -N && SLURM_CONF="$CONF" squeue
    return 0
}

link() {  # both ends, so neither side sees a carrier (the peer's end follows)
    check_node
    case "$ARG" in up|down) ;; *) say "link $NODE up|down"; exit 2 ;; esac
    ip link set "$(host_veth "$NODE")" "$ARG"
    ip -n "$(node_name "$NODE")" link set eth0 "$ARG"
    say "node $NODE's link is $ARG"
}

cap() {  # tbf on both ends: the node's sending (in its namespace) and receiving (bridge side)
    check_node
    local ns veth
    ns="$(node_name "$NODE")"; veth="$(host_veth "$NODE")"
    if [ "$ARG" = off ]; then
        tc qdisc del dev "$veth" root 2>/dev/null || true
        tc -n "$ns" qdisc del dev eth0 root 2>/dev/null || true
        say "node $NODE's link is not limited"; return 0
    fi
    [[ "$ARG" =~ ^[0-9]+(kbit|mbit|gbit)$ ]] || { say "cap $NODE RATE: e.g. 10mbit, 1gbit"; exit 2; }
    # burst: at least one 64 KB GSO packet and ~2 ms at the rate; queue: ~200 ms at the rate
    local bps burst limit
    bps="$(awk -v r="$ARG" 'BEGIN { n = r + 0; u = substr(r, length(n) + 1);
        print n * (u == "kbit" ? 1e3 : u == "mbit" ? 1e6 : 1e9) / 8 }')"
    burst="$(awk -v b="$bps" 'BEGIN { x = b / 500; printf "%d", (x < 131072 ? 131072 : x) }')"
    limit="$(awk -v b="$bps" 'BEGIN { x = b / 5; printf "%d", (x < 262144 ? 262144 : x) }')"
    tc qdisc replace dev "$veth" root tbf rate "$ARG" burst "$burst" limit "$limit"
    tc -n "$ns" qdisc replace dev eth0 root tbf rate "$ARG" burst "$burst" limit "$limit"
    say "node $NODE's link is limited to $ARG each way"
}

case "$cmd" in
    up) up ;;
    down) down ;;
    status) status ;;
    kill-node) check_node; kill_namespace "$NODE"; rm -f "$STATE/slurmd-$(node_name "$NODE").pid"
               say "node $NODE: every process killed (SIGKILL)" ;;
    start-node) check_node; start_slurmd "$NODE"; say "node $NODE: slurmd started" ;;
    link) link ;;
    cap) cap ;;
    run) check_node; [ "$#" -gt 0 ] || usage
         exec nsenter --net="/var/run/netns/$(node_name "$NODE")" unshare --uts \
             sh -c 'hostname "$1"; shift; exec "$@"' sh "$(node_name "$NODE")" "$@" ;;
esac
