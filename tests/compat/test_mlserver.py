"""Perseus against a KServe-v2 server that is not Triton: Seldon's MLServer with a scikit-learn model.

MLServer speaks the same `inference.GRPCInferenceService` but has none of Triton's ModelConfig,
ModelStatistics or repository extensions, and a model whose settings declare no tensors has metadata
without inputs. The tests train a tiny iris classifier (scikit-learn ships the data; nothing is
downloaded), serve it on free loopback ports, and check that `perseus run` and `perseus probe` work
with inputs declared in the session, and that without them the run fails at once, naming what is
missing. Needs the venv from setup_mlserver.sh ($PERSEUS_MLSERVER_VENV or its default location);
skipped when it is not installed.
"""

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from tritonclient.grpc import service_pb2, service_pb2_grpc

import emulator_process

DEFAULT_VENV = emulator_process.ROOT / "target" / "mlserver-venv"
STARTUP_TIMEOUT_S = 120
TRAIN = """
import sys, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(x, y), sys.argv[1])
"""


def venv() -> Path:
    path = Path(os.environ.get("PERSEUS_MLSERVER_VENV", DEFAULT_VENV))
    if not (path / "bin" / "mlserver").exists():
        pytest.skip(f"MLServer not installed ({path}); run tests/compat/setup_mlserver.sh")
    return path


def perseus() -> str:
    return os.environ.get("PERSEUS_BIN", str(emulator_process.ROOT / "target" / "debug" / "perseus"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory):
    env_dir = venv()
    root = tmp_path_factory.mktemp("mlserver")
    model_dir = root / "iris"
    model_dir.mkdir()
    subprocess.run([str(env_dir / "bin" / "python"), "-c", TRAIN, str(model_dir / "model.joblib")],
                   check=True, timeout=120)
    # No "inputs" in the model settings: MLServer's metadata then lists none, as for most users.
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": "iris",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v1"},
    }))
    grpc_port, http_port, metrics_port = free_port(), free_port(), free_port()
    (root / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "grpc_port": grpc_port, "http_port": http_port,
        "metrics_port": metrics_port, "parallel_workers": 0,
    }))
    log = (root / "mlserver.log").open("w")
    process = subprocess.Popen([str(env_dir / "bin" / "mlserver"), "start", str(root)],
                               stdout=log, stderr=subprocess.STDOUT, cwd=root)
    address = f"127.0.0.1:{grpc_port}"
    try:
        wait_ready(process, address, root / "mlserver.log")
        yield {"address": address, "dir": root}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_ready(process, address, log: Path):
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"MLServer exited with {process.returncode}:\n{log.read_text()}")
            try:
                ready = stub.ModelReady(service_pb2.ModelReadyRequest(name="iris"), timeout=2)
                if ready.ready:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise AssertionError(f"MLServer not ready within {STARTUP_TIMEOUT_S}s:\n{log.read_text()}")


def session(tmp_path: Path, address: str, inputs: str | None) -> Path:
    declared = f"inputs = {inputs}\n" if inputs else ""
    path = tmp_path / "mlserver.toml"
    path.write_text(f"""name = "iris on MLServer"
duration = "4s"
warmup = "1s"
window = "2s"

[target]
triton = "{address}"

[cost]
usd_per_hour = 0.1

[[tenant]]
model = "iris"
rate = 25
arrival = "constant"
sla = {{ latency_ms = 500, percentile = 95 }}
{declared}""")
    return path


IRIS_INPUTS = '[{ name = "input-0", datatype = "FP64", shape = [4] }]'


def test_model_metadata_without_inputs_is_what_mlserver_serves(mlserver):
    # The premise of the next tests: this server is silent about the model's tensors and lacks
    # Triton's extensions.
    with grpc.insecure_channel(mlserver["address"]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        meta = stub.ModelMetadata(service_pb2.ModelMetadataRequest(name="iris"), timeout=5)
        assert list(meta.inputs) == []
        with pytest.raises(grpc.RpcError) as err:
            stub.ModelConfig(service_pb2.ModelConfigRequest(name="iris"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_run_with_declared_inputs_keeps_its_rate_without_errors(mlserver, tmp_path):
    result = tmp_path / "run.json"
    run = subprocess.run(
        [perseus(), "run", str(session(tmp_path, mlserver["address"], IRIS_INPUTS)),
         "--json", str(result)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PERSEUS_DATA_DIR": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    tenant = json.loads(result.read_text())["tenants"][0]
    assert tenant["errors"] == 0, tenant
    assert tenant["errors_by_code"] == {} and tenant["first_error_by_code"] == {}, tenant
    assert tenant["ok"] > 0
    # Constant arrivals at 25/s over 4 s: a server this light keeps up with every one of them.
    assert tenant["achieved_rate"] >= 0.9 * 25, tenant
    assert tenant["server_ms"] is None  # no ModelStatistics: not reported, not made up


def test_run_without_declared_inputs_fails_at_once_naming_them(mlserver, tmp_path):
    run = subprocess.run(
        [perseus(), "run", str(session(tmp_path, mlserver["address"], None))],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PERSEUS_DATA_DIR": str(tmp_path)},
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "lists no inputs" in run.stderr and "inputs = [" in run.stderr, run.stderr
    assert "'iris'" in run.stderr, run.stderr
    # Reported from the set-up's own answer, not after the connect timeout ran out.
    assert "within 15s" not in run.stderr, run.stderr


def test_probe_measures_a_solo_peak(mlserver, tmp_path):
    run = subprocess.run(
        [perseus(), "probe", str(session(tmp_path, mlserver["address"], IRIS_INPUTS)),
         "--window", "1s", "--start", "200", "--fresh"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PERSEUS_DATA_DIR": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "iris" in run.stdout, run.stdout
