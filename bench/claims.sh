#!/usr/bin/env bash
# Claim benchmark: one hot sale, batched strategy vs the naive one (one
# SERIALIZABLE transaction per claim on a single counter row), same harness,
# same run. Needs a PostgreSQL server (DATABASE_SERVER, default the local one).
#
#   bench/claims.sh            # full run (about 2 minutes)
#   INVENTORY=5000 bench/claims.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DB=gavel_bench
ADDR=${BENCH_ADDR:-127.0.0.1:18181}
INVENTORY=${INVENTORY:-20000}
NAIVE_INVENTORY=${NAIVE_INVENTORY:-20000}
EXTRA=${EXTRA_BUYERS:-2000}
SOLDOUT_SECONDS=${SOLDOUT_SECONDS:-5}
MAX_SECONDS=${MAX_SECONDS:-20}

source bench/common.sh

server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap stop EXIT

for strategy in batched naive; do
  GAVEL_CLAIMS__STRATEGY=$strategy $GAVEL serve & server=$!
  for _ in $(seq 100); do curl -sf "http://$ADDR/readyz" >/dev/null && break; sleep 0.1; done
  inventory=$INVENTORY; [ "$strategy" = naive ] && inventory=$NAIVE_INVENTORY
  for c in 64 256; do
    $LOADGEN --addr "$ADDR" claims --merchant-key "$KEY" --concurrency "$c" --inventory "$inventory" \
      --extra-buyers "$EXTRA" --soldout-seconds "$SOLDOUT_SECONDS" --max-seconds "$MAX_SECONDS" --label "$strategy"
  done
  stop
done
