#!/bin/sh
# Read the database password from a mounted secret (libpq takes PGPASSWORD, so the URL in the
# config carries no password), bring the schema up to date, then run the command (the loop).
# The PostgreSQL runtime role cannot migrate: where it runs, INVENTORY_SKIP_UPGRADE=1 and the owner
# migrates beforehand (docker-compose.yml's migrate service, the Kubernetes migrate Job).
set -eu
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ] && [ -r "$POSTGRES_PASSWORD_FILE" ]; then
    PGPASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
    export PGPASSWORD
fi
if [ "${INVENTORY_SKIP_UPGRADE:-0}" != 1 ]; then
    inventory db upgrade
fi
exec inventory "$@"
