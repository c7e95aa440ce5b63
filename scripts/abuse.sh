#!/usr/bin/env bash
# Abuse resistance figures (issue 35), on this machine, against a release build on the embedded
# defaults (SQLite, in-process state):
#   (a) a login flood from one address at one member's email, and a spray over many emails;
#   (b) a sign-up burst from one application (8 publishable keys, within their rate limits)
#       while another application's user signs in, against that sign-in's baseline;
#   (c) 40 logins with 1 MB emails.
# Prints: the server's peak resident memory, the other tenant's sign-in p50/p99 during the
# burst and at baseline (target: p99 under twice the baseline), audit entries written per
# 1,000 refused attempts (target: under 10; it waits for the fold window to close, about a
# minute), and the share of requests refused (429/503) that were answered within 50 ms.
#
# Usage: scripts/abuse.sh   (SKIP_BUILD=1 to use target/release/authsome as it is)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release -p authsome >/dev/null 2>&1
fi
bin=$PWD/target/release/authsome
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export AUTHSOME_DATA_DIR=$work/data AUTHSOME_LOG=warn AUTHSOME_LISTEN=127.0.0.1:$port
init=$("$bin" init --json)
"$bin" serve &
server=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
python3 scripts/abuse.py "http://127.0.0.1:$port" "$server" "$init"
