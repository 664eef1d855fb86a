#!/usr/bin/env bash
# Highest request rate Perseus sustains against the standalone emulator's `simple` model, next to what
# NVIDIA's perf_analyzer sustains against the same server on the same machine, in one run.
#
#   bash benches/compare_perf_analyzer.sh [RATE ...]      (default rates: 1000 2000 4000 8000 12000)
#
# "Sustained" means achieved throughput within 2% of the requested rate. perf_analyzer is installed by
# tests/compat/setup_perf_analyzer.sh (a venv under target/). Both clients use gRPC on loopback with a
# constant request rate; each rate runs 5 s after a 1 s warm-up.
set -euo pipefail
cd "$(dirname "$0")/.."
rates=("$@")
(( ${#rates[@]} )) || rates=(1000 2000 4000 8000 12000)

cargo build --release --quiet --bin perseus
bash tests/compat/setup_perf_analyzer.sh >/dev/null
pa="${PERSEUS_PERF_ANALYZER:-target/perf-analyzer-venv/bin/perf_analyzer-run}"
bin=target/release/perseus
work="$(mktemp -d)"
trap 'kill "$emu" 2>/dev/null || true; rm -rf "$work"' EXIT

"$bin" emulate --gpu h100 --models simple --listen 127.0.0.1:18001 \
    --http-listen 127.0.0.1:18000 --metrics-listen 127.0.0.1:18002 >"$work/emulator.log" 2>&1 &
emu=$!
for _ in $(seq 50); do grep -q "gRPC" "$work/emulator.log" && break; sleep 0.2; done

printf '%8s  %16s  %16s\n' "rate/s" "perseus achieved" "perf_analyzer"
best_perseus=0
best_pa=0
for rate in "${rates[@]}"; do
    cat >"$work/s.toml" <<EOF
name = "simple at $rate/s"
[target]
triton = "127.0.0.1:18001"
[cost]
usd_per_hour = 1.0
[[tenant]]
model = "simple"
rate = $rate
arrival = "constant"
max_in_flight = 4096
sla = { latency_ms = 1000, percentile = 99 }
EOF
    PERSEUS_DATA_DIR="$work/data" "$bin" run "$work/s.toml" --duration 5s --warmup 1s \
        --json "$work/p.json" >/dev/null 2>&1 || true
    ours="$(python3 -c "import json,sys; print(round(json.load(open(sys.argv[1]))['tenants'][0]['achieved_rate'],1))" "$work/p.json" 2>/dev/null || echo 0)"
    theirs="$("$pa" -m simple -u 127.0.0.1:18001 -i grpc --request-rate-range "$rate" \
        --measurement-interval 5000 --max-threads 16 --stability-percentage 100 2>&1 \
        | sed -n 's/.*Throughput: \([0-9.]*\) infer\/sec.*/\1/p' | tail -1)"
    theirs="${theirs:-0}"
    printf '%8s  %16s  %16s\n' "$rate" "$ours" "$theirs"
    python3 - "$rate" "$ours" "$theirs" >>"$work/ok" <<'PY'
import sys
r, a, b = map(float, sys.argv[1:])
print(int(r) if a >= 0.98 * r else 0, int(r) if b >= 0.98 * r else 0)
PY
done
read -r best_perseus best_pa < <(awk '{ if ($1 > a) a = $1; if ($2 > b) b = $2 } END { print a+0, b+0 }' "$work/ok")
echo "highest sustained (within 2%): perseus ${best_perseus}/s, perf_analyzer ${best_pa}/s"
if (( best_pa > 0 )); then
    python3 -c "import sys; print(f'ratio perseus / perf_analyzer: {int(sys.argv[1]) / int(sys.argv[2]):.2f}')" "$best_perseus" "$best_pa"
fi
