#!/usr/bin/env bash
# Makes (or remakes) a scratch database with apalis's and Gavel's migrations
# applied by psql, for writing `query!` macros against live SQL:
#
#   DATABASE_URL=$(scripts/dev-db.sh gavel_dev_me) SQLX_OFFLINE=false \
#     SQLX_OFFLINE_DIR=$PWD/.sqlx cargo build
#
# prints the database's URL. With SQLX_OFFLINE_DIR set the macros also write
# their `.sqlx/` data as they compile; `scripts/sqlx-prepare.sh` remains the
# one that rewrites the whole directory cleanly (stale entries removed).
set -euo pipefail
cd "$(dirname "$0")/.."
db=${1:?usage: scripts/dev-db.sh DATABASE_NAME}
scripts/ensure-postgres.sh >&2
server=${GAVEL_TEST_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
psql -q "$server/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
apalis=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "apalis-postgres"))')
for f in "$apalis"/migrations/*.sql migrations/*.sql; do
  PGOPTIONS="-c client_min_messages=warning" psql -q -v ON_ERROR_STOP=1 "$server/$db" -f "$f" >/dev/null
done
psql -q -v ON_ERROR_STOP=1 "$server/$db" >/dev/null -c "
CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)"
echo "$server/$db"
