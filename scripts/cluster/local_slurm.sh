#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to try seqlab's cluster path (hydra/launcher=slurm, the
# sbatch script, requeue on preemption and time limits) for real. Debian/Ubuntu, as root.
#   bash scripts/cluster/local_slurm.sh up       # install what is missing, start the daemons, wait until the node is idle
#   bash scripts/cluster/local_slurm.sh status   # each daemon and the node's state; exit 0 when all are up, 1 otherwise
#   bash scripts/cluster/local_slurm.sh down     # stop the daemons (by their pid files)
# State, logs, spool and the accounting database live in $SEQLAB_SLURM_DIR (default /tmp/seqlab-slurm).
# The config is linked from /etc/slurm/slurm.conf so that sbatch, srun, squeue, sacct and submitit find
# it with no environment. Accounting is on, as on a real cluster: munged, then a MariaDB server of its
# own (127.0.0.1, a free port), slurmdbd, slurmctld and slurmd; `sacct` shows the states submitit polls.
set -euo pipefail

STATE_DIR="${SEQLAB_SLURM_DIR:-/tmp/seqlab-slurm}"
CONF="$STATE_DIR/slurm.conf"
CLUSTER=seqlab-local
SYSTEM_CONF=/etc/slurm/slurm.conf
MUNGE_SOCKET_DIR=/run/munge
MUNGE_PID="$STATE_DIR/munge/munged.pid"
CTLD_PID="$STATE_DIR/slurmctld.pid"
SLURMD_PID="$STATE_DIR/slurmd.pid"
DBD_CONF="$STATE_DIR/slurmdbd.conf"
DBD_PID="$STATE_DIR/slurmdbd.pid"
DB_DIR="$STATE_DIR/mariadb"
DB_SOCKET="$DB_DIR/mariadbd.sock"
DB_PID="$DB_DIR/mariadbd.pid"
DB_LOG="$DB_DIR/mariadbd.log"
DB_NAME=slurm_acct_db
DB_USER=slurm
UP_TIMEOUT_S="${SEQLAB_SLURM_UP_TIMEOUT_S:-120}"
NODE="$(hostname -s)"

fail() {
  echo "local_slurm: $*" >&2
  exit 1
}

running() { # running PIDFILE: whether the process in PIDFILE is alive
  [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop() { # stop NAME PIDFILE LOG [SECONDS]: TERM the process in PIDFILE and wait (10 s by default) for it to exit
  local name=$1 pidfile=$2 logfile=$3 timeout_s=${4:-10} pid
  running "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  kill "$pid"
  for _ in $(seq $((timeout_s * 10))); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  fail "$name (pid $pid) did not stop within $timeout_s s; see $logfile"
}

wait_until() { # wait_until WHAT LOG COMMAND...: run COMMAND every second until it succeeds, for up to UP_TIMEOUT_S
  local what=$1 logfile=$2 deadline=$((SECONDS + UP_TIMEOUT_S))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what after ${UP_TIMEOUT_S} s; see $logfile"
    sleep 1
  done
}

port_is_free() { # nothing answers on 127.0.0.1:PORT
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

node_state() {
  sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n1
}

install_packages() {
  local packages="slurm-wlm munge slurmdbd mariadb-server"
  command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v slurmdbd >/dev/null &&
    command -v mariadbd >/dev/null && return 0
  command -v apt-get >/dev/null || fail "SLURM, slurmdbd, munge or MariaDB is not installed and there is no apt-get: install $packages yourself"
  echo "local_slurm: installing $packages (apt-get)"
  # shellcheck disable=SC2086 # the package names are words
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >"$STATE_DIR/apt-get.log" 2>&1 ||
    { apt-get update -q >>"$STATE_DIR/apt-get.log" 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >>"$STATE_DIR/apt-get.log" 2>&1; } ||
    fail "apt-get could not install $packages; see $STATE_DIR/apt-get.log"
}

write_config() {
  local cpus memory_mb
  cpus=$(nproc)
  # Below what is free now, or slurmd marks the node invalid.
  memory_mb=$(free -m | awk '/^Mem:/ {print int($2 * 0.9)}')
  mkdir -p "$STATE_DIR/spool/ctld" "$STATE_DIR/spool/d"
  cat >"$CONF" <<EOF
# Written by scripts/cluster/local_slurm.sh: one node, this machine, everything under $STATE_DIR.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# A requeued job waits this long (credential lifetime, default 120 s) before it may start again.
AuthInfo=cred_expire=10
StateSaveLocation=$STATE_DIR/spool/ctld
SlurmdSpoolDir=$STATE_DIR/spool/d
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$STATE_DIR/slurmctld.log
SlurmdLogFile=$STATE_DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Pending jobs (a requeued one once it may start) are looked at every 2 s, not every 30-60 s.
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# A killed job's processes get SIGKILL 2 s after SIGTERM, so requeues are quick.
KillWait=2
MinJobAge=300
NodeName=$NODE CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  if [[ -L "$SYSTEM_CONF" || ! -e "$SYSTEM_CONF" ]]; then
    mkdir -p "$(dirname "$SYSTEM_CONF")"
    ln -sfn "$CONF" "$SYSTEM_CONF"
  elif ! cmp -s "$SYSTEM_CONF" "$CONF"; then
    fail "$SYSTEM_CONF exists and is not this cluster's: move it away, or run the SLURM commands with SLURM_CONF=$CONF"
  fi
}

start_munge() {
  running "$MUNGE_PID" && return 0
  mkdir -p "$STATE_DIR/munge" "$MUNGE_SOCKET_DIR"
  chown munge:munge "$STATE_DIR/munge" "$MUNGE_SOCKET_DIR"
  chmod 0700 "$STATE_DIR/munge"
  chmod 0755 "$MUNGE_SOCKET_DIR"
  if [[ ! -s /etc/munge/munge.key ]]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  runuser -u munge -- munged --force --pid-file="$MUNGE_PID" --log-file="$STATE_DIR/munge/munged.log" ||
    fail "munged did not start; see $STATE_DIR/munge/munged.log"
}

sql() { # sql STATEMENTS: run them in the cluster's MariaDB server as its root (who logs in by the unix socket)
  mariadb --no-defaults --socket="$DB_SOCKET" --user=root --batch --skip-column-names --execute="$1"
}

start_mariadb() {
  local port pid
  if running "$DB_PID"; then
    return 0
  fi
  mkdir -p "$DB_DIR"
  chown mysql:mysql "$DB_DIR"
  if [[ ! -d "$DB_DIR/data/mysql" ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR/data" --skip-test-db >"$DB_DIR/install-db.log" 2>&1 ||
      fail "mariadb-install-db could not create $DB_DIR/data; see $DB_DIR/install-db.log"
  fi
  # The port of the last start when it is still free, so that slurmdbd.conf keeps pointing at it.
  port=$(cat "$DB_DIR/port" 2>/dev/null || echo 3307)
  until port_is_free "$port"; do
    ((port < 65535)) || fail "no free TCP port on 127.0.0.1 for MariaDB"
    port=$((port + 1))
  done
  echo "$port" >"$DB_DIR/port"
  # The lock wait slurmdbd asks for (its log warns below 900 s).
  setsid mariadbd --no-defaults --user=mysql --datadir="$DB_DIR/data" --socket="$DB_SOCKET" --pid-file="$DB_PID" \
    --skip-networking=0 --bind-address=127.0.0.1 --port="$port" --log-error="$DB_LOG" --innodb-lock-wait-timeout=900 \
    </dev/null >>"$DB_LOG" 2>&1 &
  pid=$!
  wait_until "MariaDB does not answer on $DB_SOCKET" "$DB_LOG" \
    bash -c 'kill -0 "$1" || exit 0; mariadb-admin --no-defaults --socket="$2" --user=root ping' _ "$pid" "$DB_SOCKET"
  kill -0 "$pid" 2>/dev/null || fail "mariadbd exited at start; see $DB_LOG"
}

write_dbd_config() {
  local password
  if [[ ! -s "$DB_DIR/slurm.password" ]]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DB_DIR/slurm.password")
  fi
  password=$(cat "$DB_DIR/slurm.password")
  sql "CREATE DATABASE IF NOT EXISTS $DB_NAME;
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$password';
    GRANT ALL ON $DB_NAME.* TO '$DB_USER'@'127.0.0.1';" ||
    fail "could not create the database $DB_NAME and its user in MariaDB; see $DB_LOG"
  (
    umask 077
    # SLURM 22.05's slurmdbd.conf has no socket setting: slurmdbd reaches MariaDB by TCP on 127.0.0.1.
    cat >"$DBD_CONF" <<EOF
# Written by scripts/cluster/local_slurm.sh: slurmdbd for $CLUSTER, its database in the MariaDB server under $DB_DIR.
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$DBD_PID
LogFile=$STATE_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$(cat "$DB_DIR/port")
StorageUser=$DB_USER
StoragePass=$password
StorageLoc=$DB_NAME
EOF
  )
  chown root:root "$DBD_CONF"
  chmod 0600 "$DBD_CONF"
}

start_slurmdbd() {
  # slurmdbd reads slurmdbd.conf from the directory of $SLURM_CONF.
  running "$DBD_PID" || SLURM_CONF="$CONF" slurmdbd || fail "slurmdbd did not start; see $STATE_DIR/slurmdbd.log"
  wait_until "slurmdbd does not answer" "$STATE_DIR/slurmdbd.log" timeout 10 sacctmgr --noheader list cluster
  if [[ -z "$(timeout 10 sacctmgr --noheader --parsable2 list cluster "$CLUSTER" format=cluster)" ]]; then
    timeout 10 sacctmgr --immediate add cluster "$CLUSTER" >/dev/null ||
      fail "sacctmgr could not add the cluster $CLUSTER; see $STATE_DIR/slurmdbd.log"
  fi
}

up() {
  [[ $EUID -eq 0 ]] || fail "run as root: it installs packages and starts system daemons"
  mkdir -p "$STATE_DIR"
  install_packages
  write_config
  start_munge
  start_mariadb
  write_dbd_config
  start_slurmdbd
  running "$CTLD_PID" || slurmctld -f "$CONF" || fail "slurmctld did not start; see $STATE_DIR/slurmctld.log"
  running "$SLURMD_PID" || slurmd -f "$CONF" || fail "slurmd did not start; see $STATE_DIR/slurmd.log"
  local state deadline=$((SECONDS + UP_TIMEOUT_S))
  while ((SECONDS < deadline)); do
    state=$(node_state)
    case "$state" in
    idle | mixed | allocated | completing) echo "local_slurm: node $NODE is $state ($CONF)"; return 0 ;;
    # A node that went down with the daemons (or was drained) comes back once slurmd answers.
    drain* | drained | down* | fail*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 1
  done
  fail "node $NODE is not idle after ${UP_TIMEOUT_S} s (state: ${state:-no answer}); see $STATE_DIR/slurmctld.log and $STATE_DIR/slurmd.log"
}

down() {
  stop slurmd "$SLURMD_PID" "$STATE_DIR/slurmd.log"
  stop slurmctld "$CTLD_PID" "$STATE_DIR/slurmctld.log"
  # After slurmctld, which sends slurmdbd the records it still holds as it stops.
  stop slurmdbd "$DBD_PID" "$STATE_DIR/slurmdbd.log" 30
  stop mariadbd "$DB_PID" "$DB_LOG" 30
  stop munged "$MUNGE_PID" "$STATE_DIR/munge/munged.log"
  if [[ -L "$SYSTEM_CONF" && "$(readlink "$SYSTEM_CONF")" == "$CONF" ]]; then
    rm -f "$SYSTEM_CONF"
  fi
  echo "local_slurm: down"
}

status() {
  local name pidfile state all_running=1
  for name in munged mariadbd slurmdbd slurmctld slurmd; do
    case $name in
    munged) pidfile=$MUNGE_PID ;; mariadbd) pidfile=$DB_PID ;; slurmdbd) pidfile=$DBD_PID ;;
    slurmctld) pidfile=$CTLD_PID ;; slurmd) pidfile=$SLURMD_PID ;;
    esac
    if running "$pidfile"; then
      printf '  %-9s running (pid %s)\n' "$name" "$(cat "$pidfile")"
    else
      printf '  %-9s stopped\n' "$name"
      all_running=0
    fi
  done
  if ((all_running)) && state=$(node_state) && [[ -n "$state" ]]; then
    echo "local_slurm: up, node $NODE is $state ($CONF)"
    return 0
  fi
  echo "local_slurm: down"
  return 1
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*) fail "usage: $0 up|down|status" ;;
esac
