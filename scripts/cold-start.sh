#!/usr/bin/env bash
# Cold start on SQLite: wall time from process start to the first 200 from /ready.
# Usage: scripts/cold-start.sh [runs]   (builds the release binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
cargo build --release -p authsome >/dev/null 2>&1
bin=target/release/authsome
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

measure() { # data dir -> milliseconds to ready
  local dir=$1 start end pid
  start=$(date +%s%N)
  AUTHSOME_DATA_DIR=$dir AUTHSOME_LISTEN=127.0.0.1:$port AUTHSOME_LOG=warn "$bin" serve &
  pid=$!
  until curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do sleep 0.002; done
  end=$(date +%s%N)
  kill -TERM "$pid"; wait "$pid" || true
  echo $(( (end - start) / 1000000 ))
}

first=()
warm=()
for i in $(seq 1 "$runs"); do
  first+=("$(measure "$work/fresh-$i")")   # empty data dir: creates key, database, migrations
  warm+=("$(measure "$work/fresh-$i")")    # existing data dir: the usual restart
done
summary() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "median %d ms, min %d ms, max %d ms (n=%d)\n", a[int((NR+1)/2)], a[1], a[NR], NR}'; }
echo "first start (empty data dir): $(summary "${first[@]}")"
echo "restart (existing data dir):  $(summary "${warm[@]}")"
