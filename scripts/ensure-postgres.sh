#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with trust auth for
# user postgres: starts the installed cluster if it is stopped, installs one
# from Debian's packages if none is installed (needs root).
set -euo pipefail

ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
ready && exit 0

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "ensure-postgres: installing PostgreSQL from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fresh=1
fi
cluster_version=$(ls /etc/postgresql | sort -V | tail -1)
if [ "${fresh:-0}" = 1 ]; then
  # Local development and CI only: trust connections from this machine.
  sed -ri 's/(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/; s/(local\s+all\s+postgres\s+)\S+/\1trust/' \
    "/etc/postgresql/$cluster_version/main/pg_hba.conf"
fi
pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start 2>/dev/null || true
for _ in $(seq 60); do ready && exit 0; sleep 0.5; done
echo "ensure-postgres: PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
