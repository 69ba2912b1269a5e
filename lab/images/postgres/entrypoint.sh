#!/bin/bash
# First start: initdb with superuser $POSTGRES_USER / $POSTGRES_PASSWORD,
# password (scram) auth from the network. Then run the server in the foreground, serving TLS
# when /tls holds server.crt and server.key.
set -euo pipefail
: "${POSTGRES_USER:?POSTGRES_USER must be set}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  chown postgres "$pwfile"
  runuser -u postgres -- initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  {
    echo "listen_addresses = '*'"
    echo "max_connections = ${POSTGRES_MAX_CONNECTIONS:-200}"
    echo "shared_buffers = ${POSTGRES_SHARED_BUFFERS:-256MB}"
    echo "log_min_duration_statement = 2000"
    echo "log_line_prefix = '%m [%p] %u@%d '"
  } >>"$PGDATA/postgresql.conf"
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  [ -z "${POSTGRES_DB:-}" ] || echo "note: POSTGRES_DB ignored; databases are created by the lab role"
fi
tls=()
if [ -s /tls/server.crt ] && [ -s /tls/server.key ]; then
  # the server wants its key owned by its user, mode 0600: a private copy of the mounted files
  install -d -o postgres -g postgres -m 0700 /run/postgresql/tls
  install -o postgres -g postgres -m 0644 /tls/server.crt /run/postgresql/tls/server.crt
  install -o postgres -g postgres -m 0600 /tls/server.key /run/postgresql/tls/server.key
  tls=(-c ssl=on -c ssl_cert_file=/run/postgresql/tls/server.crt -c ssl_key_file=/run/postgresql/tls/server.key)
fi
exec runuser -u postgres -- postgres -D "$PGDATA" "${tls[@]}"
