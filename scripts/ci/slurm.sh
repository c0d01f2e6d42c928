#!/usr/bin/env bash
# A single-node Slurm on this machine for the `medref ablate --executor slurm` tests: Debian's
# slurm-wlm and munge, one node (this host, 2 CPUs, no GPU) in one partition `debug`, munged,
# slurmctld and slurmd started as daemons (no systemd needed). Idempotent: a cluster that already
# answers is left as it is. Where the packages cannot be installed it says why and exits 0 (the
# Slurm tests then skip with a reason). Needs root.
set -uo pipefail

say() { echo "slurm.sh: $*"; }

if [ "$(id -u)" != 0 ]; then
    say "not root: no local Slurm set up (the Slurm tests will skip)"
    exit 0
fi

node_idle() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } >/tmp/slurm-apt.log 2>&1; then
        say "apt could not install slurm-wlm and munge (see /tmp/slurm-apt.log): no local Slurm (the Slurm tests will skip)"
        tail -n 3 /tmp/slurm-apt.log | sed 's/^/slurm.sh:   /'
        exit 0
    fi
fi

HOST=$(hostname -s)
CONF_DIR=/etc/slurm
mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /var/lib/munge /var/log/munge
chown -R slurm:slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm 2>/dev/null || true
chown -R munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge 2>/dev/null || true

# munge key: made once
if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi

REAL_MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
NEW_CONF=$(mktemp)
cat >"$NEW_CONF" <<EOF
# written by medref's scripts/ci/slurm.sh: one node, this host
ClusterName=medref-ci
SlurmctldHost=$HOST
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((REAL_MEM / 2))
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge=600
KillWait=10
InactiveLimit=0
SlurmdTimeout=300
NodeName=$HOST CPUs=2 RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
CHANGED=0
if ! cmp -s "$NEW_CONF" "$CONF_DIR/slurm.conf"; then
    install -m 644 "$NEW_CONF" "$CONF_DIR/slurm.conf"
    CHANGED=1
fi
rm -f "$NEW_CONF"
if [ "$CHANGED" = 0 ] && node_idle; then
    say "Slurm already up: $(sinfo -h -N -o '%N %T %c CPUs')"
    exit 0
fi
if [ "$CHANGED" = 1 ] && pgrep -x slurmctld >/dev/null; then
    scontrol reconfigure >/dev/null 2>&1 || true
fi

if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --force || { say "munged did not start: no local Slurm"; exit 0; }
fi
if ! pgrep -x slurmctld >/dev/null; then
    /usr/sbin/slurmctld || { say "slurmctld did not start (see /var/log/slurm/slurmctld.log)"; exit 0; }
fi
if ! pgrep -x slurmd >/dev/null; then
    /usr/sbin/slurmd || { say "slurmd did not start (see /var/log/slurm/slurmd.log)"; exit 0; }
fi

for _ in $(seq 60); do
    if node_idle; then
        say "Slurm up: $(sinfo -h -N -o '%N %T %c CPUs')"
        exit 0
    fi
    scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
    sleep 1
done
say "the node did not become idle within 60 s: $(sinfo -h -N -o '%N %T %E' 2>&1 | head -1) (the Slurm tests will skip)"
exit 0
