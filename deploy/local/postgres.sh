# PostgreSQL: a primary on 5432 and a streaming replica on 5433, run as the
# postgres user; one database and one login role per service.

PG_BIN=/usr/lib/postgresql/$POSTGRES_MAJOR/bin
PG_PRIMARY_PORT=5432
PG_REPLICA_PORT=5433
PG_SLOT=tenx_replica_1
PG_DATABASES=(tenx_api tenx_auth tenx_notify tenx_search_indexer)

install_postgres() {
  apt_install "postgresql-$POSTGRES_MAJOR" postgresql-client-$POSTGRES_MAJOR
}

pg_dir() { user_dir postgres postgres; }

# From /, which the postgres user can always enter (a clone under /root it cannot).
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

psql_primary() {
  as_postgres "$PG_BIN/psql" -h "$(pg_dir)" -p "$PG_PRIMARY_PORT" -U postgres -d postgres \
    -v ON_ERROR_STOP=1 -qAt "$@"
}

# postmaster in the foreground under supervisord; a fast shutdown (SIGINT)
# to stop it. After a SIGKILL it recovers from its WAL when started again.
pg_start() {
  local name=$1 port=$2
  if ! is_up "$name"; then
    require_free_port "$name" "$port"
    [[ -L $LOG_DIR/$name.log ]] && rm -f "$LOG_DIR/$name.log"  # an older stack's link
    spawn "$name" --user postgres --stop INT 60 -- "$PG_BIN/postgres" -D "$(pg_dir)/${name#postgres-}"
  fi
  wait_for "$name" 60 ready_postgres "$port"
}

ready_postgres() { as_postgres "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1"; }

pg_init_primary() {
  local data dir
  dir=$(pg_dir); data="$dir/primary"
  [[ -f $data/PG_VERSION ]] && return 0
  [[ -d $data ]] && { warn "postgres: $data is half initialised; starting it over"; rm -rf "$data"; }
  say "postgres: initialising the primary"
  as_postgres "$PG_BIN/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >"$LOG_DIR/postgres-initdb.log" \
    || die "initdb failed; see $LOG_DIR/postgres-initdb.log"
  cat >>"$data/postgresql.conf" <<CONF
# --- tenx local stack ---
listen_addresses = '127.0.0.1'
port = $PG_PRIMARY_PORT
unix_socket_directories = '$dir'
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
shared_buffers = 128MB
max_connections = 200
logging_collector = off
shared_preload_libraries = 'pg_stat_statements'
CONF
  echo "host replication replicator 127.0.0.1/32 scram-sha-256" >>"$data/pg_hba.conf"
}

pg_provision() {
  local db role_sql=""
  role_sql+="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'replicator') THEN
    CREATE ROLE replicator WITH REPLICATION LOGIN;
  END IF;
END \$\$;
ALTER ROLE replicator PASSWORD '$(secret PG_REPLICATOR_PASSWORD)';
"
  for db in "${PG_DATABASES[@]}"; do
    role_sql+="DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$db') THEN CREATE ROLE $db LOGIN; END IF;
END \$\$;
ALTER ROLE $db PASSWORD '$(secret "PG_PASSWORD_$db")';
"
  done
  psql_primary <<<"$role_sql" >/dev/null
  for db in "${PG_DATABASES[@]}"; do
    if [[ -z $(psql_primary -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
      psql_primary -c "CREATE DATABASE $db OWNER $db" >/dev/null
    fi
    psql_primary -c "REVOKE ALL ON DATABASE $db FROM PUBLIC" >/dev/null
  done
  pg_statement_stats
}

# pg_stat_statements, for statements per request (make bench-orders reads it
# as tenx_api, which may read every database's statistics). A cluster made
# before it was configured gets it at the primary's next restart.
pg_statement_stats() {
  if [[ $(psql_primary -c "SHOW shared_preload_libraries") != *pg_stat_statements* ]]; then
    psql_primary -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
    warn "postgres: pg_stat_statements is loaded from the primary's next restart (stack stop postgres-primary; make up)"
    return 0
  fi
  psql_primary -d tenx_api -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  psql_primary -c "GRANT pg_read_all_stats TO tenx_api" >/dev/null
}

pg_init_replica() {
  local dir data
  dir=$(pg_dir); data="$dir/replica"
  [[ -f $data/standby.signal ]] && return 0
  [[ -d $data ]] && { warn "postgres: $data is half made; making it again"; rm -rf "$data"; }
  say "postgres: making the streaming replica with pg_basebackup"
  psql_primary -c "SELECT pg_drop_replication_slot('$PG_SLOT') FROM pg_replication_slots WHERE slot_name = '$PG_SLOT'" >/dev/null
  as_postgres env PGPASSWORD="$(secret PG_REPLICATOR_PASSWORD)" "$PG_BIN/pg_basebackup" \
    -h 127.0.0.1 -p "$PG_PRIMARY_PORT" -U replicator -D "$data" -R -X stream -C -S "$PG_SLOT" -c fast \
    || die "pg_basebackup failed"
  echo "port = $PG_REPLICA_PORT" >>"$data/postgresql.auto.conf"
}

up_postgres() {
  pg_init_primary
  pg_start postgres-primary "$PG_PRIMARY_PORT"
  pg_provision
  pg_init_replica
  pg_start postgres-replica "$PG_REPLICA_PORT"
  wait_for "the replica streaming through slot $PG_SLOT (if it never does, 'make down && rm -rf .state')" \
    30 replica_streaming
}

replica_streaming() {
  [[ $(psql_primary -c "SELECT active FROM pg_replication_slots WHERE slot_name = '$PG_SLOT'") == t ]]
}

status_postgres() {
  status_line postgres-primary $PG_PRIMARY_PORT "$("$PG_BIN/postgres" --version | awk '{print $3}')"
  status_line postgres-replica $PG_REPLICA_PORT "streaming (slot $PG_SLOT)"
}
