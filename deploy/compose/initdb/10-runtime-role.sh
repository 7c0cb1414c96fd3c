#!/bin/sh
# Runs once, when PostgreSQL initialises its data directory: the runtime role the service logs in as.
# It owns nothing; the migrate service grants it what it needs (`inventory db grant inventory --apply`).
set -eu
password="$(cat "$INVENTORY_RUNTIME_PASSWORD_FILE")"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -v password="$password" <<'SQL'
CREATE ROLE inventory LOGIN PASSWORD :'password';
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
