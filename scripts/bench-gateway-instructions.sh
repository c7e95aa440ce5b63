#!/usr/bin/env bash
# The gateway's user-space work per forwarded request, counted in instructions under callgrind:
# repeatable from run to run and host to host, where the throughput of bench-gateway.sh swings
# by tens of percent on a shared virtual machine. For comparing builds and changes; the
# throughput and latency targets are still bench-gateway.sh's.
#
# Counts, for a keep-alive load (wrk, 4 connections) against a trivial upstream (nginx):
#   nginx   nginx as a plain reverse proxy (its single worker, under callgrind),
#   gateway the authsome gateway forwarding to a dedicated application (key check, rate limit,
#           metering, header hygiene, signed assertion),
#   base    the same for BASELINE_BIN, when set.
# Valgrind's CPU hides the SHA extensions, so SHA-256 (the assertion's HMAC) runs in software
# there: each gateway line also gives the count without SHA-256's compression function, which
# on hardware with SHA-NI costs a few hundred instructions per request instead.
#
# Usage: [BASELINE_BIN=…] scripts/bench-gateway-instructions.sh [seconds]
# Needs valgrind, nginx, wrk, python3 and curl (Debian: apt-get install valgrind nginx-light wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
for tool in valgrind callgrind_control callgrind_annotate nginx wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p authsome >/dev/null 2>&1
fi
bin=$PWD/target/release/authsome
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
up=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  nginx -c "$work/nginx-upstream.conf" -s quit 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

nginx_conf upstream "daemon on;" "server { listen 127.0.0.1:$up; location / { return 200 'ok'; } }"
nginx -c "$work/nginx-upstream.conf"

# Counts what the process under callgrind (pid) executes while wrk sends `secs` seconds of
# requests to url (after a warm-up); prints "<requests> <instructions> <soft SHA-256 instructions>".
count() { # pid, url, extra wrk args...
  local pid=$1 url=$2; shift 2
  wrk -t1 -c4 -d3s "$@" "$url" >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  local out; out=$(wrk -t1 -c4 -d"${secs}s" "$@" "$url")
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  local file; file=$(ls -t "$work"/cg-"$pid".out* | head -1)
  local total; total=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
  local sha; sha=$(callgrind_annotate --inclusive=yes "$file" 2>/dev/null \
    | awk '/sha2::sha256::soft::compress/ { gsub(",", "", $1); print $1; exit }')
  echo "$(echo "$out" | grep -o '[0-9]* requests in' | cut -d' ' -f1) $total ${sha:-0}"
}
report() { # label, requests, instructions, sha instructions
  python3 -c "
import sys
label, n, total, sha = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
line = f'{label:<8} {total / n:>8.0f} instructions/request'
if sha:
    line += f'   {(total - sha) / n:>8.0f} without software SHA-256'
print(line + f'   ({n} requests)')" "$@"
}

nginx_conf proxy "daemon off; master_process off;" \
  "server { listen 127.0.0.1:PORT; location / { proxy_pass http://trivial; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
px=$(free_port)
sed -i "s/PORT/$px/" "$work/nginx-proxy.conf"
valgrind --tool=callgrind --callgrind-out-file="$work/cg-%p.out" nginx -c "$work/nginx-proxy.conf" \
  >"$work/nginx-proxy.out" 2>&1 &
pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$px/" 2>/dev/null; do sleep 0.2; done
nginx_pid=${pids[-1]}

# A deployment of `binary` under callgrind with a dedicated application whose upstream is the
# trivial one; sets $pid, $url and $sk.
deploy() { # binary, data dir
  local binary=$1 data=$2 port init
  port=$(free_port)
  init=$(AUTHSOME_DATA_DIR="$data" "$binary" init --json 2>/dev/null)
  AUTHSOME_LOG=warn AUTHSOME_DATA_DIR="$data" AUTHSOME_WORKER_THREADS=1 \
    AUTHSOME_LISTEN=127.0.0.1:$port valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg-%p.out" "$binary" serve >"$data.out" 2>&1 &
  pids+=($!)
  pid=$!
  until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do sleep 0.2; done
  bench_app "$port" "$(field "$init" "['managementKey']")" "$(field "$init" "['workspaceId']")"
  url="http://127.0.0.1:$port/v1/$app/bench"
}

echo "callgrind, wrk -t1 -c4 -d${secs}s, keep-alive"
# shellcheck disable=SC2046
report nginx $(count "$nginx_pid" "http://127.0.0.1:$px/v1/app/bench")
deploy "$bin" "$work/authsome"
# shellcheck disable=SC2046
report gateway $(count "$pid" "$url" -H "Authorization: Bearer $sk")
if [ -n "${BASELINE_BIN:-}" ]; then
  deploy "$BASELINE_BIN" "$work/baseline"
  # shellcheck disable=SC2046
  report base $(count "$pid" "$url" -H "Authorization: Bearer $sk")
fi
