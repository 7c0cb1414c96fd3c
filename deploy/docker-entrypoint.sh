#!/bin/sh
# Read the database password from a mounted secret (libpq takes PGPASSWORD, so the URL in the
# config carries no password), bring the schema up to date, apply the policy file INVENTORY_APPLY_POLICY
# names (if any), then run the command (the loop).
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
# The migrate step (as the database's owner, with the audit key): put the deployment's policy file in force.
# Re-applying the policy in force is a no-op, so this runs at every upgrade; a changed file is applied as the
# container's user (inventory), who must stay an admin of it.
if [ -n "${INVENTORY_APPLY_POLICY:-}" ]; then
    inventory policy apply "$INVENTORY_APPLY_POLICY"
fi
exec inventory "$@"
