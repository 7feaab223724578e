#!/usr/bin/env bash
# Reconciliation benchmark: N payments (default 1,000,000) seeded in Gavel's
# ledger and in the Stripe stand-in (`gavel dev seed-payments`, bulk), then one
# `gavel reconcile` over their day, timed, with the peak RSS of the gavel
# process that reconciles. The stand-in runs as its own process (`gavel dev
# stripe`), so its memory is not counted. Needs a PostgreSQL server
# (DATABASE_SERVER, default the local one).
#
#   bench/reconcile.sh              # 1,000,000 payments
#   N=100000 bench/reconcile.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
DB=gavel_bench_reconcile
STRIPE_ADDR=${BENCH_STRIPE_ADDR:-127.0.0.1:18191}
SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
DAY=2026-01-01

cargo build --release -q -p gavel
GAVEL=target/release/gavel
psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="$SERVER/$DB" GAVEL_ENV=bench GAVEL_LOG=warn STRIPE_API_BASE="http://$STRIPE_ADDR/"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

$GAVEL dev stripe --addr "$STRIPE_ADDR" >/dev/null & stripe=$!
trap 'kill $stripe 2>/dev/null; wait $stripe 2>/dev/null' EXIT
sleep 0.5
$GAVEL migrate
start=$(date +%s.%N)
$GAVEL dev seed-payments "$N" --stripe "http://$STRIPE_ADDR" --day "$DAY" >/dev/null
echo "seeded $N payments in $(echo "$(date +%s.%N) - $start" | bc) s"
# A few discrepancies, so the run has something to report.
for pi in $(curl -sf -H 'Authorization: Bearer sk_test_bench' "http://$STRIPE_ADDR/v1/payment_intents?limit=3" \
            | grep -o '"id":"pi_[A-Za-z0-9]*"' | cut -d'"' -f4); do
  curl -sf -X POST -H 'content-type: application/json' -d '{"amount": 1}' \
    "http://$STRIPE_ADDR/_control/payment_intents/$pi" >/dev/null
done
/usr/bin/time -f "reconcile: %e s wall, %M KiB peak RSS (gavel)" \
  $GAVEL reconcile --from "${DAY}T00:00:00Z" --to "2026-01-02T00:00:00Z" --csv /tmp/gavel-bench-reconcile.csv \
  | grep -E '"(status|payments|refunds)"|count' | tr -s ' ' | paste -sd' '
echo "stand-in RSS: $(awk '/VmHWM/ {print $2, $3}' /proc/$stripe/status) (not counted)"
