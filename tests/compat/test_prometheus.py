"""Prometheus itself scrapes a running `perseus run --metrics-listen` every second, and a PromQL query
of the achieved rate agrees with the run's JSON within 2%.

Prometheus comes from the distribution's package, unpacked by setup_prometheus.sh (run.sh calls it;
$PERSEUS_PROMETHEUS names a binary instead); skipped when neither is there.
"""

import json
import os
import re
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import emulator_process

DEFAULT_PROMETHEUS = emulator_process.ROOT / "target" / "prometheus" / "usr" / "bin" / "prometheus"
DURATION_S = 30
SESSION = """
name = "prometheus compat"
[target]
emulate = "t4"
[[tenant]]
model = "simple"
rate = 200
arrival = "constant"
sla = { latency_ms = 50, percentile = 95 }
[[tenant]]
model = "mobilenet_v2"
rate = 40
arrival = "constant"
sla = { latency_ms = 100, percentile = 95 }
"""


def perseus_binary() -> str:
    """The main binary (the `emulate` example, the suite's other default, has no `run`)."""
    path = Path(os.environ.get("PERSEUS_BIN", emulator_process.ROOT / "target" / "debug" / "perseus"))
    if not path.exists():
        pytest.skip(f"perseus not built ({path}); cargo build --bin perseus")
    return str(path)


def prometheus_binary() -> Path:
    path = Path(os.environ.get("PERSEUS_PROMETHEUS", DEFAULT_PROMETHEUS))
    if not path.exists():
        pytest.skip(f"prometheus not unpacked ({path}); run tests/compat/setup_prometheus.sh")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(api: str, promql: str, at: float) -> list:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_ready(api: str, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        assert process.poll() is None, "prometheus exited at start"
        try:
            with urllib.request.urlopen(f"{api}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("prometheus did not become ready")


def test_promql_achieved_rate_matches_the_run_json(tmp_path):
    prometheus = prometheus_binary()
    session = tmp_path / "session.toml"
    session.write_text(SESSION)
    result = tmp_path / "run.json"
    env = dict(os.environ, PERSEUS_DATA_DIR=str(tmp_path / "data"))
    run = subprocess.Popen(
        [perseus_binary(), "run", str(session), "--duration", f"{DURATION_S}s", "--warmup", "3s",
         "--metrics-listen", "127.0.0.1:0", "--json", str(result)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines = []
    found = threading.Event()

    def read_stderr():
        for line in run.stderr:
            lines.append(line)
            if line.startswith("metrics  "):
                found.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    assert found.wait(60), "perseus run did not say where it serves metrics:\n" + "".join(lines)
    target = re.search(r"http://(\S+)/metrics", next(l for l in lines if l.startswith("metrics  "))).group(1)

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: perseus\n    static_configs:\n      - targets: ['{target}']\n"
    )
    prom = subprocess.Popen(
        [str(prometheus), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(api, prom)
        assert run.wait(timeout=DURATION_S + 90) == 0, "".join(lines)
        report = json.loads(result.read_text())
        # The measured period as Prometheus saw it: the samples of perseus_measured_seconds that grew.
        now = time.time() + 1
        series = query(api, f"perseus_measured_seconds[{DURATION_S + 60}s]", now)
        samples = [(float(t), float(v)) for t, v in series[0]["values"]]
        # The gauge stays at its last value while the run finishes (draining, the capacity search),
        # so the period ends where it first reached that value, not at its last sample.
        top = max(v for _, v in samples)
        start = next(t for t, v in samples if v > 0)
        end = next(t for t, v in samples if v >= top)
        assert end - start > DURATION_S - 5, samples
        # The JSON's achieved rate counts the requests *sent* in the measured period that succeeded,
        # whenever they completed, over the measured seconds. rate() over the period lags that by
        # whatever was still in flight at its end, which a loaded machine makes a few percent; the
        # counter's last value over the gauge's last value is the JSON's own definition in PromQL.
        span = f"{DURATION_S + 60}s"
        for tenant in report["tenants"]:
            promql = (
                f'sum(max_over_time(perseus_requests_ok_total{{tenant="{tenant["model"]}"}}[{span}]))'
                f" / scalar(max_over_time(perseus_measured_seconds[{span}]))"
            )
            got = query(api, promql, now)
            assert got, f"no result for {promql}"
            rate = float(got[0]["value"][1])
            want = tenant["achieved_rate"]
            assert abs(rate - want) <= 0.02 * want, f"{promql} = {rate}, JSON achieved_rate = {want}"
        # And the rate a dashboard plots, over the measured period: within 5 % of it.
        window = int(end - start) - 2
        for tenant in report["tenants"]:
            promql = f'sum(rate(perseus_requests_ok_total{{tenant="{tenant["model"]}"}}[{window}s]))'
            got = query(api, promql, end)
            assert got, f"no result for {promql}"
            rate = float(got[0]["value"][1])
            want = tenant["achieved_rate"]
            assert abs(rate - want) <= 0.05 * want, f"{promql} = {rate}, JSON achieved_rate = {want}"
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        if run.poll() is None:
            run.kill()
            run.wait()
