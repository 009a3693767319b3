# The Python services: uv workspace, migrations, topics, the processes, the edge.

PY="$TENX_ROOT/.venv/bin/python"
# Niceness of a Python process until it serves: a boost needs root.
STARTUP_NICE=$([[ $EUID == 0 ]] && echo -10 || echo 0)
# Niceness of a background process once it serves (the workers and the
# search-indexer: no request waits on them). On two shared cores the api's
# requests then come before a worker's batch: an answer's time no longer
# grows with the pipeline's work, and when the workers fall behind the saga
# backlog bound refuses placements (tenx_api.service_layer.backlog). In a
# cluster the same split is CPU requests per pod.
BACKGROUND_NICE=5
is_background() { [[ ${PROGRAM_RUNS[$1]} == *:worker || $1 == search-indexer ]]; }
# The services: the process table's programs of kind service, in start order,
# each with its port and PACKAGE:COMMAND there. Two api instances stand behind
# the edge's one upstream; a worker runs its service's consumer and background
# loops, with /healthz, /readyz and /metrics on its own port.
mapfile -t SERVICES < <(program_names service)
MIGRATED=(tenx_api tenx_auth tenx_notify tenx_search_indexer)
# Each service's outbox relay runs in its worker process (RELAY_IN_WORKER in
# local.env; the search-indexer's in its one process): four Python processes
# fewer, 0.4 GB of the stack's memory. Deployed, relays run on their own.

install_python() {
  if [[ ! -x $UV ]] || [[ $("$UV" --version 2>/dev/null | awk '{print $2}') != "$UV_VERSION" ]]; then
    say "uv: installing $UV_VERSION from PyPI into $TENX_CACHE/tools"
    python3 -m venv "$TENX_CACHE/tools"
    "$TENX_CACHE/tools/bin/pip" install -q "uv==$UV_VERSION" || die "could not install uv"
  fi
  # Bytecode compiled once here: this machine's Python writes none at run
  # time (PYTHONDONTWRITEBYTECODE), and compiling the libraries at every
  # start cost a restarted service 2.5 s of its 4.4 s of imports.
  (cd "$TENX_ROOT" && "$UV" sync --locked --quiet --compile-bytecode) || die "uv sync failed"
  "$PY" -m compileall -q -j 0 "$TENX_ROOT/libs" "$TENX_ROOT/services" "$TENX_ROOT/tests" >/dev/null \
    || die "compiling the services' bytecode failed"
}


migrate_services() {
  "$PY" -m tenx_common.data.migrations "${MIGRATED[@]}" >>"$LOG_DIR/migrations.log" 2>&1 \
    || die "migrations failed; see $LOG_DIR/migrations.log"
}

seed_demo_data() {
  "$PY" -m tenx_api seed >>"$LOG_DIR/seed.log" 2>&1 || die "seeding the demo catalog failed; see $LOG_DIR/seed.log"
  tail -n 1 "$LOG_DIR/seed.log" >&2
}

create_topics() {
  "$PY" -m tenx_common.messaging.topics >>"$LOG_DIR/topics.log" 2>&1 \
    || die "creating Kafka topics failed; see $LOG_DIR/topics.log"
}

up_services() {
  local name
  for name in "${SERVICES[@]}"; do up_python "$name"; done
  for name in "${SERVICES[@]}"; do wait_for "$name" 60 ready_http "$name"; done
}

# Service $1 (the process table's PACKAGE:COMMAND and port):
# `python -m PACKAGE COMMAND --port PORT`, with the stack's environment
# (local.env, which `make up` writes).
#
# It starts boosted (niceness -10) and drops to the normal 0 (a background
# process: BACKGROUND_NICE) once it serves (tenx_common.runtime.server): on
# two busy cores a process restarted under load got an even share of the
# CPU for its 2 s of imports and was ready only after 8 s. The boost is what
# Kubernetes' startup CPU boost does for a pod.
#
# glibc's malloc is told to give memory back: a fixed mmap threshold (1 MB)
# keeps large blocks (argon2's 19 MB per password hash) out of the heap, so
# their pages return on free, and two arenas serve the threads. After 160
# sign-ups each auth process kept 25 MB more without it.
up_python() {
  local name=$1 port pkg cmd settle=0
  is_up "$name" && return 0
  [[ ${PROGRAM_KIND[$name]:-} == service ]] || die "$name is not a service in $PROCESS_TABLE"
  port=$(port_of "$name")
  IFS=: read -r pkg cmd <<<"${PROGRAM_RUNS[$name]}"
  [[ -n $pkg && -n $cmd ]] || die "$name: runs '${PROGRAM_RUNS[$name]}' in $PROCESS_TABLE is not PACKAGE:COMMAND"
  require_free_ports "$name"
  is_background "$name" && settle=$BACKGROUND_NICE
  spawn "$name" --env "$LOCAL_ENV" --stop TERM 20 --nice "$STARTUP_NICE" -- \
    env MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576 "$PY" -m "$pkg" "$cmd" --port "$port" \
    --niceness "$settle"
}

status_services() {
  local name
  for name in "${SERVICES[@]}"; do
    status_line "$name" "$(port_of "$name")" "${PROGRAM_RUNS[$name]/:/ }"
  done
}

# --- the edge (nginx) ----------------------------------------------------------

install_edge() { apt_install nginx-light; }

edge_conf() { echo "$TENX_STATE/edge/nginx.conf"; }

up_edge() {
  local temp
  if ! is_up edge; then
    require_free_ports edge
    ensure_user www-data
    temp=$(user_dir www-data edge-temp)
    mkdir -p "$TENX_STATE/edge"
    sed -e "s#@STATE@#$TENX_STATE#g" -e "s#@TEMP@#$temp#g" "$LOCAL_DIR/nginx/nginx.conf" >"$(edge_conf)"
    nginx -t -q -c "$(edge_conf)" -e "$LOG_DIR/edge-error.log" || die "edge: nginx config is invalid"
    # The master in the foreground; SIGQUIT lets the workers finish their requests.
    spawn edge --stop QUIT 20 --before "$EDGE_ORPHANS" -- \
      nginx -c "$(edge_conf)" -e "$LOG_DIR/edge-error.log" -g "daemon off;"
  fi
  wait_for edge 20 ready_http edge
}

# A master killed with SIGKILL leaves its workers serving on the port (they
# do not watch their parent): before a new master starts, the edge's own
# orphaned workers (parent 1, nginx workers, listening on its port) are ended.
EDGE_ORPHANS="port=$(port_of edge)"'
for pid in $(ss -ltnpH "sport = :$port" | grep -o "pid=[0-9]*" | cut -d= -f2 | sort -u); do
  [[ $(ps -o ppid= -p "$pid" | tr -d " ") == 1 && $(ps -o args= -p "$pid") == "nginx: worker process" ]] \
    && kill -TERM "$pid"
done
for i in $(seq 50); do ss -ltnH "sport = :$port" | grep -q . || break; sleep 0.1; done'

status_edge() { status_line edge "$(port_of edge)" "nginx $(nginx -v 2>&1 | cut -d/ -f2)"; }
