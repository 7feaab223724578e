#!/usr/bin/env bash
# Live-feed latency: 1,000 SSE subscribers on one auction, events committed
# through `feed::append` at RATE a second; latency from just before each
# commit to its receipt by every subscriber (p50/p99). Needs a PostgreSQL
# server (DATABASE_SERVER, default the local one).
#
#   bench/feed.sh                         # 1,000 subscribers, 500 events at 50/s
#   SUBSCRIBERS=200 EVENTS=200 bench/feed.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DB=gavel_bench_feed
ADDR=${BENCH_ADDR:-127.0.0.1:18182}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
EVENTS=${EVENTS:-500}
RATE=${RATE:-50}

source bench/common.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

server=""
stop() { [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null; server=""; }
trap stop EXIT

$GAVEL serve --role api & server=$!
for _ in $(seq 100); do curl -sf "http://$ADDR/readyz" >/dev/null && break; sleep 0.1; done
$LOADGEN --addr "$ADDR" feed --merchant-key "$KEY" --subscribers "$SUBSCRIBERS" --events "$EVENTS" --rate "$RATE"
stop
