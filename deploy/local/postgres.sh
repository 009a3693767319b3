# PostgreSQL, highly available: three nodes managed by Patroni (one primary,
# two streaming replicas, one of them synchronous), etcd as Patroni's
# distributed configuration store. Run as the postgres user; one database and
# one login role per service. docs/data-tier.md is the operator's page.
#
# A node is one supervised Patroni process; Patroni starts and stops its
# postmaster, promotes a replica when the leader's lease in etcd expires, and
# brings a lost primary back as a replica (pg_rewind).

PG_BIN=/usr/lib/postgresql/$POSTGRES_MAJOR/bin
PG_SCOPE=tenx
PG_DATABASES=(tenx_api tenx_auth tenx_notify tenx_search_indexer)
ETCD_CLIENT_PORT=$(port_of etcd 1)
ETCD_PEER_PORT=$(port_of etcd 2)

install_postgres() {
  apt_install_quietly "postgresql-$POSTGRES_MAJOR" "postgresql-client-$POSTGRES_MAJOR" \
    etcd-server patroni pgbackrest pgbouncer
}

pg_dir() { user_dir postgres postgres; }

# From /, which the postgres user can always enter (a clone under /root it cannot).
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# The nodes are the process table's postgres-N programs: their first port
# PostgreSQL's, their second Patroni's REST API.
node_field() {  # node_field NAME FIELD(2: pg port, 3: REST port)
  [[ $1 == postgres-[0-9] && -n ${PROGRAM_KIND[$1]:-} ]] || return 1
  port_of "$1" "$(($2 - 1))"
}
pg_nodes() {
  local name
  for name in $(program_names data); do [[ $name == postgres-[0-9] ]] && echo "$name"; done
  return 0
}

# The node that holds the leader key and runs as primary (Patroni's /primary
# answers 200 there only), or nothing.
pg_leader() {
  local node
  for node in $(pg_nodes); do
    http_ok "http://127.0.0.1:$(node_field "$node" 3)/primary" && { echo "$node"; return 0; }
  done
  return 0
}

psql_leader() {
  local leader; leader=$(pg_leader)
  [[ -n $leader ]] || die "postgres: no node is the primary (make status)"
  psql_node "$leader" "$@"
}

psql_node() {
  as_postgres "$PG_BIN/psql" -h "$(pg_dir)" -p "$(node_field "$1" 2)" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -qAt "${@:2}"
}

# --- etcd ------------------------------------------------------------------------

up_etcd() {
  local data
  if ! is_up etcd; then
    require_free_ports etcd
    ensure_user etcd
    data=$(user_dir etcd etcd)
    spawn etcd --user etcd --stop TERM 20 -- /usr/bin/etcd --name tenx --data-dir "$data" \
      --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
      --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
      --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
      --initial-cluster "tenx=http://127.0.0.1:$ETCD_PEER_PORT" \
      --auto-compaction-mode=periodic --auto-compaction-retention=1h --snapshot-count=10000
  fi
  wait_for etcd 30 ready_http etcd
}

status_etcd() { status_line etcd "$ETCD_CLIENT_PORT" "$(/usr/bin/etcd --version | awk 'NR == 1 {print $3}')"; }

# --- Patroni ------------------------------------------------------------------

# The failover timing (docs/data-tier.md): the leader's lease lasts ttl
# seconds; replicas watch it every loop_wait. loop_wait + 2 retry_timeout <= ttl.
PATRONI_TTL=10
PATRONI_LOOP_WAIT=2
PATRONI_RETRY_TIMEOUT=4
PG_ARCHIVE_TIMEOUT_S=60

pg_node_config() {
  local node=$1 dir port rest
  dir=$(pg_dir); port=$(node_field "$node" 2); rest=$(node_field "$node" 3)
  cat <<YAML
# Written by deploy/local/stack for node $node; holds local secrets (mode 600).
scope: $PG_SCOPE
namespace: /service/
name: $node
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
etcd3:
  hosts: 127.0.0.1:$ETCD_CLIENT_PORT
bootstrap:
  # Written to etcd once, by the node that initialises the cluster.
  dcs:
    ttl: $PATRONI_TTL
    loop_wait: $PATRONI_LOOP_WAIT
    retry_timeout: $PATRONI_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # A commit is acknowledged once one standby has flushed it: an order
    # the api answered 201 survives the loss of the primary.
    synchronous_mode: true
    synchronous_node_count: 1
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        hot_standby_feedback: "on"
        synchronous_commit: "on"
        max_connections: 200
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        # Three nodes share one machine: each keeps 64 MB of pages (the
        # order path's working set is far smaller; older pages are read
        # from the kernel's page cache). At 128 MB each, after a benchmark,
        # the three held 430 MB of shared buffers between them.
        shared_buffers: 64MB
        shared_preload_libraries: pg_stat_statements
        # Every WAL segment to the backup repository, at least once a
        # minute while anything is written: the RPO's bound.
        archive_mode: "on"
        archive_timeout: $PG_ARCHIVE_TIMEOUT_S
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - auth-local: peer
    - auth-host: scram-sha-256
postgresql:
  listen: 127.0.0.1:$port
  connect_address: 127.0.0.1:$port
  data_dir: $dir/$node
  bin_dir: $PG_BIN
  pgpass: $dir/$node.pgpass
  # A new replica's base backup starts at once, not at the next checkpoint.
  basebackup:
    - checkpoint: fast
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser: {username: postgres, password: "$(secret PG_SUPERUSER_PASSWORD)"}
    replication: {username: replicator, password: "$(secret PG_REPLICATOR_PASSWORD)"}
    rewind: {username: rewinder, password: "$(secret PG_REWIND_PASSWORD)"}
  parameters:
    unix_socket_directories: $dir
    logging_collector: "off"
    # No JIT: the order path's statements are small, and the few that cost
    # past jit_above_cost (asyncpg's type introspection on each new client
    # connection) took 0.7 s each to compile and left each backend that
    # compiled one 37 MB larger (libLLVM and its heap) for its lifetime.
    jit: "off"
    # This node's data folder named: PostgreSQL hands over a relative %p.
    archive_command: $(pgbackrest_cmd) --pg1-path=$dir/$node archive-push %p
  # A node that becomes the primary points PgBouncer at itself.
  callbacks:
    on_start: $(pgbouncer_route) $port
    on_role_change: $(pgbouncer_route) $port
  recovery_conf:
    restore_command: $(pgbackrest_cmd) --pg1-path=$dir/$node archive-get %f "%p"
  pg_hba:
    - local all postgres peer
    - local all all peer
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
YAML
}

# A node lost on purpose (make failover-drill) stays away while its hold
# file exists, as a lost server would: supervisord's restart waits on it.
hold_file() { echo "$RUN_DIR/$1.hold"; }

pg_start_node() {
  local node=$1 dir config
  is_up "$node" && return 0
  require_free_ports "$node"
  dir=$(pg_dir); config="$dir/$node.yml"
  pg_node_config "$node" >"$config.partial"
  chown postgres "$config.partial" && chmod 600 "$config.partial" && mv "$config.partial" "$config"
  [[ -L $LOG_DIR/$node.log ]] && rm -f "$LOG_DIR/$node.log"
  # SIGTERM: Patroni stops PostgreSQL (fast) and hands the leader key over.
  # Its postmaster runs in a session of its own (setsid), out of the group.
  spawn "$node" --user postgres --stop TERM 60 \
    --before "while [[ -e $(hold_file "$node") ]]; do sleep 0.2; done" -- /usr/bin/patroni "$config"
}

# Patroni's answer for the node: 200 once PostgreSQL runs, in any role.
ready_node() { http_ok "http://127.0.0.1:$(node_field "$1" 3)/health"; }

pg_legacy_layout() {
  [[ -d $(pg_dir)/primary ]] \
    && die "postgres: $(pg_dir) holds the single-primary layout of an older stack; 'make down && rm -rf .state' and 'make up' make the Patroni cluster"
  return 0
}

up_postgres() {
  local node
  pg_legacy_layout
  up_etcd
  # The first node initialises the cluster (initdb) when none exists, then
  # the others clone it (pg_basebackup) and stream. A cluster that exists
  # starts every node at once: in synchronous mode only the last primary or
  # its synchronous standby may lead again, whichever node that was.
  if [[ -f $(pg_dir)/postgres-1/PG_VERSION ]]; then
    for node in $(pg_nodes); do pg_start_node "$node"; done
  else
    pg_start_node postgres-1
  fi
  wait_for "a primary (Patroni's logs: $LOG_DIR/postgres-*.log)" 90 pg_has_leader
  pg_provision
  backup_stanza
  for node in $(pg_nodes); do pg_start_node "$node"; done
  for node in $(pg_nodes); do wait_for "$node" 120 ready_node "$node"; done
  wait_for "a synchronous standby (make status)" 60 pg_has_sync_standby
  up_pgbouncer
  backup_first_full
  up_backups
}

# A primary that takes writes: Patroni reports a node as primary a moment
# before its promotion ends.
pg_has_leader() {
  local leader; leader=$(pg_leader)
  [[ -n $leader && $(psql_node "$leader" -c "SELECT pg_is_in_recovery()" 2>/dev/null) == f ]]
}

# The members of the cluster as Patroni reports them: "name role state
# timeline lag_mb" per line.
pg_members() {
  local node rest
  for node in $(pg_nodes); do
    rest=$(node_field "$node" 3)
    curl -fsS --max-time 2 "http://127.0.0.1:$rest/cluster" 2>/dev/null && return 0
  done
  return 1
}

pg_has_sync_standby() { pg_members | grep -q '"sync_standby"'; }

pg_provision() {
  local db role_sql=""
  for db in "${PG_DATABASES[@]}"; do
    role_sql+="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$db') THEN CREATE ROLE $db LOGIN; END IF;
END \$\$;
ALTER ROLE $db PASSWORD '$(secret "PG_PASSWORD_$db")';
"
  done
  psql_leader <<<"$role_sql" >/dev/null
  for db in "${PG_DATABASES[@]}"; do
    if [[ -z $(psql_leader -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
      psql_leader -c "CREATE DATABASE $db OWNER $db" >/dev/null
    fi
    psql_leader -c "REVOKE ALL ON DATABASE $db FROM PUBLIC" >/dev/null
  done
  # pg_stat_statements, for statements per request (make bench-orders reads
  # it as tenx_api, which may read every database's statistics).
  psql_leader -d tenx_api -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  psql_leader -c "GRANT pg_read_all_stats TO tenx_api" >/dev/null
}

# The replicas first, then the primary: no failover while the cluster stops.
down_postgres() {
  local leader node
  [[ -n $(supervisor_pid) ]] || return 0
  leader=$(pg_leader)
  for node in $(pg_nodes); do [[ $node == "$leader" ]] || stop_program "$node"; done
  [[ -n $leader ]] && stop_program "$leader"
  return 0
}

status_postgres() {
  local members node line
  members=$(pg_members | python3 -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    lag = m.get("lag", 0)
    lag = f"lag {lag / 1048576:.1f} MB" if isinstance(lag, int) else f"lag {lag}"
    print(m["name"], m["role"], m["state"], "timeline", m.get("timeline", "?"), lag)
' 2>/dev/null || true)
  status_etcd
  for node in $(pg_nodes); do
    line=$(awk -v n="$node" '$1 == n { $1 = ""; print substr($0, 2) }' <<<"$members")
    # Patroni's postmaster leaves its tree (double fork, setsid): counted apart.
    status_line "$node" "$(node_field "$node" 2)" "${line:-not in the cluster}" \
      "$(pg_postmaster_pid "$node")"
  done
  status_pgbouncer
  status_backups
}

# A node that is a replica now: the asynchronous one when there is one.
pg_replica() {
  pg_members | python3 -c '
import json, sys
members = json.load(sys.stdin)["members"]
up = ("running", "streaming")
found = [m["name"] for m in members if m["role"] == "replica" and m["state"] in up]
found += [m["name"] for m in members if m["role"] == "sync_standby" and m["state"] in up]
print(found[0] if found else "")
' 2>/dev/null || true
}

# The pid of node $1's postmaster (Patroni's child, in a session of its own).
pg_postmaster_pid() {
  local file; file="$(pg_dir)/$1/postmaster.pid"
  [[ -f $file ]] && head -n1 "$file"
  return 0
}

# --- PgBouncer ------------------------------------------------------------------
#
# The services' writes go through PgBouncer in transaction mode: a server
# connection is theirs for one transaction, so hundreds of client connections
# share a few dozen to PostgreSQL. Each database has a second entry,
# NAME_session, in session mode, for what needs its session kept: LISTEN
# (the relays' and loops' wake-ups) and migrations (advisory locks). Reads
# go to the replicas directly (the session router picks them per request).
#
# PgBouncer follows the primary: Patroni runs the route script on a node that
# starts as or becomes the primary; it rewrites the database entries for that
# node's port and signals PgBouncer (SIGHUP), which reconnects its pools.
#
# The connection budget (docs/data-tier.md): PostgreSQL allows 200; per
# database at most PGBOUNCER_POOL_SIZE transaction and PGBOUNCER_SESSION_POOL
# session connections, four databases: 4 x (20 + 12) = 128 through PgBouncer,
# the rest for the replicas' reads (on a node that becomes primary), Patroni,
# pgBackRest, replication and the superuser's reserve.

PGBOUNCER_PORT=$(port_of pgbouncer)
PGBOUNCER_POOL_SIZE=20
PGBOUNCER_SESSION_POOL=12
PGBOUNCER_MAX_CLIENTS=2000

pgbouncer_dir() { user_dir postgres pgbouncer; }
pgbouncer_route() { echo "$(pgbouncer_dir)/route"; }

write_pgbouncer_conf() {
  local dir db; dir=$(pgbouncer_dir)
  cat >"$dir/pgbouncer.ini.partial" <<INI
; Written by deploy/local/stack (docs/data-tier.md).
[databases]
; The entries, for the primary's port: written by the route script.
%include $dir/databases.ini

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
pidfile = $dir/pgbouncer.pid
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = transaction
default_pool_size = $PGBOUNCER_POOL_SIZE
max_client_conn = $PGBOUNCER_MAX_CLIENTS
; A server connection that fails to log in (the primary gone) fails the
; waiting clients at once and is tried again after a second.
server_login_retry = 1
; A client waits this long for a server connection; then it gets an error
; (the services answer 503) instead of hanging through a failover.
query_wait_timeout = 10
server_connect_timeout = 3
; In session mode only (the _session entries): transaction-mode clients leave
; nothing on a server connection (unnamed statements, transaction-scoped
; locks), and a reset after every transaction cost two statements each.
server_reset_query = DISCARD ALL
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
INI
  : >"$dir/userlist.txt.partial"
  chmod 600 "$dir/userlist.txt.partial"
  for db in "${PG_DATABASES[@]}"; do
    printf '"%s" "%s"\n' "$db" "$(secret "PG_PASSWORD_$db")" >>"$dir/userlist.txt.partial"
  done
  cat >"$dir/route.partial" <<ROUTE
#!/usr/bin/env bash
# Patroni's callback (on_start, on_role_change): route PORT ACTION ROLE SCOPE.
# Written by deploy/local/stack. On the node that is the primary now, it points
# PgBouncer's databases at PORT and makes PgBouncer reload them.
set -euo pipefail
port=\$1 role=\${3:-master}
[[ \$role == master || \$role == primary ]] || exit 0
{
  echo "; The primary: 127.0.0.1:\$port (written by \$0 at \$(date -Is))."
  for db in ${PG_DATABASES[*]}; do
    echo "\$db = host=127.0.0.1 port=\$port dbname=\$db"
    echo "\${db}_session = host=127.0.0.1 port=\$port dbname=\$db pool_mode=session pool_size=$PGBOUNCER_SESSION_POOL"
  done
} >$dir/databases.ini.partial
mv $dir/databases.ini.partial $dir/databases.ini
pid=\$(cat $dir/pgbouncer.pid 2>/dev/null || true)
if [[ -n \$pid ]]; then kill -HUP "\$pid" 2>/dev/null || true; fi
ROUTE
  chmod 755 "$dir/route.partial"
  chown postgres "$dir"/*.partial
  mv "$dir/pgbouncer.ini.partial" "$dir/pgbouncer.ini"
  mv "$dir/userlist.txt.partial" "$dir/userlist.txt"
  mv "$dir/route.partial" "$dir/route"
}

up_pgbouncer() {
  local leader
  if ! is_up pgbouncer; then
    require_free_ports pgbouncer
    write_pgbouncer_conf
    leader=$(pg_leader)
    [[ -n $leader ]] || die "pgbouncer: no node is the primary (make status)"
    as_postgres "$(pgbouncer_route)" "$(node_field "$leader" 2)" on_start master "$PG_SCOPE"
    spawn pgbouncer --user postgres --stop TERM 20 -- /usr/sbin/pgbouncer "$(pgbouncer_dir)/pgbouncer.ini"
  fi
  wait_for pgbouncer 20 ready_pgbouncer
}

# A statement through it, on the primary.
ready_pgbouncer() {
  PGPASSWORD=$(secret PG_PASSWORD_tenx_api) PGCONNECT_TIMEOUT=2 "$PG_BIN/psql" -h 127.0.0.1 \
    -p "$PGBOUNCER_PORT" -U tenx_api -d tenx_api -qAtc "SELECT 1" >/dev/null 2>&1
}

# The primary PgBouncer sends the services to now.
pgbouncer_target() { sed -n 's/^; The primary: \([^ ]*\).*/\1/p' "$(pgbouncer_dir)/databases.ini" 2>/dev/null; }

status_pgbouncer() {
  status_line pgbouncer "$PGBOUNCER_PORT" \
    "PgBouncer $(/usr/sbin/pgbouncer --version | awk 'NR == 1 {print $2}'), to $(pgbouncer_target)"
}

# --- backups (pgBackRest) ------------------------------------------------------
#
# One stanza for the cluster, its repository outside every data folder
# (.state/backups); all three nodes are listed, and a backup finds the one
# that is the primary, so backups go on after a failover. Every node archives
# its WAL there (archive_command), and a node that needs WAL it lacks (a
# replica catching up, pg_rewind) reads it back (restore_command).

PG_STANZA=tenx
# Full backups kept; the differential and incremental backups (and the WAL)
# that depend on an expired full expire with it.
BACKUP_RETENTION_FULL=2
# The local schedule (the backups program): an incremental every hour, a
# differential every day, a full every week. make backup takes one now.
BACKUP_INCR_EVERY_S=3600
BACKUP_DIFF_EVERY_S=86400
BACKUP_FULL_EVERY_S=604800
SCRATCH_PORT=5499

backup_dir() { user_dir postgres backups; }
backup_conf() { echo "$(backup_dir)/pgbackrest.conf"; }
pgbackrest_cmd() { echo "/usr/bin/pgbackrest --config=$(backup_conf) --stanza=$PG_STANZA"; }

write_backup_conf() {
  local dir repo node n=0
  dir=$(pg_dir); repo=$(backup_dir)
  mkdir -p "$repo/repo" "$repo/log" "$repo/lock" "$repo/spool"
  chown postgres "$repo/repo" "$repo/log" "$repo/lock" "$repo/spool"
  {
    echo "# Written by deploy/local/stack: the cluster's backups (docs/data-tier.md)."
    echo "[global]"
    echo "repo1-path=$repo/repo"
    echo "repo1-retention-full=$BACKUP_RETENTION_FULL"
    echo "log-path=$repo/log"
    echo "lock-path=$repo/lock"
    echo "spool-path=$repo/spool"
    echo "compress-type=lz4"
    echo "start-fast=y"
    echo "log-level-console=warn"
    echo "log-level-file=info"
    echo
    echo "[$PG_STANZA]"
    for node in $(pg_nodes); do
      n=$((n + 1))
      echo "pg$n-path=$dir/$node"
      echo "pg$n-port=$(node_field "$node" 2)"
      echo "pg$n-socket-path=$dir"
    done
  } >"$(backup_conf).partial"
  chown postgres "$(backup_conf).partial" && mv "$(backup_conf).partial" "$(backup_conf)"
}

pgbackrest_as_postgres() { as_postgres $(pgbackrest_cmd) "$@"; }

# The stanza made once the first node is the primary (archive_command fails
# until it exists; PostgreSQL keeps the WAL and retries).
backup_stanza() {
  write_backup_conf
  pgbackrest_as_postgres stanza-create >>"$LOG_DIR/backups.log" 2>&1 \
    || die "pgbackrest stanza-create failed; see $LOG_DIR/backups.log and $(backup_dir)/log"
}

backup_count() {
  pgbackrest_as_postgres info --output=json 2>/dev/null \
    | python3 -c 'import json, sys; print(sum(len(s.get("backup", [])) for s in json.load(sys.stdin)))'
}

backup_first_full() {
  [[ $(backup_count) -gt 0 ]] && return 0
  say "backups: the first full backup"
  backup_now full
}

# backup_now full|diff|incr
backup_now() {
  pgbackrest_as_postgres --type="$1" backup >>"$LOG_DIR/backups.log" 2>&1 \
    || die "pgbackrest backup --type=$1 failed; see $LOG_DIR/backups.log and $(backup_dir)/log"
}

# The schedule, as a supervised program: a bash loop that sleeps.
up_backups() {
  is_up backups && return 0
  spawn backups --user postgres --stop TERM 60 -- bash -c "
    last_full=\$(date +%s) last_diff=\$(date +%s)
    while sleep $BACKUP_INCR_EVERY_S; do
      now=\$(date +%s) type=incr
      if ((now - last_full >= $BACKUP_FULL_EVERY_S)); then type=full last_full=\$now last_diff=\$now
      elif ((now - last_diff >= $BACKUP_DIFF_EVERY_S)); then type=diff last_diff=\$now; fi
      echo \"\$(date -Is) backup --type=\$type\"
      $(pgbackrest_cmd) --type=\$type backup || echo \"\$(date -Is) the \$type backup failed\"
    done"
}

status_backups() {
  status_line backups - "$(backup_count 2>/dev/null || echo '?') backups (make backups)"
}

cmd_backups() {
  pgbackrest_as_postgres info
}

# Point-in-time restore into a scratch cluster on its own port, never over
# the live one; then a comparison with the live databases.
cmd_restore() {
  local target=${1:-} dir scratch started=$SECONDS
  [[ -n $target ]] || die 'usage: make restore TIME="2026-12-02 10:00:00" (UTC unless it names a zone)'
  dir=$(pg_dir); scratch="$dir/scratch"
  scratch_stop
  rm -rf "$scratch" && mkdir -p "$scratch" && chown postgres "$scratch" && chmod 700 "$scratch"
  say "restore: the cluster as it was at $target into $scratch"
  pgbackrest_as_postgres --pg1-path="$scratch" --type=time "--target=$target" \
    --target-action=promote --archive-mode=off restore >>"$LOG_DIR/backups.log" 2>&1 \
    || die "pgbackrest restore failed; see $LOG_DIR/backups.log and $(backup_dir)/log"
  # Patroni's postgresql.conf came back with the live node's port, access
  # files and synchronous standby: each overridden, or the scratch cluster
  # would take a live port or wait forever for a standby.
  require_free_port scratch "$SCRATCH_PORT"
  as_postgres "$PG_BIN/pg_ctl" -D "$scratch" -l "$dir/scratch.log" -w -t 300 \
    -o "-c port=$SCRATCH_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir \
-c hba_file=$scratch/pg_hba.conf -c ident_file=$scratch/pg_ident.conf \
-c synchronous_standby_names= -c archive_mode=off -c cluster_name=scratch" start >/dev/null \
    || die "the restored cluster did not start; see $dir/scratch.log"
  wait_for "the restored cluster to finish recovery" 300 scratch_promoted
  say "restore: ready after $((SECONDS - started)) s on port $SCRATCH_PORT"
  restore_compare "$target"
  say "restore: the scratch cluster runs on 127.0.0.1:$SCRATCH_PORT; 'deploy/local/stack scratch-stop' stops it"
}

scratch_psql() {
  as_postgres "$PG_BIN/psql" -h "$(pg_dir)" -p "$SCRATCH_PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

scratch_promoted() { [[ $(scratch_psql -d postgres -c "SELECT pg_is_in_recovery()") == f ]]; }

scratch_stop() {
  local scratch; scratch="$(pg_dir)/scratch"
  [[ -f $scratch/postmaster.pid ]] || return 0
  as_postgres "$PG_BIN/pg_ctl" -D "$scratch" -m fast -w stop >/dev/null 2>&1 || true
}

# Rows per table, restored against live, and the latest order of each.
restore_compare() {
  local db sql latest
  sql="SELECT string_agg(format('%s %s', relname, n_live_tup), ', ' ORDER BY relname) FROM pg_stat_user_tables"
  printf '%-22s %s\n' "database" "rows per table: restored | live (estimates)"
  for db in "${PG_DATABASES[@]}"; do
    printf '%-22s %s\n' "$db" "$(scratch_psql -d "$db" -c "ANALYZE" -c "$sql" | tail -n1)"
    printf '%-22s %s\n' "" "$(psql_leader -d "$db" -c "$sql")"
  done
  latest="SELECT coalesce(max(created_at)::text || ' ' || (array_agg(id ORDER BY created_at DESC))[1]::text, 'none') FROM orders"
  echo "latest order restored: $(scratch_psql -d tenx_api -c "$latest")"
  echo "latest order live:     $(psql_leader -d tenx_api -c "$latest")"
}
