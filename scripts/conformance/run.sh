#!/usr/bin/env bash
# The API description is exact (issue 36): a server on the embedded defaults, fixtures made through
# the API, then
#   1. schemathesis (PyPI) against its /openapi.json, every operation, with the checks
#      not_a_server_error, response_schema_conformance, status_code_conformance and
#      content_type_conformance, a fixed seed and example count; any finding fails;
#   2. a Python client generated from the same document by openapi-python-client (PyPI), and a
#      short program with it that creates an application and its keys, signs a user up and reads
#      /me.
#
# Usage: scripts/conformance/run.sh [path to the authsome binary]   (default: a debug build)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=${1:-}
if [ -z "$bin" ]; then
  cargo build -q -p authsome
  bin=$root/target/debug/authsome
fi
# The tools, and what the generated client imports.
python3 -c 'import schemathesis, openapi_python_client, httpx, attrs, dateutil' 2>/dev/null ||
  python3 -m pip install --quiet schemathesis openapi-python-client httpx attrs python-dateutil

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export AUTHSOME_DATA_DIR=$work/data AUTHSOME_LOG=warn AUTHSOME_LISTEN=127.0.0.1:$port
base=http://127.0.0.1:$port
init=$("$bin" init --json)
"$bin" serve >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "$base/ready" >/dev/null

eval "$(python3 scripts/conformance/prepare.py "$base" "$init")"
echo "conformance: fixtures ready; schemathesis against $base/openapi.json"
if ! python3 -m schemathesis.cli --config-file scripts/conformance/schemathesis.toml run "$base/openapi.json" \
  --no-color; then
  echo "conformance: schemathesis found the findings above" >&2
  tail -n 20 "$work/server.log" >&2
  exit 1
fi

echo "conformance: generating a Python client from openapi.json"
python3 -m openapi_python_client generate --path openapi.json --output-path "$work/authsome_client" \
  --meta none --overwrite >/dev/null
PYTHONPATH=$work python3 scripts/conformance/client_smoke.py "$base" "$init"
echo "conformance: passed"
