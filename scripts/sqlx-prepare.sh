#!/usr/bin/env bash
# Refreshes the compile-time query data in `.sqlx/` (commit it), or with
# `--check` fails if it is stale: a query whose text, columns or types no longer
# match the migrations.
#
# It builds a scratch database from the migration files themselves (apalis's,
# then Gavel's, applied with psql by scripts/dev-db.sh), so it never needs a build of Gavel (which
# would need the very data it makes), then runs `cargo sqlx prepare` on it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
if ! cargo sqlx --version >/dev/null 2>&1; then
  echo "sqlx-prepare: installing sqlx-cli (once, about 2.5 min)" >&2
  cargo install sqlx-cli --version 0.9.0 --locked --no-default-features --features postgres,rustls
fi
server=${GAVEL_TEST_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
# One scratch database per run: two checkouts may prepare at once on one server.
db=gavel_sqlx_prepare_$$
url=$(scripts/dev-db.sh "$db" 2>/dev/null)
status=0
DATABASE_URL="$url" cargo sqlx prepare --workspace "$@" || status=$?
psql -q "$server/postgres" -c "DROP DATABASE IF EXISTS $db" >/dev/null
exit $status
