#!/usr/bin/env bash
# Checkout benchmark: HOLDERS buyers each hold a unit of one sale, then all
# check out at the same moment, against the Stripe stand-in with LATENCY_MS
# added to every Stripe call. Needs a PostgreSQL server (DATABASE_SERVER,
# default the local one).
#
#   bench/checkout.sh                  # 1,000 holders, 50 ms Stripe latency
#   HOLDERS=3000 LATENCY_MS=100 bench/checkout.sh
#
# Then a steady phase: STEADY_HOLDERS checkouts started at STEADY_RATE per
# second (the seeds' goal is 10,000 inside a 3-minute hold, about 56/s).
set -euo pipefail
cd "$(dirname "$0")/.."

DB=gavel_bench_checkout
ADDR=${BENCH_ADDR:-127.0.0.1:18182}
STRIPE_ADDR=${BENCH_STRIPE_ADDR:-127.0.0.1:18183}
HOLDERS=${HOLDERS:-1000}
LATENCY_MS=${LATENCY_MS:-50}
RUNS=${RUNS:-2}
STEADY_HOLDERS=${STEADY_HOLDERS:-3000}
STEADY_RATE=${STEADY_RATE:-150}

source bench/common.sh
export STRIPE_API_BASE="http://$STRIPE_ADDR/" STRIPE_WEBHOOK_SECRET=whsec_bench

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap stop EXIT
$GAVEL dev stripe --addr "$STRIPE_ADDR" --latency-ms "$LATENCY_MS" \
  --webhook-url "http://$ADDR/v1/stripe/webhook" --webhook-secret whsec_bench >/dev/null & pids+=($!)
$GAVEL serve & pids+=($!)
for _ in $(seq 100); do curl -sf "http://$ADDR/readyz" >/dev/null && break; sleep 0.1; done

for run in $(seq "$RUNS"); do
  $LOADGEN --addr "$ADDR" checkout --merchant-key "$KEY" --holders "$HOLDERS" --label "burst, stripe+${LATENCY_MS}ms, run $run"
done
if [ "$STEADY_HOLDERS" -gt 0 ]; then
  $LOADGEN --addr "$ADDR" checkout --merchant-key "$KEY" --holders "$STEADY_HOLDERS" --rate "$STEADY_RATE" \
    --label "steady ${STEADY_RATE}/s, stripe+${LATENCY_MS}ms"
fi
