#!/usr/bin/env bash
# Sale-start fan-out benchmark: a sale with N recipients (default 100,000,
# seeded with bulk SQL: every buyer a deal subscriber with one push device,
# half APNs, half FCM; every EMAIL_EVERY-th buyer also wants email), the
# stand-ins as their own processes (`gavel dev apns|fcm|smtp`), release
# builds. Measures, from the sale's start (its `sale.started` event) to the
# last delivery recorded `sent`: messages/s per channel and the time to the
# first delivery. Needs a PostgreSQL server (DATABASE_SERVER, default local).
#
#   bench/notify.sh                 # 100,000 recipients (about 2 minutes)
#   N=20000 bench/notify.sh
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100000}
EMAIL_EVERY=${EMAIL_EVERY:-10}
DB=${DB:-gavel_bench_notify}
ADDR=${BENCH_ADDR:-127.0.0.1:18191}
OPS=${BENCH_OPS:-127.0.0.1:18192}
NOTIFIER_OPS=${BENCH_NOTIFIER_OPS:-127.0.0.1:18193}
SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}
WORK=$(mktemp -d)

# PROFILE=debug measures the debug build instead (indicative only).
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then cargo build --release -q -p gavel; fi   # debug: the binary the tests built
GAVEL=target/$PROFILE/gavel

pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap stop EXIT

psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="$SERVER/$DB" GAVEL_ENV=bench GAVEL_LOG=warn GAVEL_RECONCILIATION__DAILY=false
$GAVEL migrate >/dev/null 2>&1
KEY=$($GAVEL merchants create --name bench | grep -o '"api_key": *"[^"]*"' | cut -d'"' -f4)

# The stand-ins, each its own process.
$GAVEL dev apns --addr 127.0.0.1:18112 --key-file "$WORK/apns.p8" >"$WORK/apns.log" 2>&1 & pids+=($!); APNS_PID=$!
$GAVEL dev fcm --addr 127.0.0.1:18113 --service-account-out "$WORK/fcm.json" >"$WORK/fcm.log" 2>&1 & pids+=($!); FCM_PID=$!
$GAVEL dev smtp --addr 127.0.0.1:18125 --control-addr 127.0.0.1:18126 >"$WORK/smtp.log" 2>&1 & pids+=($!); SMTP_PID=$!
for _ in $(seq 100); do [ -s "$WORK/apns.p8" ] && [ -s "$WORK/fcm.json" ] && break; sleep 0.1; done
export APNS_KEY_FILE="$WORK/apns.p8" APNS_KEY_ID=STANDINKEY APNS_TEAM_ID=STANDINTEAM APNS_TOPIC=dev.gavel.app \
  APNS_ENDPOINT=http://127.0.0.1:18112 FCM_PROJECT_ID=gavel-dev FCM_SERVICE_ACCOUNT_FILE="$WORK/fcm.json" \
  FCM_API_BASE=http://127.0.0.1:18113 SMTP_URL=smtp://127.0.0.1:18125

# API + workers (they start the sale), and the notifier as its own process.
GAVEL_HTTP_ADDR=$ADDR GAVEL_OPS_ADDR=$OPS $GAVEL serve --role api --role workers & pids+=($!); API_PID=$!
GAVEL_HTTP_ADDR=$NOTIFIER_OPS GAVEL_OPS_ADDR=$NOTIFIER_OPS \
  GAVEL_NOTIFIER__DELIVERY_BATCH=${DELIVERY_BATCH:-1000} GAVEL_NOTIFIER__CONCURRENCY=${CONCURRENCY:-512} \
  GAVEL_NOTIFIER__DELIVERY_WORKERS=${WORKERS:-4} GAVEL_NOTIFIER__POOL_SIZE=${POOL:-12} \
  GAVEL_NOTIFIER__SMTP_POOL_SIZE=${SMTP_POOL:-16} GAVEL_NOTIFIER__POLL_INTERVAL_MS=${POLL_MS:-50} \
  $GAVEL serve --role notifier & pids+=($!); NOTIFIER_PID=$!
for _ in $(seq 100); do curl -sf "http://$ADDR/readyz" >/dev/null && break; sleep 0.1; done

api() { curl -sf -X POST "http://$ADDR$1" -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -H "Idempotency-Key: $(cat /proc/sys/kernel/random/uuid)" -d "$2"; }
PRODUCT=$(api /v1/products '{"title":"Bench sneakers"}' | grep -o '"id": *"[^"]*"' | head -1 | cut -d'"' -f4)

echo "seeding $N recipients…"
psql -q "$DATABASE_URL" <<SQL
INSERT INTO buyers (id, email, password_hash, name)
SELECT u.id, 'bench' || u.n || '@notify.bench', 'not-a-login', 'Buyer ' || u.n
FROM UNNEST(ARRAY(SELECT gen_random_uuid() FROM generate_series(1, $N)), ARRAY(SELECT generate_series(1, $N)))
     AS u(id, n);
INSERT INTO notification_preferences (buyer_id, email, push, deals)
SELECT id, (split_part(split_part(email, '@', 1), 'bench', 2)::int % $EMAIL_EVERY) = 0, true, true FROM buyers;
INSERT INTO devices (id, buyer_id, platform, token)
SELECT gen_random_uuid(), id,
       CASE WHEN n % ${APNS_EVERY:-2} = 0 THEN 'apns' ELSE 'fcm' END,
       CASE WHEN n % ${APNS_EVERY:-2} = 0 THEN lpad(to_hex(n), 64, '0') ELSE 'fcm-bench-' || n END
FROM (SELECT id, split_part(split_part(email, '@', 1), 'bench', 2)::int AS n FROM buyers) b;
ANALYZE buyers; ANALYZE notification_preferences; ANALYZE devices;
SQL

LEAD=${LEAD_SECONDS:-60}
STARTS=$(date -u -d "+$LEAD seconds" +%Y-%m-%dT%H:%M:%SZ)
SALE=$(api /v1/sales "{\"product_id\":\"$PRODUCT\",\"price\":1999,\"currency\":\"usd\",\"inventory\":100,\"starts_at\":\"$STARTS\"}" \
  | grep -o '"id": *"[^"]*"' | head -1 | cut -d'"' -f4)
SALE_UUID=${SALE#sale_}
echo "sale $SALE starts at $STARTS; preparing…"
# CPU time (user + system, clock ticks) of each process from the start to the
# last delivery: what the stand-ins cost beside Gavel and PostgreSQL.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0 p; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
cpu_now() { echo "$(ticks "$NOTIFIER_PID") $(ticks "$API_PID") $(ticks "$APNS_PID") $(ticks "$FCM_PID") $(ticks "$SMTP_PID") $(pg_ticks)"; }
cpu_start=""
for _ in $(seq $((LEAD * 10 + 600))); do
  # Cheap probes only (the partial indexes of held, pending and sending
  # rows): a count over the whole sale every half second would be a scan of
  # 110,000 rows competing with the deliveries it measures.
  status=$(psql -tA "$DATABASE_URL" -c "SELECT
      (EXISTS (SELECT 1 FROM deliveries WHERE sale_id = '$SALE_UUID' AND status = 'pending')
       OR EXISTS (SELECT 1 FROM deliveries WHERE sale_id = '$SALE_UUID' AND status = 'sending'))::int || ' ' ||
      (SELECT count(*) FROM sale_notice_preparations WHERE sale_id = '$SALE_UUID' AND prepared_at IS NOT NULL) || ' ' ||
      EXISTS (SELECT 1 FROM deliveries WHERE sale_id = '$SALE_UUID' AND status = 'held')::int || ' ' ||
      (SELECT count(*) FROM events WHERE type = 'sale.started')")
  read -r open prepared held started <<<"$status"
  if [ "$started" = 1 ] && [ -z "$cpu_start" ]; then
    cpu_start=$(cpu_now)
    # PERF=FILE: a system-wide CPU profile of the delivery (perf report -i FILE --sort comm,dso,sym).
    if [ -n "${PERF:-}" ]; then perf record -q -e cpu-clock -F 499 -a -g -o "$PERF" >/dev/null 2>&1 & PERF_PID=$!; fi
  fi
  if [ "$started" = 1 ] && [ "$prepared" = 1 ] && [ "$open" = 0 ] && [ "$held" = 0 ]; then break; fi
  sleep 0.5
done
cpu_end=$(cpu_now)
if [ -n "${PERF_PID:-}" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" 2>/dev/null || true; fi

echo "build: $PROFILE; machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB (shared with other work: figures are indicative)"
psql "$DATABASE_URL" <<SQL
\pset footer off
SELECT p.recipients, p.prepared_at - e.created_at AS prepared_before_start_negative
FROM sale_notice_preparations p, events e WHERE p.sale_id = '$SALE_UUID' AND e.type = 'sale.started';
SELECT d.channel, count(*) AS sent,
       round(extract(epoch FROM min(d.sent_at) - e.created_at)::numeric, 3) AS first_after_start_s,
       round(extract(epoch FROM max(d.sent_at) - e.created_at)::numeric, 3) AS last_after_start_s,
       round(count(*) / greatest(extract(epoch FROM max(d.sent_at) - min(d.sent_at)), 0.001)::numeric) AS per_second
FROM deliveries d, events e
WHERE d.sale_id = '$SALE_UUID' AND d.status = 'sent' AND e.type = 'sale.started'
GROUP BY d.channel, e.created_at ORDER BY d.channel;
SELECT status, count(*) FROM deliveries WHERE sale_id = '$SALE_UUID' GROUP BY status;
SQL
read -r -a c0 <<<"$cpu_start"; read -r -a c1 <<<"$cpu_end"
hz=$(getconf CLK_TCK); names=(notifier api+workers apns-standin fcm-standin smtp-standin postgres)
echo -n "CPU seconds from the start (first seen) to the last delivery:"
for i in "${!names[@]}"; do printf ' %s %.1f' "${names[$i]}" "$(echo "(${c1[$i]} - ${c0[$i]}) / $hz" | bc -l)"; done; echo
echo "stand-ins received: apns $(curl -s http://127.0.0.1:18112/_control/deliveries | grep -o '"apns_id"' | wc -l)," \
  "fcm $(curl -s http://127.0.0.1:18113/_control/messages | grep -o '"received_at"' | wc -l)," \
  "smtp $(curl -s http://127.0.0.1:18126/messages | grep -o '"received_at"' | wc -l)"
