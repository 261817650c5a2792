#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for tests/test_slurm.py and CI (.ci/run).
#
#   bash tests/slurm/cluster.sh start [--gpus N]   # install (apt), configure, start; prints the node
#   eval "$(bash tests/slurm/cluster.sh env)"     # SLURM_CONF for sinfo/sbatch/sacct/snakemake
#   bash tests/slurm/cluster.sh status            # each daemon up/down, sinfo; exit 0 when all are up
#   bash tests/slurm/cluster.sh stop              # kill exactly the PIDs `start` recorded
#
# Debian's munge, slurmctld, slurmd, slurm-client and slurmdbd with a private MariaDB, so `sacct`
# answers as on a real cluster (snakemake-executor-plugin-slurm polls job states with sacct and
# waits forever where accounting is off). N fake GPUs (default 2) are GRES backed by character
# devices (`File=` in gres.conf: GRES by count alone drains the node); jobs that ask for
# --gpus/--gres get CUDA_VISIBLE_DEVICES as on a GPU node (torch still sees no CUDA device).
#
# Every file lives in the state folder ($SG_SLURM_DIR, default /tmp/sparse-guidance-slurm):
# slurm.conf, gres.conf, slurmdbd.conf (found through SLURM_CONF), spool, logs, PID files, the munge
# socket, the database; the daemons listen on 127.0.0.1 ports $SG_SLURM_PORT..+3 (default
# 6917-6920, not SLURM's 6817-6819). The one system-wide change: /etc/slurm/slurm.conf becomes a
# link to our slurm.conf while the cluster runs (the jobs' srun needs it, see below); where that
# file already exists (a real SLURM), start refuses. `start` wipes the folder of a previous,
# stopped cluster; `stop` leaves it (logs) in place. No systemd, no cgroups: daemons run as root
# (mariadbd and munged as their own users), processes are tracked by proctrack/linuxproc.
#
# Exit status: 0 = up; 77 = SLURM cannot be started here (not root, no apt/dpkg, install failed,
# a port in use, a daemon did not come up), with a one-line reason on stderr, after stopping
# whatever it had started (tests skip on it); 2 = usage. `status`: 0 all up, 1 otherwise.
# Needs: Debian/Ubuntu with apt (packages: ~30 with MariaDB, ~25 s), root.
set -uo pipefail

STATE=${SG_SLURM_DIR:-/tmp/sparse-guidance-slurm}
PORT=${SG_SLURM_PORT:-6917}          # slurmctld; slurmd +1, slurmdbd +2, mariadb +3
CLUSTER=sgci
PARTITION=debug
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
CONF=$STATE/etc/slurm.conf
SYS_CONF=/etc/slurm/slurm.conf     # where srun looks without SLURM_CONF
PIDS=$STATE/pids                     # "<name> <pid>" per daemon this script started
SKIP=77

say() { echo "cluster.sh: $*" >&2; }
unavailable() {  # one-line reason, stop what was started, exit 77
  say "SLURM unavailable: $*"
  [ -f "$PIDS" ] && [ -z "${SG_SLURM_KEEP_ON_FAILURE:-}" ] && stop_daemons >/dev/null 2>&1
  exit $SKIP
}
wait_for() {  # wait_for <seconds> <command...>: poll every 0.5 s until it succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $end ] && return 1
    sleep 0.5
  done
}
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
record() {  # record <name> <pidfile>: the daemon's PID from its own PID file
  local pid=""
  wait_for 15 test -s "$2" && pid=$(cat "$2")
  alive "$pid" || return 1
  echo "$1 $pid" >> "$PIDS"
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
log_hint() { echo "see $1 ($(tail -n 1 "$1" 2>/dev/null | cut -c1-160))"; }

install_packages() {
  # shellcheck disable=SC2086
  dpkg -s $PACKAGES >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null || unavailable "apt-get not found (needs Debian/Ubuntu packages: $PACKAGES)"
  # keep the packages' init scripts from starting system-wide daemons during the install
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy && created=1; fi
  local apt=(apt-get -q -y -o DPkg::Lock::Timeout=180 --no-install-recommends)
  # shellcheck disable=SC2086
  if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install $PACKAGES > "$STATE/log/apt.log" 2>&1; then
    # empty or stale package lists on a fresh machine: refresh once
    # shellcheck disable=SC2086
    { apt-get -q update -o DPkg::Lock::Timeout=180 \
        && DEBIAN_FRONTEND=noninteractive "${apt[@]}" install $PACKAGES; } >> "$STATE/log/apt.log" 2>&1 \
      || { [ $created = 1 ] && rm -f $policy; unavailable "apt-get install failed ($(log_hint "$STATE/log/apt.log"))"; }
  fi
  [ $created = 1 ] && rm -f $policy
  return 0
}

start() {
  local gpus=2
  while [ $# -gt 0 ]; do
    case $1 in
      --gpus) gpus=${2:?--gpus N}; shift ;;
      *) say "unknown option $1"; exit 2 ;;
    esac
    shift
  done
  [ "$(uname -s)" = Linux ] || unavailable "not Linux"
  [ "$(id -u)" = 0 ] || unavailable "must run as root (installs packages, starts daemons)"
  command -v dpkg >/dev/null || unavailable "no dpkg: not a Debian/Ubuntu system"
  if [ -f "$PIDS" ] && status >/dev/null 2>&1; then
    say "already up ($STATE)"; return 0
  fi
  [ -f "$PIDS" ] && stop_daemons >/dev/null 2>&1   # a half-dead earlier cluster
  if [ -e "$STATE" ] && [ ! -f "$STATE/.cluster-sh" ] && [ -n "$(ls -A "$STATE" 2>/dev/null)" ]; then
    unavailable "$STATE exists and is not this script's state folder (set SG_SLURM_DIR)"
  fi
  rm -rf "$STATE"
  mkdir -p "$STATE"/{etc,log,run,spool/ctld,spool/d,dev,munge,mysql} && chmod 755 "$STATE" \
    && touch "$STATE/.cluster-sh" || unavailable "cannot create $STATE"
  : > "$PIDS"
  local t0=$SECONDS
  install_packages
  local t_apt=$((SECONDS - t0))
  for p in $PORT $((PORT + 1)) $((PORT + 2)) $((PORT + 3)); do
    port_busy "$p" && unavailable "port $p on 127.0.0.1 is in use (set SG_SLURM_PORT to another base)"
  done
  # Snakemake's slurm-jobstep plugin (0.6.1) strips every SLURM_* variable, SLURM_CONF included,
  # from the environment of the `srun` that runs a rule inside its job; that srun then reads the
  # default /etc/slurm/slurm.conf. Point it here, unless it is another SLURM's configuration.
  if [ -L "$SYS_CONF" ]; then   # a link left by an earlier cluster (its state folder has our marker)
    local old; old=$(readlink "$SYS_CONF")
    if [ ! -e "$SYS_CONF" ] || [ -f "$(dirname "$(dirname "$old")")/.cluster-sh" ]; then rm -f "$SYS_CONF"; fi
  fi
  if [ -e "$SYS_CONF" ] || [ -L "$SYS_CONF" ]; then
    unavailable "$SYS_CONF exists (another SLURM's configuration): jobs' srun would read it"
  fi
  mkdir -p "$(dirname "$SYS_CONF")" && ln -s "$CONF" "$SYS_CONF" && echo "$SYS_CONF" > "$STATE/linked" \
    || unavailable "cannot link $SYS_CONF"

  local host ncpu mem
  host=$(hostname -s)
  ncpu=$(nproc)
  mem=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  [ -n "$mem" ] || unavailable "slurmd -C reported no memory"

  # --- munge: our own munged on a private socket, with the key Debian's package generated
  [ -r /etc/munge/munge.key ] || unavailable "no /etc/munge/munge.key"
  local sock=$STATE/munge/munge.socket
  chown munge:munge "$STATE/munge" && chmod 711 "$STATE/munge"  # munged wants x for all
  runuser -u munge -- /usr/sbin/munged --socket="$sock" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed" \
    || unavailable "munged failed ($(log_hint "$STATE/munge/munged.log"))"
  record munged "$STATE/munge/munged.pid" || unavailable "munged did not start"
  wait_for 10 sh -c "munge -n -S '$sock' | unmunge -S '$sock'" || unavailable "munge credentials do not verify"

  # --- fake GPUs: character devices (major 1, minor 3 = /dev/null) named in gres.conf
  local gres_types="" node_gres=""
  if [ "$gpus" -gt 0 ]; then
    for i in $(seq 0 $((gpus - 1))); do
      mknod "$STATE/dev/gpu$i" c 1 3 || unavailable "mknod failed for fake GPU devices"
    done
    gres_types="GresTypes=gpu"
    node_gres="Gres=gpu:$gpus"
    echo "NodeName=$host Name=gpu File=$STATE/dev/gpu[0-$((gpus - 1))]" > "$STATE/etc/gres.conf"
  fi

  cat > "$CONF" <<EOF
# written by tests/slurm/cluster.sh: a one-node test cluster
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# no systemd, no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
# accounting through slurmdbd: sacct answers, with GPUs (AllocTRES) and the plugin's --comment (rule) per job
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# (for slurmdbd connections this names the munge socket; AuthInfo is not used for them)
AccountingStoragePass=$sock
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
JobCompType=jobcomp/none
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
$gres_types
NodeName=$host NodeAddr=127.0.0.1 CPUs=$ncpu RealMemory=$mem $node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  echo "export SLURM_CONF=$CONF" > "$STATE/env"
  export SLURM_CONF=$CONF

  # --- MariaDB: a private instance (own datadir, socket, TCP port on 127.0.0.1)
  local db=$STATE/mysql dbport=$((PORT + 3))
  chown mysql:mysql "$db"
  mariadb-install-db --no-defaults --user=mysql --datadir="$db/data" --auth-root-authentication-method=socket \
    --skip-test-db > "$STATE/log/mariadb-install.log" 2>&1 \
    || unavailable "mariadb-install-db failed ($(log_hint "$STATE/log/mariadb-install.log"))"
  setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$db/data" --socket="$db/mysqld.sock" \
    --pid-file="$db/mysqld.pid" --port=$dbport --bind-address=127.0.0.1 --skip-name-resolve \
    --log-error="$STATE/log/mariadb.log" --innodb-buffer-pool-size=32M < /dev/null > /dev/null 2>&1 &
  record mariadbd "$db/mysqld.pid" || unavailable "mariadbd did not start ($(log_hint "$STATE/log/mariadb.log"))"
  local sql=(mariadb --no-defaults -S "$db/mysqld.sock" -u root)
  wait_for 30 "${sql[@]}" -e 'select 1' || unavailable "mariadb does not answer ($(log_hint "$STATE/log/mariadb.log"))"
  "${sql[@]}" -e "CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;" || unavailable "cannot create the slurm database"

  # --- slurmdbd (reads slurmdbd.conf beside $SLURM_CONF; it must be private to SlurmUser)
  cat > "$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$dbport
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$STATE/etc/slurmdbd.conf"
  slurmdbd || unavailable "slurmdbd failed ($(log_hint "$STATE/log/slurmdbd.log"))"
  record slurmdbd "$STATE/run/slurmdbd.pid" || unavailable "slurmdbd did not start ($(log_hint "$STATE/log/slurmdbd.log"))"
  wait_for 30 sacctmgr -n list cluster || unavailable "slurmdbd does not answer ($(log_hint "$STATE/log/slurmdbd.log"))"

  # --- slurmctld and slurmd (both daemonize and write their PID files)
  slurmctld -f "$CONF" || unavailable "slurmctld failed ($(log_hint "$STATE/log/slurmctld.log"))"
  record slurmctld "$STATE/run/slurmctld.pid" || unavailable "slurmctld did not start ($(log_hint "$STATE/log/slurmctld.log"))"
  slurmd -f "$CONF" || unavailable "slurmd failed ($(log_hint "$STATE/log/slurmd.log"))"
  record slurmd "$STATE/run/slurmd.pid" || unavailable "slurmd did not start ($(log_hint "$STATE/log/slurmd.log"))"
  wait_for 60 sh -c "sinfo -h -N -o %t | grep -qx idle" \
    || unavailable "node not idle: $(sinfo -h -N -o '%t %E' 2>&1 | head -n 1) ($(log_hint "$STATE/log/slurmd.log"))"
  # slurmctld registers the cluster with slurmdbd itself; then sacct answers for it
  wait_for 30 sh -c "sacctmgr -n -P list cluster format=cluster | grep -qx $CLUSTER" \
    || unavailable "cluster $CLUSTER not registered in slurmdbd ($(log_hint "$STATE/log/slurmctld.log"))"
  wait_for 10 sacct -n -X -S now-1hours || unavailable "sacct does not answer"
  local t_start=$((SECONDS - t0 - t_apt))
  say "up in ${t_apt}+${t_start} s (apt+start); SLURM_CONF=$CONF"
  sinfo -N -o "%N %P %t %c %m %G"
}

stop_daemons() {  # kill exactly the recorded PIDs (if they still run what was recorded), newest first;
  # remove the /etc/slurm/slurm.conf link made by start
  [ -f "$PIDS" ] || [ -f "$STATE/linked" ] || return 0
  touch "$PIDS"
  local name pid
  tac "$PIDS" | while read -r name pid; do
    alive "$pid" || continue
    # a recycled PID is not ours: compare the process name (munged, mariadbd, slurm*)
    case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
      "$name"*) ;;
      *) say "PID $pid is no longer $name; left alone"; continue ;;
    esac
    kill "$pid"
    local end=$((SECONDS + 15))
    while alive "$pid" && [ $SECONDS -lt $end ]; do sleep 0.2; done
    alive "$pid" && kill -9 "$pid"
    echo "stopped $name ($pid)"
  done
  rm -f "$PIDS"
  if [ -f "$STATE/linked" ] && [ "$(readlink "$SYS_CONF")" = "$CONF" ]; then rm -f "$SYS_CONF"; fi
  rm -f "$STATE/linked"
}

stop() {
  if [ -f "$PIDS" ] && [ -f "$CONF" ]; then
    # cancel what still runs on this cluster, so no job step outlives its slurmd
    SLURM_CONF=$CONF timeout 10 scancel --quiet --state=RUNNING,PENDING --user="$(id -un)" 2>/dev/null
    SLURM_CONF=$CONF timeout 10 sh -c 'while [ -n "$(squeue -h -t RUNNING,COMPLETING 2>/dev/null)" ]; do sleep 0.5; done'
  fi
  stop_daemons
}

status() {
  local ok=0 name pid
  if [ -f "$PIDS" ]; then
    while read -r name pid; do
      if alive "$pid"; then echo "up   $name $pid"; else echo "down $name $pid"; ok=1; fi
    done < "$PIDS"
    [ -s "$PIDS" ] || ok=1
  else
    echo "down (no $PIDS)"; ok=1
  fi
  [ -f "$CONF" ] && SLURM_CONF=$CONF sinfo -N -o "%N %P %t %c %m %G" 2>&1
  return $ok
}

cmd=${1:-}; shift || true
case $cmd in
  start) start "$@" ;;
  stop) stop ;;
  status) status ;;
  env) [ -f "$STATE/env" ] && cat "$STATE/env" ;;
  *) echo "usage: $0 start [--gpus N] | stop | status | env" >&2; exit 2 ;;
esac
