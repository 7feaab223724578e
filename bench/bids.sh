#!/usr/bin/env bash
# Bid benchmark: one hot auction, the batched strategy (a lane per auction,
# many bids per commit) vs the naive one (one SERIALIZABLE transaction per
# bid), same harness, same run, 64 and 256 concurrent bidders. Every attempt
# (accepted or refused) is stored durably before its answer.
#
#   bench/bids.sh                 # about 1 minute after the build
#   SECONDS_PER_RUN=15 bench/bids.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DB=gavel_bench_bids
ADDR=${BENCH_ADDR:-127.0.0.1:18182}
RUN=${SECONDS_PER_RUN:-8}
BIDDERS=${BIDDERS:-10000}

source bench/common.sh

server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap stop EXIT

for strategy in batched naive; do
  GAVEL_AUCTIONS__BID_STRATEGY=$strategy $GAVEL serve & server=$!
  for _ in $(seq 100); do curl -sf "http://$ADDR/readyz" >/dev/null && break; sleep 0.1; done
  for c in 64 256; do
    $LOADGEN --addr "$ADDR" bids --merchant-key "$KEY" --concurrency "$c" --bidders "$BIDDERS" \
      --seconds "$RUN" --label "$strategy"
  done
  stop
done
