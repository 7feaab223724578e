#!/usr/bin/env bash
# Runs every test: unit tests and the end-to-end suite (real HTTP, real
# PostgreSQL on 127.0.0.1:5432, which this script starts or installs if needed).
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh || exit 1
log=$(mktemp)
cargo test --workspace --all-targets "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
