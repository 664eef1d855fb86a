#!/usr/bin/env bash
# Unpacks Prometheus from the distribution's package into target/prometheus for the compatibility
# suite, without installing it (no system service is started). Idempotent: a present binary is kept.
# Prints the path of the prometheus binary on its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${PERSEUS_PROMETHEUS_DIR:-$root/target/prometheus}"
bin="$dest/usr/bin/prometheus"

if [[ -x "$bin" ]]; then
    echo "prometheus: $bin is ready" >&2
    echo "$bin"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download -q prometheus >/dev/null 2>&1; then
    echo "prometheus: refreshing the package lists" >&2
    if [[ "$(id -u)" == 0 ]]; then apt-get update -q >/dev/null; else sudo apt-get update -q >/dev/null; fi
    apt-get download -q prometheus >/dev/null
fi
mkdir -p "$dest"
dpkg -x prometheus_*.deb "$dest"
if ! "$bin" --version >/dev/null 2>&1; then
    echo "prometheus: unpacked $bin does not run" >&2
    exit 1
fi
echo "prometheus: unpacked $(basename prometheus_*.deb) into $dest" >&2
echo "$bin"
