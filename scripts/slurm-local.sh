#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying and testing sharded sweeps (docs/lab.md):
# munged, slurmctld and slurmd run as root from private files under DIR (own munge key, own
# socket, own ports), so nothing in /etc is touched and several can coexist.
#
#   scripts/slurm-local.sh start DIR [DEVICES] [PORT]   # DEVICES: meltrig_dev resources (2)
#   export SLURM_CONF=DIR/slurm.conf                    # then sbatch/squeue/sinfo use it
#   scripts/slurm-local.sh stop DIR
#
# The node offers DEVICES generic resources "meltrig_dev": the devices under test on this rig
# host, as a lab's slurm.conf would declare them per node. Needs Debian's slurm-wlm and munge
# (scripts/setup.sh installs both).
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [DEVICES] [PORT] | stop DIR" >&2
  exit 2
}

write_config() {
  local dir=$1 devices=$2 port=$3 host
  host=$(hostname)
  cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm-local.sh: one node, this host, $devices simulated devices.
ClusterName=meltrig
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=meltrig_dev
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) Gres=meltrig_dev:$devices State=UNKNOWN
PartitionName=bench Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  echo "NodeName=$host Name=meltrig_dev Count=$devices" >"$dir/gres.conf"
}

# Waits (bounded) until the node accepts jobs.
wait_idle() {
  local dir=$1 i state
  for ((i = 0; i < 150; ++i)); do
    state=$(SLURM_CONF="$dir/slurm.conf" sinfo -h -o %t 2>/dev/null || true)
    case $state in idle* | mix* | alloc*) return 0 ;; esac
    sleep 0.2
  done
  echo "slurm-local: the node did not come up within 30 s (state '${state:-none}'); logs:" >&2
  tail -n 20 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
  return 1
}

start() {
  local dir devices=${2:-2} port=${3:-16817}
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
  chmod 711 "$dir/munge"
  if [[ ! -f $dir/munge/munge.key ]]; then
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$dir/munge/munge.key"
  fi
  write_config "$dir" "$devices" "$port"
  munged --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  SLURM_CONF="$dir/slurm.conf" slurmctld -i
  SLURM_CONF="$dir/slurm.conf" slurmd
  wait_idle "$dir"
  echo "slurm-local: up; export SLURM_CONF=$dir/slurm.conf"
}

stop_pid() {
  local file=$1 pid i
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  kill "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 100; ++i)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  local dir=$1
  stop_pid "$dir/slurmd.pid"
  stop_pid "$dir/slurmctld.pid"
  stop_pid "$dir/munge/munged.pid"
  echo "slurm-local: stopped ($dir)"
}

case ${1:-} in
  start) [[ $# -ge 2 ]] || usage; start "${@:2}" ;;
  stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
  *) usage ;;
esac
