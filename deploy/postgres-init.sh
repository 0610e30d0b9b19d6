#!/bin/sh
# First start of the PostgreSQL container only (docker-entrypoint-initdb.d):
# the registry and the transfer log each get a database and a role of their
# own, with passwords read from their secret files, so neither holder can
# read or write the other's data.
set -eu
SECRETS="${SECRETS_DIR:-/run/secrets}"

role_with_database() {
    role="$1" password_file="$2"
    password="$(cat "$password_file")"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
        --set=role="$role" --set=password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"role" OWNER :"role";
REVOKE ALL ON DATABASE :"role" FROM PUBLIC;
SQL
}

role_with_database registry "$SECRETS/registry_db_password"
role_with_database transfer_log "$SECRETS/transfer_log_db_password"
