#!/usr/bin/env bash
# What auditing adds to a control-plane write on SQLite, counted in instructions under callgrind:
# repeatable from run to run and host to host, where the times and CPU of the audit benchmark
# (`cargo bench -p authsome-control --bench audit`) swing by tens of percent on a shared
# virtual machine. For comparing builds and changes; the benchmark's figures stay the targets'.
#
# Runs the benchmark's control-plane operation (`ControlPlane::update_workspace`: access check,
# then the write) under callgrind six times: plain blocks only, audited blocks only (until the
# log holds their entries) and audited blocks until they were answered (the write's own path:
# the event, its outbox row; the log's writer lingers through the run), each with `rounds` and
# with 3 x `rounds` rounds of 100 writes.
# The difference between the two runs of a kind, per write, leaves out start-up (the bootstrap's
# argon2 and the migrations). Counts user-space instructions of every thread, the audit writer's
# and SQLite's included; not the kernel's (system calls, thread wake-ups).
# Valgrind's CPU hides the SHA extensions, so SHA-256 (the entry's leaf and chain hashes) runs
# in software there: the audited line also gives the count without SHA-256's compression
# function, which on hardware with SHA-NI costs a few thousand instructions per write instead.
#
# Usage: scripts/bench-audit-instructions.sh [rounds]   (default 4)
# Needs valgrind and python3 (Debian: apt-get install valgrind).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-4}
for tool in valgrind callgrind_annotate python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
case $rounds in
  '' | *[!0-9]* | 0) echo "error: rounds must be a positive whole number, not '$rounds'" >&2; exit 1 ;;
esac
bench=$(cargo bench -p authsome-control --bench audit --no-run 2>&1 \
  | sed -n 's/.*Executable .*(\(.*\))$/\1/p' | tail -1)
[ -x "$bench" ] || { echo "error: could not build the audit benchmark" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Prints "<instructions> <soft SHA-256 instructions>" of one run.
count() { # plain|audited|answered, rounds
  # Postgres left out: its server's work would not be counted.
  AUDIT_BENCH_ONLY=$1 AUDIT_BENCH_ROUNDS=$2 AUDIT_BENCH_LINGER_MS=600000 \
    AUTHSOME_TEST_POSTGRES_URL=postgres://127.0.0.1:1/none \
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$1.$2" "$bench" \
    >"$work/out.$1.$2" 2>&1 || { cat "$work/out.$1.$2" >&2; exit 1; }
  local file=$work/cg.$1.$2
  local total; total=$(awk '/^(summary|totals):/ { print $2; exit }' "$file")
  local sha; sha=$(callgrind_annotate --inclusive=yes "$file" 2>/dev/null \
    | awk '/sha2::sha256::soft::compress/ { gsub(",", "", $1); print $1; exit }')
  echo "$total ${sha:-0}"
}

long=$((rounds * 3))
# shellcheck disable=SC2046
python3 - "$rounds" "$long" $(count plain "$rounds") $(count plain "$long") \
  $(count audited "$rounds") $(count audited "$long") \
  $(count answered "$rounds") $(count answered "$long") <<'EOF'
import sys
short, long = int(sys.argv[1]), int(sys.argv[2])
p1, _, p2, _, a1, s1, a2, s2, w1, _, w2, _ = map(int, sys.argv[3:])
writes = (long - short) * 100
plain = (p2 - p1) / writes
audited = (a2 - a1) / writes
without_sha = audited - (s2 - s1) / writes
answered = (w2 - w1) / writes
print(f"callgrind, SQLite, ControlPlane::update_workspace, {writes} writes counted")
print(f"plain    {plain:>9.0f} instructions/write")
print(f"audited  {audited:>9.0f} instructions/write   {without_sha:>9.0f} without software SHA-256"
      f"   ({(without_sha / plain - 1) * 100:+.1f}%)")
print(f"  in the write's own path (until answered) {answered:>9.0f} instructions/write"
      f"   ({(answered / plain - 1) * 100:+.1f}%); the log's writer the rest")
EOF
