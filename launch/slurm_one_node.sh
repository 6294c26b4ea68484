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
SOCK="$STATE/munge/munge.socket.2"
say() { echo "slurm_one_node: $*" >&2; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && return 0
    say "installing slurm-wlm and munge with apt-get"
    local policy=/usr/sbin/policy-rc.d made=0
    if [ ! -e "$policy" ]; then  # keep the packages' init scripts from starting daemons
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod 755 "$policy"; made=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge \
        >/dev/null; } || { [ "$made" = 1 ] && rm -f "$policy"; return 1; }
    [ "$made" = 1 ] && rm -f "$policy"
    return 0
}

write_conf() {
    local host cpus mem
    host="$(hostname -s)"
    cpus="$(nproc)"
    mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
    cat >"$CONF" <<EOF
# Written by launch/slurm_one_node.sh: one node, root daemons, no cgroups, no accounting.
ClusterName=suite
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (cred_expire+1 s;
# default 120, minimum 5).
AuthInfo=socket=$SOCK,cred_expire=5
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
KillWait=10
MinJobAge=300
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
    mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/munge"
    chmod 711 "$STATE/munge"  # munged: socket dir searchable by all, writable by root only
    # munged (run as root here) wants its key owned by root in a directory only root can write:
    # a key of our own, so the package's /etc/munge (owned by user munge) stays as it is.
    if [ ! -s "$STATE/munge/munge.key" ]; then
        say "creating $STATE/munge/munge.key"
        dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$STATE/munge/munge.key"
    if ! alive "$STATE/munged.pid"; then
        munged --socket="$SOCK" --pid-file="$STATE/munged.pid" --log-file="$STATE/munged.log" \
            --seed-file="$STATE/munge/munged.seed" --key-file="$STATE/munge/munge.key"
    fi
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
    if alive "$STATE/slurmctld.pid"; then  # end the jobs first so no slurmstepd stays behind
        local jobs; jobs="$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null || true)"
        # shellcheck disable=SC2086
        [ -z "$jobs" ] || { SLURM_CONF="$CONF" scancel $jobs || true; sleep 2; }
    fi
    local d pid i
    for d in slurmd slurmctld munged; do
        alive "$STATE/$d.pid" || { rm -f "$STATE/$d.pid"; continue; }
        pid="$(cat "$STATE/$d.pid")"
        kill -TERM "$pid"
        for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null && { say "$d ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; }
        rm -f "$STATE/$d.pid"
        say "stopped $d ($pid)"
    done
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
