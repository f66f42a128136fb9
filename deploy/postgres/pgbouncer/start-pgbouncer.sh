#!/bin/sh
# Starts PgBouncer in front of the instance's PostgreSQL (the docker-compose.yml service "pgbouncer").
#
# Every Dagster process connects here instead of to PostgreSQL. Dagster's run workers open a new
# connection for every event they store (dagster-postgres holds none open), and a new PostgreSQL
# connection costs a server process and a SCRAM-SHA-256 login; PgBouncer hands each one an open server
# connection instead (docs/deployment.md has the figures).
#
# Reads POSTGRES_HOST, POSTGRES_PORT (5432), POSTGRES_DB, POSTGRES_USER and POSTGRES_PASSWORD, and listens on
# PGBOUNCER_LISTEN_ADDR (0.0.0.0) port PGBOUNCER_PORT (6432). Its files go to PGBOUNCER_RUNTIME_DIR
# (/tmp/pgbouncer): they hold the user's SCRAM verifier, so the folder is the running user's alone.
set -eu

: "${POSTGRES_HOST:?set POSTGRES_HOST to the PostgreSQL server PgBouncer forwards to}"
: "${POSTGRES_DB:?set POSTGRES_DB to the instance database}"
: "${POSTGRES_USER:?set POSTGRES_USER to the user Dagster connects as}"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD to that user password}"
POSTGRES_PORT="${POSTGRES_PORT:-5432}"
RUNTIME_DIR="${PGBOUNCER_RUNTIME_DIR:-/tmp/pgbouncer}"

umask 077
mkdir -p "$RUNTIME_DIR"

# PgBouncer checks a client's login against the user's SCRAM verifier, read from PostgreSQL once here.
# With the plain password in its auth file it would redo the key derivation on every login, which made
# each connection slower than going to PostgreSQL directly.
export PGPASSWORD="$POSTGRES_PASSWORD"
attempt=0
until verifier=$(psql -h "$POSTGRES_HOST" -p "$POSTGRES_PORT" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -Atqc \
  "select rolpassword from pg_authid where rolname = current_user" 2>"$RUNTIME_DIR/psql.err"); do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "error: cannot read the SCRAM verifier of $POSTGRES_USER from $POSTGRES_HOST:$POSTGRES_PORT/$POSTGRES_DB:" >&2
    cat "$RUNTIME_DIR/psql.err" >&2
    exit 1
  fi
  sleep 1
done
unset PGPASSWORD
case "$verifier" in
  SCRAM-SHA-256\$*) ;;
  *)
    echo "error: $POSTGRES_USER's password is not stored as SCRAM-SHA-256 (set password_encryption = scram-sha-256 and the password again)" >&2
    exit 1
    ;;
esac

printf '"%s" "%s"\n' "$POSTGRES_USER" "$verifier" >"$RUNTIME_DIR/userlist.txt"
cat >"$RUNTIME_DIR/pgbouncer.ini" <<INI
[databases]
$POSTGRES_DB = host=$POSTGRES_HOST port=$POSTGRES_PORT dbname=$POSTGRES_DB

[pgbouncer]
listen_addr = ${PGBOUNCER_LISTEN_ADDR:-0.0.0.0}
listen_port = ${PGBOUNCER_PORT:-6432}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $RUNTIME_DIR/userlist.txt
; Session pooling: a server connection serves one client connection from its login to its close, so
; every statement behaves as on PostgreSQL itself (Dagster's processes close theirs after each write).
pool_mode = session
default_pool_size = 50
max_client_conn = 500
stats_users = $POSTGRES_USER
; Thousands of logins a minute during a backfill: logging each would drown the log.
log_connections = 0
log_disconnections = 0
INI

# PgBouncer needs the password no more: it keeps the verifier alone.
unset POSTGRES_PASSWORD
exec pgbouncer "$RUNTIME_DIR/pgbouncer.ini"
