#!/usr/bin/env bash
# Memory over a long headless run (DESIGN §8: "memory stays flat over a long run").
#
#   bash benches/memory_flat.sh [SECONDS] [SESSION]      (defaults: 300, sessions/demo.toml)
#
# Runs `perseus run SESSION` on the embedded emulator (client, engine and emulated server in one
# process), samples its resident memory every 5 s, and compares the peaks of the run's quarters.
# Histograms are fixed-size and time series are ring buffers, so the ratio should stay near 1.00.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
session="${2:-sessions/demo.toml}"

cargo build --release --quiet --bin perseus
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

target/release/perseus run "$session" --duration "${seconds}s" --json "$work/out.json" \
    >"$work/stdout" 2>"$work/stderr" &
pid=$!

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true; }

printf '%8s  %10s\n' "t (s)" "RSS (MiB)"
samples=()
t=0
while kill -0 "$pid" 2>/dev/null; do
    sleep 5
    t=$((t + 5))
    kib="$(rss_kib)"
    [[ -n "$kib" ]] || break
    samples+=("$t:$kib")
    awk -v t="$t" -v k="$kib" 'BEGIN { printf "%8d  %10.1f\n", t, k / 1024 }'
done
wait "$pid" || { echo "perseus run failed:"; cat "$work/stderr"; exit 1; }

(( ${#samples[@]} >= 8 )) || { echo "run too short to judge (${#samples[@]} samples)"; exit 1; }
# The allocator keeps freed memory for reuse, so RSS is a high-water mark that moves with the deepest
# backlog so far (a stall of the machine raises it once). A leak shows as a trend: compare the peak
# of the last quarter with the peak of the second, both after warm-up.
printf '%s\n' "${samples[@]}" | awk -F: -v n="${#samples[@]}" '
    { q = int((NR - 1) * 4 / n); if ($2 > peak[q]) { peak[q] = $2; at[q] = $1 } }
    END {
        for (q = 0; q < 4; q++) printf "quarter %d: peak %.1f MiB at %d s\n", q + 1, peak[q] / 1024, at[q]
        printf "peak, last quarter / second quarter: %.3f\n", peak[3] / peak[1]
    }'
head -8 "$work/stdout"
