#!/bin/bash
# A real one-node Slurm cluster on this machine (Debian/Ubuntu, run as root), for tests and for
# trying launch/slurm.sbatch without a cluster:
#
#   launch/slurm_one_node.sh start [STATE_DIR]   # installs slurm-wlm + munge if missing, starts
#                                                # munged, slurmctld, slurmd; prints the export
#   eval "$(launch/slurm_one_node.sh start)"     # ... or take SLURM_CONF straight away
#   sbatch --wrap 'hostname'; squeue; sinfo
#   launch/slurm_one_node.sh status [STATE_DIR]
#   launch/slurm_one_node.sh stop [STATE_DIR]    # cancels jobs, stops the three daemons
#
# STATE_DIR (default /tmp/suite-slurm) holds slurm.conf, logs, state, pid files and munge's
# socket. The node is `hostname -s` with all its CPUs; jobs share it per CPU (cons_tres CR_CPU).
# A requeued job starts again after ~6 s (AuthInfo cred_expire=5, Slurm's minimum, and 1 s
# scheduler intervals) instead of 2-3 min with Slurm's defaults. Messages go to stderr; stdout
# carries only the `export SLURM_CONF=` line.
set -euo pipefail

cmd="${1:-}"
STATE="${2:-/tmp/suite-slurm}"
CONF="$STATE/slurm.conf"
say() { echo "slurm_one_node: $*" >&2; }
# shellcheck source=launch/slurm_common.sh
. "$(dirname "${BASH_SOURCE[0]}")/slurm_common.sh"

write_conf() {
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    cat >"$CONF" <<EOF
# Written by launch/slurm_one_node.sh: one node, root daemons, no cgroups, no accounting.
ClusterName=suite
SlurmctldHost=$host
$(common_conf)
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid"; then
        say "already running ($STATE)"; echo "export SLURM_CONF=$CONF"; return 0
    fi
    install_packages
    mkdir -p "$STATE/ctld" "$STATE/spool"
    start_munged
    write_conf
    export SLURM_CONF="$CONF"
    alive "$STATE/slurmctld.pid" || slurmctld -f "$CONF"
    alive "$STATE/slurmd.pid" || slurmd -f "$CONF"
    local host state="" i
    host="$(hostname -s)"
    for i in $(seq 60); do  # ready: up and responding (a trailing '*' means not responding)
        state="$(sinfo -h -N -n "$host" -o %T 2>/dev/null || true)"
        case "$state" in idle|mixed|allocated) break ;; esac
        sleep 1
    done
    case "$state" in idle|mixed|allocated) ;; *)
        say "node $host is '${state:-unreachable}' after 60 s; see $STATE/*.log"; return 1 ;;
    esac
    say "node $host $state ($(nproc) CPUs) after ${SECONDS}s"
    echo "export SLURM_CONF=$CONF"
}

stop() {
    cancel_all_jobs
    local d
    for d in slurmd slurmctld munged; do stop_pidfile "$STATE/$d.pid"; done
}

status() {
    local d
    for d in munged slurmctld slurmd; do
        if alive "$STATE/$d.pid"; then echo "$d: running (pid $(cat "$STATE/$d.pid"))"
        else echo "$d: stopped"; fi
    done
    alive "$STATE/slurmctld.pid" && SLURM_CONF="$CONF" sinfo -N -l && SLURM_CONF="$CONF" squeue
    return 0
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status [STATE_DIR]" >&2; exit 2 ;;
esac
