#!/bin/sh
# The portal's two database roles, made once by the postgres image when it initialises an empty
# data directory (docker-compose.yml mounts this file into /docker-entrypoint-initdb.d):
#
#   PORTAL_DB_OWNER (portal_owner)  owns the database and its schema; `manage.py migrate` runs
#                                   as it (DATABASE_OWNER_URL) and grants the other role what the
#                                   portal needs.
#   PORTAL_DB_USER (portal_app)     web, worker and beat run as it (DATABASE_URL): no superuser,
#                                   owns nothing, may only read and append to the audit tables.
#
# Passwords: PORTAL_DB_OWNER_PASSWORD, PORTAL_DB_PASSWORD. The image's superuser
# (POSTGRES_USER) runs it, on POSTGRES_DB; by hand on another cluster, set those two and the
# libpq variables (PGHOST, PGPORT) and run `sh docker/postgres-init.sh`. POSIX sh, and no
# `set -u`, because the image sources scripts that are not executable.
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v db="$POSTGRES_DB" \
  -v owner="${PORTAL_DB_OWNER:-portal_owner}" \
  -v runtime="${PORTAL_DB_USER:-portal_app}" \
  -v owner_password="${PORTAL_DB_OWNER_PASSWORD:?set PORTAL_DB_OWNER_PASSWORD}" \
  -v runtime_password="${PORTAL_DB_PASSWORD:?set PORTAL_DB_PASSWORD}" <<'SQL'
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_password';
CREATE ROLE :"runtime" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'runtime_password';
-- The database's owner owns its public schema too (PostgreSQL 15's pg_database_owner): the
-- owner role creates the portal's tables there, the runtime role cannot create anything.
ALTER DATABASE :"db" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"runtime";
SQL
