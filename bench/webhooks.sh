#!/usr/bin/env bash
# Merchant webhooks benchmark (issue 12), release build, every part its own
# process: the receiver stand-ins (`gavel dev webhook-receiver --quiet`), the
# dispatcher (`gavel serve --role workers`), PostgreSQL. Ten merchants with
# one endpoint each; N `order.paid` events are committed into the outbox in
# one statement; each delivery's attempt is a committed `webhook_attempts` row.
#
# 1. Throughput: all ten endpoints healthy; deliveries/s from the events'
#    commit to the last delivery recorded delivered.
# 2. Isolation: the first endpoint points at a receiver that never answers
#    (each attempt waits for the full 15 s timeout); the other nine's delivery
#    delay (event commit → delivery recorded), p50 / p99 / max.
#
#   bench/webhooks.sh                 # N=20000 (2,000 per endpoint in phase 2)
#   N=50000 bench/webhooks.sh
#   SKIP_BUILD=1 bench/webhooks.sh    # use the release binary as it is
# The dispatcher's log goes to $LOG (default /tmp/gavel-bench-webhooks.log).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-20000}
ENDPOINTS=10
PER=$((N / ENDPOINTS))
HANG_PER=$((PER < 2000 ? PER : 2000))
DB=${DB:-gavel_bench_webhooks}
RECEIVER=${BENCH_RECEIVER:-127.0.0.1:18291}
HANGING=${BENCH_HANGING:-127.0.0.1:18292}
OPS=${BENCH_OPS:-127.0.0.1:18293}
SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}

if [ -z "${SKIP_BUILD:-}" ]; then cargo build --release -q -p gavel; fi
GAVEL=${GAVEL_BIN:-target/release/gavel}   # GAVEL_BIN=target/debug/gavel SKIP_BUILD=1: a smoke run

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop EXIT

export GAVEL_ENV=bench GAVEL_LOG=warn GAVEL_OPS_ADDR=$OPS GAVEL_HTTP_ADDR=$OPS \
  GAVEL_WEBHOOKS__ALLOW_PRIVATE_TARGETS=true GAVEL_WEBHOOKS__TIMEOUT_MS=15000 \
  GAVEL_WEBHOOKS__POLL_INTERVAL_MS=${POLL_MS:-20} GAVEL_WEBHOOKS__CONCURRENCY=${CONCURRENCY:-512} \
  GAVEL_WEBHOOKS__PER_ENDPOINT_CONCURRENCY=${PER_ENDPOINT:-32} GAVEL_WEBHOOKS__FANOUT_BATCH=${FANOUT_BATCH:-1000} \
  GAVEL_WEBHOOKS__POOL_SIZE=${POOL:-8} GAVEL_RECONCILIATION__DAILY=false
LOG=${LOG:-/tmp/gavel-bench-webhooks.log}
: >"$LOG"

$GAVEL dev webhook-receiver --quiet --addr "$RECEIVER" >/dev/null & pids+=($!)
$GAVEL dev webhook-receiver --quiet --hang --addr "$HANGING" >/dev/null & pids+=($!)

echo "binary: $GAVEL; machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB," \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"

# run PHASE PER_ENDPOINT FIRST_URL: a fresh database, ten merchants, the dispatcher, the flood.
run() {
  local phase=$1 per=$2 first=$3 dispatcher
  psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
  export DATABASE_URL="$SERVER/$DB"
  $GAVEL migrate >/dev/null 2>&1
  for i in $(seq 0 $((ENDPOINTS - 1))); do
    local url="http://$RECEIVER/m$i"
    if [ "$i" = 0 ]; then url=$first; fi
    $GAVEL merchants create --name "bench $i" --webhook-url "$url" >/dev/null
  done
  $GAVEL serve --role workers >>"$LOG" 2>&1 & dispatcher=$!
  pids+=($dispatcher)
  for _ in $(seq 100); do curl -sf "http://$OPS/readyz" >/dev/null && break; sleep 0.1; done
  psql -q "$DATABASE_URL" -c "
    INSERT INTO events (id, merchant_id, type, subject_id, dedupe_key, payload)
    SELECT gen_random_uuid(), m.id, 'order.paid', 'ord_' || g, 'bench:' || m.id || ':' || g,
           jsonb_build_object('order_id', 'ord_' || g, 'amount', 1999, 'currency', 'usd')
    FROM merchants m, generate_series(1, $per) g"
  local want=$((per * ENDPOINTS))
  if [ "$phase" = isolation ]; then want=$((per * (ENDPOINTS - 1))); fi
  # Poll (10 min at most) in one psql session: a psql started every 0.1 s
  # cost a tenth of the machine's CPU beside the run. The figures come from
  # the rows' own timestamps, not from when this loop saw them.
  coproc POLL { psql -qtA "$DATABASE_URL" 2>&1; }
  for _ in $(seq 3000); do
    echo "SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered';" >&"${POLL[1]}"
    local done_n=0
    read -r -t 30 done_n <&"${POLL[0]}" || break
    [ "$done_n" -ge "$want" ] && break
    sleep 0.2
  done
  exec {POLL[1]}>&-
  wait "$POLL_PID" 2>/dev/null || true
  if [ "$phase" = throughput ]; then
    psql "$DATABASE_URL" -P footer=off -c "
      SELECT count(*) AS delivered,
             round(extract(epoch FROM max(d.delivered_at) - min(e.created_at))::numeric, 3) AS seconds,
             round(count(*) / extract(epoch FROM max(d.delivered_at) - min(e.created_at))::numeric) AS per_second,
             (SELECT count(*) FROM webhook_attempts) AS attempts_logged
      FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.status = 'delivered'"
  else
    psql "$DATABASE_URL" -P footer=off -c "
      SELECT count(*) AS delivered_to_the_nine,
             round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric) AS p50_ms,
             round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric) AS p99_ms,
             round(max(ms)::numeric) AS max_ms
      FROM (SELECT extract(epoch FROM d.delivered_at - e.created_at) * 1000 AS ms
            FROM webhook_deliveries d JOIN events e ON e.id = d.event_id WHERE d.status = 'delivered') t" \
      -c "SELECT count(*) FILTER (WHERE status = 'sending') AS hanging_in_flight,
                 count(*) FILTER (WHERE status = 'pending') AS hanging_waiting
          FROM webhook_deliveries d JOIN webhook_endpoints w ON w.id = d.endpoint_id
          WHERE w.url = '$first'"
  fi
  kill "$dispatcher" 2>/dev/null || true
  wait "$dispatcher" 2>/dev/null || true
}

echo "1. throughput: $((PER * ENDPOINTS)) deliveries to $ENDPOINTS healthy endpoints"
run throughput "$PER" "http://$RECEIVER/m0"
echo "2. isolation: $((HANG_PER * (ENDPOINTS - 1))) deliveries to 9 healthy endpoints beside 1 hanging (15 s timeout)"
run isolation "$HANG_PER" "http://$HANGING/slow"
