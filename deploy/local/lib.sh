# Shared helpers of the local stack: paths, pid files, ports, waits.
# Sourced by deploy/local/stack; every function is plain bash.

TENX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_DIR="$TENX_ROOT/deploy/local"
# Downloads and builds live outside the clone, so a second clone or CI reuses them.
TENX_CACHE=${TENX_CACHE:-/var/cache/tenx}
# Data, logs, pid files and generated secrets of this clone (gitignored).
TENX_STATE=${TENX_STATE:-$TENX_ROOT/.state}
RUN_DIR="$TENX_STATE/run"
LOG_DIR="$TENX_STATE/log"
# shellcheck source=versions.env
source "$LOCAL_DIR/versions.env"

export UV_CACHE_DIR="$TENX_CACHE/uv" UV_PYTHON_DOWNLOADS=never
export GOMODCACHE="${GOMODCACHE:-$TENX_CACHE/go/mod}" GOCACHE="${GOCACHE:-$TENX_CACHE/go/build}"
export GOFLAGS="-mod=readonly" GOTOOLCHAIN=local
# Maven downloads go to the cache too, so one folder holds every download.
MVN=(mvn -q -B -Dstyle.color=never "-Dmaven.repo.local=$TENX_CACHE/m2")
UV="$TENX_CACHE/tools/bin/uv"
BIN="$TENX_CACHE/bin"

say() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
warn() { printf '\033[33mwarning:\033[0m %s\n' "$*" >&2; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

mkdir -p "$RUN_DIR" "$LOG_DIR" "$TENX_CACHE/bin"

# --- the process table -------------------------------------------------------
#
# deploy/local/processes.conf: every supervised program in start order, with
# its kind, ports, readiness and (a service) what it runs. Loaded once, here.

PROCESS_TABLE="$LOCAL_DIR/processes.conf"
PROGRAMS=()
declare -gA PROGRAM_KIND=() PROGRAM_PORTS=() PROGRAM_READY=() PROGRAM_RUNS=()

load_process_table() {
  local file=$1 name kind ports ready runs about
  [[ -r $file ]] || die "the process table $file is missing"
  PROGRAMS=()
  PROGRAM_KIND=() PROGRAM_PORTS=() PROGRAM_READY=() PROGRAM_RUNS=()
  while read -r name kind ports ready runs about || [[ -n $name ]]; do
    [[ -z $name || $name == \#* ]] && continue
    [[ -n $about ]] || die "$file: $name: expected the columns name kind ports ready runs about"
    [[ $kind =~ ^(data|infra|service|edge)$ ]] || die "$file: $name: unknown kind '$kind'"
    [[ $ports =~ ^(-|[0-9]+(,[0-9]+)*)$ ]] || die "$file: $name: ports '$ports' are not PORT,PORT... or -"
    [[ -z ${PROGRAM_KIND[$name]+set} ]] || die "$file: $name is listed twice"
    PROGRAMS+=("$name")
    PROGRAM_KIND[$name]=$kind PROGRAM_PORTS[$name]=$ports PROGRAM_READY[$name]=$ready PROGRAM_RUNS[$name]=$runs
  done <"$file"
  ((${#PROGRAMS[@]})) || die "$file lists no program"
}

load_process_table "$PROCESS_TABLE"

# The programs of kind $1 (every program when none is given), one a line, in start order.
program_names() {
  local name
  for name in "${PROGRAMS[@]}"; do
    [[ -z ${1:-} || ${PROGRAM_KIND[$name]} == "$1" ]] && echo "$name"
  done
  return 0
}

# Refuse a name that is not in the table.
known_program() {
  [[ -n ${1:-} && -n ${PROGRAM_KIND[$1]:-} ]] || die "no program '${1:-}' in $PROCESS_TABLE"
}

# Every port of program $1, one a line (nothing for a program without one).
ports_of() {
  local -a ports
  known_program "${1:-}"
  [[ ${PROGRAM_PORTS[$1]} == - ]] && return 0
  IFS=, read -r -a ports <<<"${PROGRAM_PORTS[$1]}"
  printf '%s\n' "${ports[@]}"
}

# Port $2 of program $1 (1, its main one, by default), or - when it has none.
port_of() {
  local -a ports
  known_program "${1:-}"
  IFS=, read -r -a ports <<<"${PROGRAM_PORTS[$1]}"
  echo "${ports[${2:-1} - 1]:--}"
}

# --- the supervisor ------------------------------------------------------
#
# Every long-lived process of the stack runs under one supervisord of this
# clone (supervisor from PyPI, in the tools venv). It restarts a process that
# exits unexpectedly, with a backoff (1 s, 2 s, ... between failed starts),
# and its log records each unexpected exit: `stack status` counts them.
# A program is a section in $PROGRAMS_DIR and a small launcher in
# $SUPERVISOR_DIR/bin that execs the real command, so the pid supervisord
# watches (and `stack pid NAME` prints) is the server's own.

SUPERVISOR_DIR="$TENX_STATE/supervisor"
OVERRIDE_ENV="$TENX_STATE/override.env"
PROGRAMS_DIR="$SUPERVISOR_DIR/programs"
SUPERVISOR_CONF="$SUPERVISOR_DIR/supervisord.conf"
SUPERVISOR_LOG="$LOG_DIR/supervisord.log"
SUPERVISORD="$TENX_CACHE/tools/bin/supervisord"
# Failed starts in a row before supervisord gives up (FATAL): about 3.5
# minutes of backoff, longer than any dependency takes to come back.
START_RETRIES=20

install_supervisor() {
  [[ $("$SUPERVISORD" --version 2>/dev/null) == "$SUPERVISOR_VERSION" ]] && return 0
  say "supervisor: installing $SUPERVISOR_VERSION from PyPI into $TENX_CACHE/tools"
  "$TENX_CACHE/tools/bin/pip" install -q "supervisor==$SUPERVISOR_VERSION" || die "could not install supervisor"
}

ctl() { "$TENX_CACHE/tools/bin/supervisorctl" -c "$SUPERVISOR_CONF" "$@"; }

supervisor_pid() {
  local pid
  [[ -S $RUN_DIR/supervisor.sock ]] || return 0
  pid=$(ctl pid 2>/dev/null) || return 0
  [[ $pid =~ ^[0-9]+$ ]] && echo "$pid"
  return 0
}

up_supervisor() {
  [[ -n $(supervisor_pid) ]] && return 0
  mkdir -p "$PROGRAMS_DIR" "$SUPERVISOR_DIR/bin"
  rm -f "$PROGRAMS_DIR"/*.conf "$RUN_DIR/supervisor.sock"
  [[ -f $SUPERVISOR_LOG ]] && mv "$SUPERVISOR_LOG" "$SUPERVISOR_LOG.1"
  cat >"$SUPERVISOR_CONF" <<CONF
; Written by deploy/local/stack; the programs are added as the stack starts them.
[unix_http_server]
file=$RUN_DIR/supervisor.sock
chmod=0700

[supervisord]
logfile=$SUPERVISOR_LOG
logfile_maxbytes=0
pidfile=$RUN_DIR/supervisord.pid
childlogdir=$LOG_DIR
identifier=tenx-$(state_id)

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://$RUN_DIR/supervisor.sock

[include]
files=$PROGRAMS_DIR/*.conf
CONF
  "$SUPERVISORD" -c "$SUPERVISOR_CONF" || die "supervisord did not start; see $SUPERVISOR_LOG"
  wait_for supervisord 20 supervisor_ready
}

supervisor_ready() { [[ -n $(supervisor_pid) ]]; }

down_supervisor() {
  local pid i; pid=$(supervisor_pid)
  [[ -n $pid ]] || return 0
  # Stops every program, the last started first, each within its stop grace.
  ctl shutdown >/dev/null
  for ((i = 0; i < 3000; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && die "supervisord (pid $pid) did not stop within 300 s"
  rm -f "$RUN_DIR/supervisor.sock"
}

# The order programs start in; supervisord stops them in reverse.
priority_of() {
  case $1 in
    etcd) echo 9 ;; postgres-[0-9]) echo 10 ;; pgbouncer | backups) echo 11 ;; redis) echo 12 ;; kafka) echo 13 ;;
    elasticsearch) echo 14 ;; jaeger) echo 15 ;; mailpit) echo 16 ;;
    edge) echo 40 ;; *) echo 20 ;;
  esac
}

# Supervisor's state of program $1 (RUNNING, STARTING, BACKOFF, STOPPED,
# EXITED, FATAL), or nothing when it has no such program.
state_of() {
  [[ -n $(supervisor_pid) ]] || return 0
  ctl status "$1" 2>/dev/null | awk -v n="$1" '$1 == n { print $2 }'
  return 0
}

# Running, or on its way there (supervisord is starting it again).
is_up() { [[ $(state_of "$1") =~ ^(RUNNING|STARTING|BACKOFF)$ ]]; }

# The pid of program $1, or nothing.
pid_of() {
  local pid
  is_up "$1" || return 0
  pid=$(ctl pid "$1" 2>/dev/null) || true
  [[ $pid =~ ^[1-9][0-9]*$ ]] && echo "$pid"
  return 0
}

# Unexpected exits of program $1 since supervisord started: its restarts.
restarts_of() { grep -c "exited: $1 (.*not expected)" "$SUPERVISOR_LOG" 2>/dev/null || true; }

# spawn NAME [--user USER] [--stop SIGNAL SECONDS] [--env FILE] [--before SCRIPT]
#       [--nice N] -- COMMAND...
# Run COMMAND as supervised program NAME (as USER, with FILE's variables,
# after the bash SCRIPT, at niceness N), its output in the log folder; stopped
# with SIGNAL, SIGKILL after SECONDS.
spawn() {
  local name=$1 user="" signal=TERM grace=30 env_file="" before="" nice="" launcher conf
  shift
  while [[ $1 != -- ]]; do
    case $1 in
      --user) user=$2; shift 2 ;;
      --stop) signal=$2; grace=$3; shift 3 ;;
      --env) env_file=$2; shift 2 ;;
      --before) before=$2; shift 2 ;;
      --nice) nice=$2; shift 2 ;;
      *) die "spawn: unknown option $1" ;;
    esac
  done
  shift
  launcher="$SUPERVISOR_DIR/bin/$name"
  {
    echo "#!/usr/bin/env bash"
    echo "# $name as supervisord starts it; written by deploy/local/stack."
    # A benchmark's settings (bench/orders.py's trace ratio) over the stack's.
    [[ -n $env_file ]] && printf 'set -a; source %q; [[ -f %q ]] && source %q; set +a\n' \
      "$env_file" "$OVERRIDE_ENV" "$OVERRIDE_ENV"
    [[ -n $before ]] && echo "$before"
    if [[ -n $user ]]; then
      printf 'cd / && exec setpriv --reuid=%q --regid=%q --init-groups' "$user" "$user"
    else
      printf 'exec'
    fi
    [[ -n $nice ]] && printf ' nice -n %q' "$nice"
    printf ' %q' "$@"
    echo
  } >"$launcher.partial"
  chmod 700 "$launcher.partial" && mv "$launcher.partial" "$launcher"
  conf="$PROGRAMS_DIR/$name.conf"
  cat >"$conf.partial" <<CONF
[program:$name]
command=$launcher
priority=$(priority_of "$name")
autostart=true
autorestart=true
startsecs=1
startretries=$START_RETRIES
stopsignal=$signal
stopwaitsecs=$grace
stopasgroup=true
killasgroup=true
redirect_stderr=true
stdout_logfile=$LOG_DIR/$name.log
stdout_logfile_maxbytes=100MB
stdout_logfile_backups=1
CONF
  mv "$conf.partial" "$conf"
  # A new program is added and started (autostart); a changed one restarted.
  ctl update "$name" >/dev/null || die "$name: supervisord could not add it"
  is_up "$name" || ctl start "$name" >/dev/null || die "$name did not start; see $LOG_DIR/$name.log"
}

# Stop program $1 (supervisord sends its stop signal, SIGKILL after its grace).
stop_program() {
  is_up "$1" || return 0
  ctl stop "$1" >/dev/null || die "$1 did not stop; see $SUPERVISOR_LOG"
}

# --- ports ---------------------------------------------------------------

port_listening() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q .; }

port_owner() { ss -ltnpH "sport = :$1" 2>/dev/null | grep -o 'users:(.*)' | head -n1; }

# Refuse to start $1 when port $2 is held by a program that is not ours.
require_free_port() {
  local name=$1 port=$2
  if port_listening "$port"; then
    die "$name: port $port is taken by another program ($(port_owner "$port")). Stop it, or run 'make down' if it is an earlier Tenx stack from another clone."
  fi
}

# Refuse to start program $1 while any of its ports (the process table's) is taken.
require_free_ports() {
  local port
  known_program "${1:-}"
  for port in $(ports_of "$1"); do require_free_port "$1" "$port"; done
}

# Wait up to $2 seconds for command "${@:3}" to succeed; $1 names what we wait for.
wait_for() {
  local what=$1 timeout=$2 i; shift 2
  for ((i = 0; i < timeout * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  die "$what was not ready after ${timeout}s; see its log in $LOG_DIR"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# Program $1 answers its readiness URL: the process table's http:PATH, on its main port.
ready_http() {
  local ready=${PROGRAM_READY[${1:-?}]:-}
  if [[ $ready != http:/* ]]; then
    warn "${1:-}: its readiness in $PROCESS_TABLE is not http:PATH"
    return 1
  fi
  http_ok "http://127.0.0.1:$(port_of "$1")${ready#http:}"
}

# --- folders a non-root service user must own ----------------------------

# A data folder for user $1 named $2. It lives in the state folder when the
# user can reach it there; otherwise (a clone under /root, say) under
# /var/lib/tenx, with a link from the state folder so it is still found there.
user_dir() {
  local user=$1 name=$2 dir="$TENX_STATE/$2" alt
  if [[ -L $dir ]]; then readlink -f "$dir"; return; fi
  mkdir -p "$TENX_STATE"
  if runuser -u "$user" -- test -x "$TENX_STATE"; then
    mkdir -p "$dir"
  else
    alt="/var/lib/tenx/$(state_id)/$name"
    mkdir -p "$alt"
    ln -sfn "$alt" "$dir"
    dir=$alt
  fi
  chown "$user" "$dir"
  echo "$dir"
}

# A random id made with the state folder: a new clone at the same path gets
# new data folders, never the data of the clone that was there before.
state_id() {
  [[ -s $TENX_STATE/.id ]] || od -An -N6 -tx1 /dev/urandom | tr -d ' \n' >"$TENX_STATE/.id"
  cat "$TENX_STATE/.id"
}

ensure_user() {
  id -u "$1" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$1"
}

# --- installs --------------------------------------------------------------

APT_UPDATED=""
apt_install() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]})) || return 0
  say "apt: installing ${missing[*]}"
  if [[ -z $APT_UPDATED ]]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# apt_install, with the packages' services kept from starting (there is no
# init system here, and a Debian service started at install would take the
# port the stack gives its own process: etcd's, PgBouncer's).
apt_install_quietly() {
  local made=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made=1
  fi
  apt_install "$@"
  [[ -n $made ]] && rm -f /usr/sbin/policy-rc.d
  return 0
}

# Build Go program $1 from the wrapper module in deploy/local/$2 into the
# cache as $3. The binary is written under a temporary name and renamed, so
# an interrupted build never leaves a half-written binary behind.
go_build_tool() {
  local pkg=$1 module_dir=$2 out=$3
  [[ -x $out ]] && return 0
  say "go: building $pkg (first time only; this takes minutes)"
  (cd "$LOCAL_DIR/$module_dir" && go build -trimpath -o "$out.partial" "$pkg") \
    || die "go build of $pkg failed"
  mv "$out.partial" "$out"
}
