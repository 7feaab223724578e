#!/usr/bin/env bash
# Refreshes the compile-time query data in `.sqlx/` (commit it), or with
# `--check` fails if it is stale: a query whose text, columns or types no longer
# match the migrations.
#
# It builds a scratch database from the migration files themselves (apalis's,
# then Gavel's, applied with psql), so it never needs a build of Gavel (which
# would need the very data it makes), then runs `cargo sqlx prepare` on it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
if ! cargo sqlx --version >/dev/null 2>&1; then
  echo "sqlx-prepare: installing sqlx-cli (once, about 2.5 min)" >&2
  cargo install sqlx-cli --version 0.9.0 --locked --no-default-features --features postgres,rustls
fi
server=${GAVEL_TEST_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
# One scratch database per run: helpers sharing a server must not drop each other's.
db=gavel_sqlx_prepare_$$
psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
apalis=$(cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in meta["packages"] if p["name"] == "apalis-postgres"))')
for f in "$apalis"/migrations/*.sql migrations/*.sql; do
  psql -q -v ON_ERROR_STOP=1 "$server/$db" -f "$f" >/dev/null
done
status=0
DATABASE_URL="$server/$db" cargo sqlx prepare --workspace "$@" || status=$?
psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
exit $status
