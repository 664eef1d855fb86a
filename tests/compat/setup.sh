#!/usr/bin/env bash
# Creates the virtualenv the compatibility suite runs in and installs NVIDIA's Python client into it.
# Idempotent: when the venv already holds exactly requirements.txt, it does nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PERSEUS_COMPAT_VENV:-$root/target/compat-venv}"
requirements="$here/requirements.txt"
stamp="$venv/.perseus-requirements"
python="${PYTHON:-python3}"

if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$requirements" "$stamp"; then
    echo "compat: venv $venv is up to date"
    exit 0
fi

echo "compat: creating venv $venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
cp "$requirements" "$stamp"
echo "compat: installed $(grep -c '==' "$requirements") pinned packages into $venv"
