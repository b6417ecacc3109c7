#!/usr/bin/env bash
# First start of the compose PostgreSQL: the application's login role. It is a member of
# ledger_app (created here if the migrations have not yet run; they leave it as it is),
# which owns nothing and holds no UPDATE, DELETE or TRUNCATE on the events table.
set -euo pipefail
psql --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" --set ON_ERROR_STOP=1 \
    --set app_password="$LEDGER_DB_PASSWORD" <<'SQL'
SELECT 'CREATE ROLE ledger_app NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_app')\gexec
CREATE ROLE ledger LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password' IN ROLE ledger_app;
SQL
