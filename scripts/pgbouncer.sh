#!/usr/bin/env bash
# PgBouncer in transaction mode in front of PostgreSQL: compose's `pgbouncer` service. The workers' connections (one
# per worker process) share at most PGBOUNCER_POOL_SIZE server connections, so a fleet larger than PostgreSQL's
# max_connections runs (docs: running at scale). Configured from the environment as it starts: no secret in the image.
#   POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB   the database, and the one user the clients log in as
#   PGBOUNCER_UPSTREAM   host:port of PostgreSQL (default postgres:5432)
#   PGBOUNCER_PORT       where clients connect (default 6432)
#   PGBOUNCER_POOL_SIZE  server connections per database (default 20)
set -euo pipefail
: "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_DB:?}"
upstream=${PGBOUNCER_UPSTREAM:-postgres:5432}
dir=$(mktemp -d)
umask 077
printf '"%s" "%s"\n' "$POSTGRES_USER" "$POSTGRES_PASSWORD" >"$dir/users.txt"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
$POSTGRES_DB = host=${upstream%:*} port=${upstream##*:} dbname=$POSTGRES_DB
[pgbouncer]
listen_addr = 0.0.0.0
listen_port = ${PGBOUNCER_PORT:-6432}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
max_client_conn = ${PGBOUNCER_MAX_CLIENTS:-2000}
ignore_startup_parameters = extra_float_digits
INI
exec pgbouncer "$dir/pgbouncer.ini"
