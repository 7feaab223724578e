#!/usr/bin/env bash
# Brings Gavel up with a demo: a local PostgreSQL (started or installed if
# needed), a demo merchant, buyer, sale and auction, and the SMTP/APNs/FCM
# stand-ins with the notifier; prints keys, curl examples and where messages show up.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then scripts/ensure-postgres.sh; fi
exec cargo run --release --bin gavel -- demo
