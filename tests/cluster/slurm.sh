#!/usr/bin/env bash
# A single-node Slurm on this machine, for the cluster test (run as root):
#
#   tests/cluster/slurm.sh start DIR   install Debian's slurmctld, slurmd, munge and slurm-client if
#                                      missing, write DIR/slurm.conf, start munged (as the munge
#                                      user), slurmctld and slurmd, wait until the node is idle
#   tests/cluster/slurm.sh stop DIR    cancel this cluster's jobs, stop exactly the daemons that
#                                      `start` recorded in DIR/pids
#
# Every file the daemons write lives in DIR (a folder the munge user can enter). The one file
# outside it: /etc/slurm/slurm.conf, a link to DIR/slurm.conf made only when no slurm.conf exists
# there, because job steps find their config there (the SLURM executor's job step drops SLURM_CONF
# from the environment) and removed again by `stop`.
# Facts this relies on (Debian 12, Slurm 22.05): the packages' services do not start by themselves
# in a container; without slurmdbd there is no accounting, so `sacct` is off and the executor must
# query `squeue`, which finds a job for MinJobAge seconds after it ends.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
state=$(realpath -m "$2")
etc_conf=/etc/slurm/slurm.conf
ctld_port=${DGM_SLURMCTLD_PORT:-6817}
slurmd_port=${DGM_SLURMD_PORT:-6818}

log() { echo "slurm.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
    local missing=()
    for tool in slurmctld slurmd munged sinfo sbatch squeue srun; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    log "installing slurmctld slurmd munge slurm-client (missing: ${missing[*]})"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install Slurm 22.05+ and munge by hand"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        slurmctld slurmd munge slurm-client >/dev/null
}

make_munge_key() {
    local key=/etc/munge/munge.key
    [[ -s $key ]] && return
    log "creating $key"
    install -d -o munge -g munge -m 0700 /etc/munge
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$key"
    else
        dd if=/dev/urandom bs=1 count=1024 of="$key" status=none
    fi
    chown munge:munge "$key"
    chmod 0400 "$key"
}

write_config() {
    local node host cpus memory
    host=$(hostname -s)
    # slurmd -C: this machine's NodeName line (CPUs, sockets, cores, threads, RealMemory)
    node=$(slurmd -C | head -n 1)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    [[ -n $cpus && -n $memory ]] || die "cannot read this machine's CPUs and memory from 'slurmd -C': $node"
    cat >"$state/slurm.conf" <<EOF
# Single-node Slurm written by tests/cluster/slurm.sh; every path below is in this folder.
ClusterName=dgmtest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$state/munge/munge.socket.2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
# No cgroups in a container: track processes by their parent, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
# No slurmdbd: no accounting (sacct is off; the executor queries squeue instead).
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# Start a submitted job at once: schedule on submit and on every job end, look at the whole queue,
# and let the backfill pass run often (defaults: 60 s interval, 30 s between main passes).
SchedulerParameters=sched_min_interval=0,default_queue_depth=1000,bf_interval=5,sched_interval=5
# Finished jobs stay in squeue for an hour: the executor's status query needs them there, and the
# test reads every job's start and end (scontrol) after the run.
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
$(sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/; s/RealMemory=[0-9]*/RealMemory=$memory/" <<<"$node") State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for ((i = 0; i < seconds * 2; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    die "$what did not happen within ${seconds}s; logs in $state/log and $state/munge"
}

node_idle() { [[ $(sinfo -h -o %T 2>/dev/null) == idle ]]; }

start() {
    [[ $(id -u) -eq 0 ]] || die "run as root (slurmd and slurmctld run as root)"
    [[ -e $state/pids ]] && die "$state/pids exists: a Slurm from this folder is running (stop it first)"
    install_packages
    make_munge_key
    if [[ -e $etc_conf && ! ($(readlink "$etc_conf") == "$state/slurm.conf") ]]; then
        die "$etc_conf exists: this machine has its own Slurm; this script only makes a test cluster"
    fi
    mkdir -p "$state"/{ctld,spool,log}
    install -d -o munge -g munge -m 0755 "$state/munge"
    chmod 0755 "$state"
    setpriv --reuid=munge --regid=munge --init-groups test -x "$state/munge" \
        || die "the munge user cannot enter $state: put the state folder under a world-searchable path"
    write_config
    ln -s "$state/slurm.conf" "$etc_conf"
    export SLURM_CONF=$state/slurm.conf

    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
        --socket="$state/munge/munge.socket.2" --key-file=/etc/munge/munge.key \
        --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" \
        --seed-file="$state/munge/munged.seed" </dev/null >>"$state/log/munged.out" 2>&1 &
    echo "munged $!" >"$state/pids"
    wait_for 30 "munged answering" bash -c \
        "munge -n -S '$state/munge/munge.socket.2' | unmunge -S '$state/munge/munge.socket.2'"

    slurmctld -D -c -f "$state/slurm.conf" </dev/null >>"$state/log/slurmctld.out" 2>&1 &
    echo "slurmctld $!" >>"$state/pids"
    wait_for 60 "slurmctld answering" scontrol ping
    slurmd -D -f "$state/slurm.conf" </dev/null >>"$state/log/slurmd.out" 2>&1 &
    echo "slurmd $!" >>"$state/pids"
    wait_for 90 "node idle in sinfo" node_idle
    log "up: $(sinfo -h -o '%P %D %T %c CPUs %m MB') (SLURM_CONF=$state/slurm.conf)"
}

stop() {
    [[ -f $state/pids ]] || { log "nothing to stop: no $state/pids"; return 0; }
    export SLURM_CONF=$state/slurm.conf
    # this cluster's jobs first, so that no job step outlives its slurmd
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        # shellcheck disable=SC2086
        scancel $jobs 2>/dev/null || true
        sleep 2
    fi
    local name pid
    for name in slurmd slurmctld munged; do
        pid=$(awk -v n="$name" '$1 == n {print $2}' "$state/pids")
        [[ -n $pid ]] || continue
        kill -TERM "$pid" 2>/dev/null || continue
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name ($pid) did not stop on TERM: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    if [[ -L $etc_conf && $(readlink "$etc_conf") == "$state/slurm.conf" ]]; then
        rm -f "$etc_conf"
    fi
    rm -f "$state/pids"
    log "stopped"
}

case $action in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
