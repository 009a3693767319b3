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

# --- pid files -----------------------------------------------------------

pidfile() { echo "$RUN_DIR/$1.pid"; }

# The live pid of component $1 whose command line contains $2, or nothing.
# A pid file naming a dead process, or a process that is not ours (the pid
# was reused), is stale: it is explained and removed.
live_pid() {
  local name=$1 marker=$2 file pid
  file=$(pidfile "$name")
  [[ -f $file ]] || return 0
  pid=$(head -n1 "$file" 2>/dev/null)
  if [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] \
     && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"; then
    echo "$pid"
    return 0
  fi
  warn "$name: stale pid file $file (pid ${pid:-?} is not running $marker); removing it"
  rm -f "$file"
}

# Start a long-running process detached, its output in the log folder.
spawn() {
  local name=$1; shift
  setsid nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
}

# Stop component $1 (pid $2) with signal $3, then SIGKILL after $4 seconds.
stop_pid() {
  local name=$1 pid=$2 signal=${3:-TERM} grace=${4:-30} i
  kill -s "$signal" "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name (pid $pid) did not stop within ${grace}s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
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
