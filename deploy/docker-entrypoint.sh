#!/bin/sh
# Read the database password from a mounted secret (libpq takes PGPASSWORD, so the URL in the
# config carries no password), bring the schema up to date, then run the command (the loop).
set -eu
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ]; then
    PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
    export PGPASSWORD
fi
inventory db upgrade
exec inventory "$@"
