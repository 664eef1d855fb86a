#!/usr/bin/env bash
# Installs MLServer (Seldon's KServe-v2 server) and its scikit-learn runtime for the compatibility
# suite, in a venv of its own: it pins its own grpcio, protobuf and tritonclient, which must not
# meet the versions the rest of the suite checks against. Idempotent: when the venv already holds
# exactly requirements-mlserver.txt, it does nothing. The tests find it through
# $PERSEUS_MLSERVER_VENV or this default location.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PERSEUS_MLSERVER_VENV:-$root/target/mlserver-venv}"
requirements="$here/requirements-mlserver.txt"
stamp="$venv/.perseus-requirements"
python="${PYTHON:-python3}"

if [[ -x "$venv/bin/mlserver" && -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
    echo "mlserver: venv $venv is up to date"
    exit 0
fi

echo "mlserver: creating venv $venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
echo "mlserver: installed $(grep -c '==' "$requirements") pinned packages into $venv"
