#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for regnet's `slurm` tests and for trying hydra/launcher=slurm:
# installs Debian's slurm-wlm and munge, writes /etc/slurm/slurm.conf for this machine (its cores and memory, one
# GPU-less partition "cpu"), starts munged, slurmctld and slurmd, and waits until `sinfo` shows the node idle.
# Idempotent: run it again and it starts only what is not running (and restarts the daemons if the config changed).
#   sudo bash .ci/slurm-cluster.sh            # then: sinfo; srun hostname
#   sudo bash .ci/slurm-cluster.sh --stop     # stops the daemons it started (by their pid files)
# Needs root (apt-get, daemons). Tested on Debian 12 (slurm-wlm 22.05).
set -euo pipefail

CONF=/etc/slurm/slurm.conf
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
RUN=/run/regnet-slurm           # pid files of the daemons this script started
LOGS=/var/log/regnet-slurm
say() { echo "slurm-cluster: $*" >&2; }

[ "$(id -u)" = 0 ] || { say "must run as root (it installs packages and starts daemons): sudo bash $0"; exit 2; }

stop() {
  for d in slurmd slurmctld munged; do
    if [ -f "$RUN/$d.pid" ] && kill -0 "$(cat "$RUN/$d.pid")" 2>/dev/null; then
      kill "$(cat "$RUN/$d.pid")" && say "stopped $d (pid $(cat "$RUN/$d.pid"))"
    fi
    rm -f "$RUN/$d.pid"
  done
}
if [ "${1:-}" = --stop ]; then stop; exit 0; fi

# --- install --------------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# --- munge: the key and its daemon ------------------------------------------------------------------------------
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge "$RUN" "$LOGS"
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key && chmod 0755 /run/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 50); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  cp /run/munge/munged.pid "$RUN/munged.pid" 2>/dev/null || pgrep -n -x munged >"$RUN/munged.pid" || true
  say "munged started"
fi

# --- slurm.conf: this machine's cores and memory, one GPU-less partition ----------------------------------------
host=$(hostname -s)
# `slurmd -C` prints this node's line (CPUs, boards, sockets, cores, threads, RealMemory); keep 10 % of the
# memory (at most 1 GiB) for the system so a job asking for "all of it" still fits.
node=$(slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+ //')
mem=$(sed -nE 's/.*RealMemory=([0-9]+).*/\1/p' <<<"$node")
keep=$((mem / 10 < 1024 ? mem / 10 : 1024))
node=$(sed -E "s/RealMemory=[0-9]+/RealMemory=$((mem - keep))/" <<<"$node")
mkdir -p /etc/slurm "$STATE" "$SPOOL"
new=$(mktemp)
cat >"$new" <<EOF
# Written by regnet's .ci/slurm-cluster.sh: a single-node cluster on $host (localhost), for tests and trials.
ClusterName=regnet
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# Credential lifetime, which is also how long a requeued job waits before it starts again (default 120 s).
AuthInfo=cred_expire=10
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
# No cgroups (containers, laptops): track processes by their parent, bind no cores, account nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# A job can be requeued (preemption, time limit); a node back after a restart is usable at once.
JobRequeue=1
ReturnToService=2
# Seconds between SIGTERM and SIGKILL when a job is cancelled or requeued: time to write a checkpoint.
KillWait=30
# Completed jobs stay visible to scontrol/squeue for 5 minutes (no accounting database here).
MinJobAge=300
MaxArraySize=10001
NodeName=$host NodeAddr=127.0.0.1 $node State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
changed=0
if ! cmp -s "$new" "$CONF"; then
  install -m 0644 "$new" "$CONF"
  changed=1
fi
rm -f "$new"

# --- daemons ----------------------------------------------------------------------------------------------------
running() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }
if [ "$changed" = 1 ] && { running slurmctld || running slurmd; }; then
  say "slurm.conf changed; restarting slurmctld and slurmd"
  for d in slurmd slurmctld; do
    if running "$d"; then
      pid=$(cat "$RUN/$d.pid")
      kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
fi
if ! running slurmctld; then
  /usr/sbin/slurmctld -i  # -i: ignore state that does not match the (new) config
  say "slurmctld started"
fi
if ! running slurmd; then
  /usr/sbin/slurmd
  say "slurmd started"
fi

# --- wait until the node takes jobs -----------------------------------------------------------------------------
for _ in $(seq 120); do
  state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n1 || true)
  case "$state" in
  idle | mix | alloc) say "node $host is $state (partition cpu): ready"; exit 0 ;;
  down* | drain* | drng*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
say "the node did not become idle within 60 s (state: ${state:-none}); see $LOGS/slurmctld.log and slurmd.log"
exit 1
