#!/usr/bin/env bash
# Gateway overhead: requests per second and latency with wrk against a trivial upstream (nginx
# answering `return 200`), sent
#   (a) directly to the upstream,
#   (b) through nginx as a plain reverse proxy (upstream keepalive),
#   (c) through the authsome gateway to a dedicated application: key check, rate limit (in
#       process), metering, header hygiene, signed forwarding assertion,
#   (d) as (c) with the rate limit in Redis (when Redis answers at $REDIS_URL),
#   (e) the gateway's HTTP path alone, none of its checks (the forward_only example of
#       authsome-gateway: hyper's server and the forwarding client): what this stack costs on
#       this host before any of (c)'s work, so a run shows how much of the gap to nginx is
#       the checks and how much the HTTP machinery.
# Each proxy gets one thread (nginx: 1 worker; authsome: AUTHSOME_WORKER_THREADS=1). Besides
# throughput and latency, each line gives the CPU time the process under test used per request
# (from /proc): steadier than throughput on a shared machine, for comparing changes.
#
# The rows run in turn, [rounds] times (default 3), so that the machine's drift (a neighbour on
# the host, frequency) falls on all of them alike; each line gives the median over the rounds,
# and the closing lines the median of the per-round ratios the targets are about: (c) and (e)
# against (b)'s throughput, and the p50 that (b) and (c) add over (a).
#
# With BASELINE_BIN=path/to/another/authsome, row (f) runs that build as (c) runs this one, in
# a deployment of its own: a change's effect measured in one run, against the same neighbours.
#
# Usage: [BASELINE_BIN=…] scripts/bench-gateway.sh [seconds] [connections] [rounds]
# Needs nginx and wrk (Debian: apt-get install nginx-light wrk), python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
rounds=${3:-3}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
for tool in nginx wrk python3 curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p authsome >/dev/null 2>&1
  cargo build --release -p authsome-gateway --example forward_only >/dev/null 2>&1
fi
bin=$PWD/target/release/authsome
forward_only=$PWD/target/release/examples/forward_only
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
up=$(free_port); px=$(free_port); gw=$(free_port); gw2=$(free_port)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for conf in "$work"/nginx-*.conf; do nginx -c "$conf" -s quit 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

nginx_conf upstream "daemon on;" "server { listen 127.0.0.1:$up; location / { return 200 'ok'; } }"
nginx -c "$work/nginx-upstream.conf"
nginx_conf proxy "daemon on;" "server { listen 127.0.0.1:$px; location / { proxy_pass http://trivial; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
nginx -c "$work/nginx-proxy.conf"

export AUTHSOME_LOG=warn

serve() { # binary, data dir, port, extra env...
  local binary=$1 data=$2 port=$3; shift 3
  env AUTHSOME_DATA_DIR="$data" AUTHSOME_WORKER_THREADS=1 AUTHSOME_LISTEN=127.0.0.1:$port "$@" \
    "$binary" serve &
  pids+=($!)
  until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do sleep 0.05; done
}
# A deployment of `binary` in `data` serving on `port`, with a dedicated application whose
# upstream is the trivial one; sets $sk and $path.
deploy() { # binary, data dir, port
  local binary=$1 data=$2 port=$3
  local init
  init=$(AUTHSOME_DATA_DIR="$data" "$binary" init --json)
  serve "$binary" "$data" "$port"
  bench_app "$port" "$(field "$init" "['managementKey']")" "$(field "$init" "['workspaceId']")"
  path="/v1/$app/bench"
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $sk" "http://127.0.0.1:$port$path")
  [ "$code" = 200 ] || { echo "error: the gateway ($binary) answered $code, not 200" >&2; exit 1; }
}
if [ -n "${BASELINE_BIN:-}" ]; then
  gw_base=$(free_port)
  deploy "$BASELINE_BIN" "$work/baseline" "$gw_base"
  base_pid=${pids[-1]} base_sk=$sk base_path=$path
fi
deploy "$bin" "$work/authsome" "$gw"
gw_pid=${pids[-1]}

# CPU time (user + system, clock ticks) a process has used so far.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
nginx_worker() { pgrep -P "$(cat "$work/nginx-$1.pid")" | head -1; }
results=$work/results.jsonl

run() { # row, round, pid of the process under test, url, extra wrk args...
  local row=$1 round=$2 pid=$3 url=$4; shift 4
  [ "$round" = 1 ] && wrk -t1 -c"$conns" -d2s "$@" "$url" >/dev/null # warm-up
  local before; before=$(ticks "$pid")
  local out; out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" "$url")
  local used=$(( $(ticks "$pid") - before ))
  echo "$out" | python3 -c '
import json, re, sys
row, rnd, used, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
out = sys.stdin.read()
def us(p):
    v, unit = re.search(r"\s" + p + r"%\s+([\d.]+)(us|ms|s)", out).groups()
    return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
requests = int(re.search(r"(\d+) requests in", out).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(json.dumps({"row": row, "round": rnd,
    "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
    "p50": us("50"), "p99": us("99"), "cpu": used / hz * 1e6 / requests,
    "errors": int(errors.group(1)) if errors else 0}))
' "$row" "$round" "$used" "$(getconf CLK_TCK)" >>"$results"
}

rows=("a" "b" "c")
if redis-cli -u "$redis_url" ping >/dev/null 2>&1; then
  serve "$bin" "$work/authsome" "$gw2" AUTHSOME_REDIS_URL="$redis_url" AUTHSOME_REDIS_PREFIX="bench-$$:"
  d_pid=${pids[-1]}
  rows+=("d")
fi
if [ -x "$forward_only" ]; then
  fo=$(free_port)
  "$forward_only" "127.0.0.1:$fo" "http://127.0.0.1:$up" &
  fo_pid=$!
  pids+=("$fo_pid")
  until curl -s -o /dev/null "http://127.0.0.1:$fo/" 2>/dev/null; do sleep 0.05; done
  rows+=("e")
fi
[ -n "${BASELINE_BIN:-}" ] && rows+=("f")

echo "wrk -t1 -c$conns -d${secs}s, $(nproc) cores, $rounds rounds (rows in turn; medians over the rounds)"
echo "CPU/request: of the upstream in (a), of the proxy in (b) to (e)"
for round in $(seq 1 "$rounds"); do
  for row in "${rows[@]}"; do
    case $row in
      a) run a "$round" "$(nginx_worker upstream)" "http://127.0.0.1:$up$path" ;;
      b) run b "$round" "$(nginx_worker proxy)" "http://127.0.0.1:$px$path" ;;
      c) run c "$round" "$gw_pid" "http://127.0.0.1:$gw$path" -H "Authorization: Bearer $sk" ;;
      d) run d "$round" "$d_pid" "http://127.0.0.1:$gw2$path" -H "Authorization: Bearer $sk" ;;
      f) run f "$round" "$base_pid" "http://127.0.0.1:$gw_base$base_path" -H "Authorization: Bearer $base_sk" ;;
      e) run e "$round" "$fo_pid" "http://127.0.0.1:$fo$path" -H "Authorization: Bearer $sk" ;;
    esac
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
labels = {
    "a": "(a) direct to the upstream",
    "b": "(b) nginx reverse proxy",
    "c": "(c) authsome gateway (key, limit, metering)",
    "d": "(d) as (c), rate limit in Redis",
    "e": "(e) HTTP path alone (forward_only example)",
    "f": "(f) as (c), the BASELINE_BIN build",
}
by = {}
for r in runs:
    by.setdefault(r["row"], {})[r["round"]] = r
med = statistics.median
for row, label in labels.items():
    if row not in by:
        continue
    rs = list(by[row].values())
    bad = sum(r["errors"] for r in rs)
    print(f"{label:<44} {med(r['rps'] for r in rs):>10.0f} req/s   "
          f"p50 {med(r['p50'] for r in rs):>7.0f} us   p99 {med(r['p99'] for r in rs):>7.0f} us   "
          f"{med(r['cpu'] for r in rs):>5.1f} us CPU/request" + (f"   NON-2XX {bad}" if bad else ""))
def ratios(row):
    return [by[row][k]["rps"] / by["b"][k]["rps"] * 100 for k in sorted(by[row]) if k in by["b"]]
def added(row):
    return [by[row][k]["p50"] - by["a"][k]["p50"] for k in sorted(by[row]) if k in by["a"]]
def show(values, fmt):
    return f"median {fmt(med(values))}, rounds " + ", ".join(fmt(v) for v in values)
for row in ("c", "d", "e", "f"):
    if row in by:
        print(f"({row}) / (b) throughput: " + show(ratios(row), lambda v: f"{v:.0f}%"))
for row in ("b", "c"):
    print(f"({row}) - (a) p50: " + show(added(row), lambda v: f"{v:+.0f} us"))
PY
