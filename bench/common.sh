# Shared by the bench scripts: release binaries, a fresh database, the bench
# config and a merchant. Source it after setting DB and ADDR; it sets SERVER,
# GAVEL, LOADGEN, KEY and exports the server's environment.
SERVER=${DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}

# The server and the load generator (its own crate, bench/loadgen).
cargo build --release -q -p gavel -p gavel-loadgen
GAVEL=target/release/gavel
LOADGEN=target/release/gavel-loadgen

psql "$SERVER/postgres" -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="$SERVER/$DB" GAVEL_ENV=bench GAVEL_LOG=warn GAVEL_HTTP_ADDR=$ADDR
KEY=$($GAVEL merchants create --name bench | grep -o '"api_key": *"[^"]*"' | cut -d'"' -f4)

echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
