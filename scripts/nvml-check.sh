#!/usr/bin/env bash
# Runs a real GPU workload and records Perseus's NVML figures next to nvidia-smi's, to check they agree.
# Needs an NVIDIA GPU with its driver, cargo and (for the default workload) python3.
# Usage: scripts/nvml-check.sh [OUT_DIR]    Environment: SECONDS_TOTAL, INTERVAL_MS, DEVICE, WORKLOAD.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${1:-target/nvml-check}
SECONDS_TOTAL=${SECONDS_TOTAL:-24}
INTERVAL_MS=${INTERVAL_MS:-500}
DEVICE=${DEVICE:-0}

# ===== WORKLOAD: the command that keeps the GPU busy while both samplers run; replace freely. =====
# Default: a PTX spin kernel through the driver API (idle, full, half duty, idle; holds 4 GiB).
# WORKLOAD="" samples whatever the GPU is doing already.
WORKLOAD=${WORKLOAD-"python3 scripts/gpu_load.py --seconds $SECONDS_TOTAL --device $DEVICE --mem-mib 4096"}
# ==================================================================================================

mkdir -p "$OUT_DIR"
cargo build --example nvml_probe
probe="${CARGO_TARGET_DIR:-target}/debug/examples/nvml_probe"
nvidia-smi -L | tee "$OUT_DIR/devices.txt"

nvidia-smi -i "$DEVICE" --query-gpu=timestamp,utilization.gpu,memory.used,power.draw \
    --format=csv,nounits -lms "$INTERVAL_MS" > "$OUT_DIR/nvidia-smi.csv" &
smi=$!
trap 'kill "$smi" 2>/dev/null || true' EXIT
"$probe" "$SECONDS_TOTAL" "$INTERVAL_MS" "$DEVICE" > "$OUT_DIR/perseus.csv" 2> "$OUT_DIR/perseus.err" &
probe_pid=$!
if [ -n "$WORKLOAD" ]; then
    bash -c "$WORKLOAD" 2> "$OUT_DIR/workload.log" || echo "workload failed: see $OUT_DIR/workload.log"
fi
wait "$probe_pid"
kill "$smi" 2>/dev/null || true

# Side by side, row by row (both sample every INTERVAL_MS from about the same moment).
paste -d, "$OUT_DIR/perseus.csv" "$OUT_DIR/nvidia-smi.csv" > "$OUT_DIR/side-by-side.csv"
echo "== perseus.err"; cat "$OUT_DIR/perseus.err"
echo "== workload"; cat "$OUT_DIR/workload.log" 2>/dev/null || true
echo "== summary (util %: mean, max; memory MiB: max; power W: mean)"
awk -F, 'NR > 1 && $2 != "" { n++; u += $2; if ($2 > um) um = $2; if ($3 > m) m = $3; p += $4 }
    END { if (n) printf "perseus     n=%d util %.1f, %.0f  mem %.0f  power %.1f\n", n, u/n, um, m, p/n }' \
    "$OUT_DIR/perseus.csv"
awk -F', *' 'NR > 1 && $2 != "" { n++; u += $2; if ($2 > um) um = $2; if ($3 > m) m = $3; p += $4 }
    END { if (n) printf "nvidia-smi  n=%d util %.1f, %.0f  mem %.0f  power %.1f\n", n, u/n, um, m, p/n }' \
    "$OUT_DIR/nvidia-smi.csv"
