#!/usr/bin/env bash
# The protocol compatibility suite: our .proto files and servers against NVIDIA's published client.
#
# 1. setup.sh prepares the virtualenv (tritonclient, the reference protoc, pytest);
#    setup_perf_analyzer.sh and setup_mlserver.sh install perf_analyzer and MLServer in venvs of their own;
# 2. setup_prometheus.sh unpacks Prometheus for test_prometheus.py;
# 3. check_descriptors.py compares our descriptors with NVIDIA's, field by field;
# 4. every tests/compat/test_*.py runs under pytest (add a file to add checks; none is fine).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PERSEUS_COMPAT_VENV:-$root/target/compat-venv}"
export PERSEUS_COMPAT_VENV="$venv"
# Keep the source tree clean: no __pycache__ next to the test files.
export PYTHONDONTWRITEBYTECODE=1

"$here/setup.sh"
bash "$here/setup_perf_analyzer.sh"
bash "$here/setup_mlserver.sh"
# Prometheus from the distribution's package, unpacked under target/ (test_prometheus.py).
PERSEUS_PROMETHEUS="${PERSEUS_PROMETHEUS:-$(bash "$here/setup_prometheus.sh")}"
export PERSEUS_PROMETHEUS
"$venv/bin/python" "$here/check_descriptors.py"

shopt -s nullglob
tests=("$here"/test_*.py)
if (( ${#tests[@]} == 0 )); then
    echo "compat: no tests/compat/test_*.py files; descriptor check only"
    exit 0
fi
cd "$root"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"
