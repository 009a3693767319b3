#!/bin/bash
# Runs once, when the primary's data directory is first made (the image's
# /docker-entrypoint-initdb.d): one login role and one database per service,
# the replication role, and the replica's way in. Passwords: postgres-secrets.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
  -v replicator_pw="$PG_REPLICATOR_PASSWORD" \
  -v api_pw="$PG_PASSWORD_TENX_API" -v auth_pw="$PG_PASSWORD_TENX_AUTH" \
  -v notify_pw="$PG_PASSWORD_TENX_NOTIFY" -v search_indexer_pw="$PG_PASSWORD_TENX_SEARCH_INDEXER" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'replicator_pw';
CREATE ROLE tenx_api LOGIN PASSWORD :'api_pw';
CREATE ROLE tenx_auth LOGIN PASSWORD :'auth_pw';
CREATE ROLE tenx_notify LOGIN PASSWORD :'notify_pw';
CREATE ROLE tenx_search_indexer LOGIN PASSWORD :'search_indexer_pw';
CREATE DATABASE tenx_api OWNER tenx_api;
CREATE DATABASE tenx_auth OWNER tenx_auth;
CREATE DATABASE tenx_notify OWNER tenx_notify;
CREATE DATABASE tenx_search_indexer OWNER tenx_search_indexer;
REVOKE ALL ON DATABASE tenx_api, tenx_auth, tenx_notify, tenx_search_indexer FROM PUBLIC;
SQL
echo "host replication replicator all scram-sha-256" >>"$PGDATA/pg_hba.conf"
