#!/usr/bin/env bash
# Installs NVIDIA's perf_analyzer for the compatibility suite, in a venv of its own because it comes from
# an old client release: the tritonclient 2.48.0 manylinux1 wheel ships the C++ binary. It needs
# libb64.so.0d (Debian package libb64-0d) and libcudart.so.12 (pip nvidia-cuda-runtime-cu12) but no GPU.
#
# Leaves `<venv>/bin/perf_analyzer-run`, a wrapper that sets LD_LIBRARY_PATH; the tests find it through
# $PERSEUS_PERF_ANALYZER or this default location. Idempotent.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PERSEUS_PERF_ANALYZER_VENV:-$root/target/perf-analyzer-venv}"
python="${PYTHON:-python3}"
wrapper="$venv/bin/perf_analyzer-run"

if ! ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
    echo "perf_analyzer: installing libb64-0d"
    if [[ "$(id -u)" == 0 ]]; then
        apt-get install -y -q libb64-0d >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q libb64-0d >/dev/null; }
    else
        sudo apt-get install -y -q libb64-0d >/dev/null
    fi
fi

if [[ -x "$wrapper" ]]; then
    echo "perf_analyzer: $wrapper is ready"
    exit 0
fi

echo "perf_analyzer: creating venv $venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --only-binary=:all: "tritonclient==2.48.0" "nvidia-cuda-runtime-cu12"
cudart="$(echo "$venv"/lib/python3.*/site-packages/nvidia/cuda_runtime/lib)"
if [[ ! -x "$venv/bin/perf_analyzer" || ! -d "$cudart" ]]; then
    echo "perf_analyzer: the wheel did not provide bin/perf_analyzer and libcudart" >&2
    exit 1
fi
cat > "$wrapper" <<EOF
#!/usr/bin/env bash
export LD_LIBRARY_PATH="$cudart\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$venv/bin/perf_analyzer" "\$@"
EOF
chmod +x "$wrapper"
if ! "$wrapper" --version >/dev/null 2>&1; then
    rm -f "$wrapper"
    echo "perf_analyzer: installed but does not run (missing shared libraries?)" >&2
    exit 1
fi
echo "perf_analyzer: installed $wrapper"
