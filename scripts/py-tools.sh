#!/usr/bin/env bash
# The Python tools the OpenAPI conformance test runs (openapi-spec-validator,
# schemathesis, openapi-python-client), pinned, in a venv under target/.
# Reused when present with the same pins; prints the venv's bin directory.
# Exits non-zero (and the test fails) when they cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."
pins=(
  "openapi-spec-validator==0.9.0"
  "schemathesis==4.32.5"
  "openapi-python-client==0.29.1"
)
venv=${GAVEL_PY_TOOLS:-$PWD/target/py-tools}
stamp="$venv/.pins"
want=$(printf '%s\n' "${pins[@]}")
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin"
  exit 0
fi
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
{
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"
} >&2
printf '%s\n' "$want" >"$stamp"
echo "$venv/bin"
