# Shell functions shared by launch/slurm_one_node.sh and launch/slurm_cluster.sh (sourced, not
# run): the Debian packages, one munged of our own, and stopping a daemon by its pid file.
# The caller sets STATE (its state folder) and defines say().

SOCK="$STATE/munge/munge.socket.2"

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

# munged (run as root here) wants its key owned by root in a directory only root can write: a
# key of our own, so the package's /etc/munge (owned by user munge) stays as it is. Every Slurm
# daemon and client reaches it through $SOCK (AuthInfo=socket=...), network namespaces too.
start_munged() {
    mkdir -p "$STATE/munge"
    chmod 711 "$STATE/munge"  # socket dir searchable by all, writable by root only
    if [ ! -s "$STATE/munge/munge.key" ]; then
        say "creating $STATE/munge/munge.key"
        dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 400 "$STATE/munge/munge.key"
    alive "$STATE/munged.pid" && return 0
    munged --socket="$SOCK" --pid-file="$STATE/munged.pid" --log-file="$STATE/munged.log" \
        --seed-file="$STATE/munge/munged.seed" --key-file="$STATE/munge/munge.key"
}

# Common slurm.conf lines: root daemons, no cgroups or accounting, and a requeued job that may
# start again after ~6 s (cred_expire=5, Slurm's minimum, and 1 s scheduler intervals) instead
# of Slurm's 2-3 minutes.
common_conf() {
    cat <<EOF
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
EOF
}

# Stops the daemon whose pid file is $1 (SIGTERM, SIGKILL after 30 s) and removes the file.
stop_pidfile() {
    local file="$1" pid i
    alive "$file" || { rm -f "$file"; return 0; }
    pid="$(cat "$file")"
    kill -TERM "$pid"
    for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && { say "$file ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid"; }
    rm -f "$file"
    say "stopped $(basename "$file" .pid) ($pid)"
}

# Cancels every job, so no slurmstepd stays behind when the daemons stop.
cancel_all_jobs() {
    alive "$STATE/slurmctld.pid" || return 0
    local jobs; jobs="$(SLURM_CONF="$CONF" squeue -h -o %A 2>/dev/null || true)"
    # shellcheck disable=SC2086
    [ -z "$jobs" ] || { SLURM_CONF="$CONF" scancel $jobs || true; sleep 2; }
}
