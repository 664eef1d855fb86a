"""NVIDIA's tritonclient.http against the emulator's HTTP/REST v2 endpoint, plus /metrics."""

import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import emulator_process


@pytest.fixture(scope="module")
def emulator():
    emu = emulator_process.start(models="simple,resnet50")
    yield emu
    assert emu.stop() == 0, "SIGTERM shuts the emulator down cleanly"


@pytest.fixture(scope="module")
def client(emulator):
    return httpclient.InferenceServerClient(url=emulator.http)


def simple_inputs(a, b, binary=True, datatype="INT32", names=("INPUT0", "INPUT1")):
    inputs = []
    for name, values in zip(names, (a, b)):
        tensor = httpclient.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def operands(batch=1):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16) - 5
    b = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16) * 2
    return a, b


def status_of(call):
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value.status(), info.value.message()


def test_health_and_server_metadata(client, emulator):
    assert client.is_server_live()
    assert client.is_server_ready()
    with urllib.request.urlopen(f"http://{emulator.http}/v2/health/ready") as response:
        assert response.status == 200
    meta = client.get_server_metadata()
    assert meta["name"] == "triton", "what clients check"
    assert meta["version"].startswith("perseus-emulator ")
    assert "statistics" in meta["extensions"]
    assert client.is_model_ready("simple")
    assert not client.is_model_ready("no_such_model")


def test_model_metadata_and_config(client):
    meta = client.get_model_metadata("simple")
    assert [t["name"] for t in meta["inputs"]] == ["INPUT0", "INPUT1"]
    assert meta["inputs"][0]["shape"] == [-1, 16]
    config = client.get_model_config("resnet50")
    assert config["max_batch_size"] > 1
    assert config["instance_group"][0]["count"] == 1
    assert "dynamic_batching" in config


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_simple_sums_and_differences(client, binary_in, binary_out):
    a, b = operands(3)
    outputs = [httpclient.InferRequestedOutput(n, binary_data=binary_out) for n in ("OUTPUT0", "OUTPUT1")]
    result = client.infer("simple", simple_inputs(a, b, binary=binary_in), outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    # No outputs named: all come back (in binary, as tritonclient asks).
    result = client.infer("simple", simple_inputs(a, b, binary=binary_in))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_resnet50_output_shape(client):
    meta = client.get_model_metadata("resnet50")
    tensor = meta["inputs"][0]
    shape = [1] + tensor["shape"][1:]
    image = httpclient.InferInput(tensor["name"], shape, tensor["datatype"])
    image.set_data_from_numpy(np.zeros(shape, dtype=np.float32))
    result = client.infer("resnet50", [image])
    output = meta["outputs"][0]
    assert list(result.as_numpy(output["name"]).shape) == [1] + output["shape"][1:]


def test_statistics_count_requests(client):
    def stats():
        return client.get_inference_statistics("simple")["model_stats"][0]

    before = stats()
    a, b = operands()
    for _ in range(4):
        client.infer("simple", simple_inputs(a, b))
    after = stats()
    assert after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"] == 4
    assert after["inference_count"] - before["inference_count"] == 4
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]


def test_repository_index_load_and_unload(client):
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["simple"]["state"] == "READY"
    client.load_model("mobilenet_v2", config='{"instance_group": [{"count": 2}]}')
    assert client.is_model_ready("mobilenet_v2")
    assert client.get_model_config("mobilenet_v2")["instance_group"][0]["count"] == 2
    client.unload_model("mobilenet_v2")
    assert not client.is_model_ready("mobilenet_v2")
    index = {m["name"]: m for m in client.get_model_repository_index()}
    assert index["mobilenet_v2"]["state"] == "UNAVAILABLE"


def test_errors_have_tritons_http_codes(client):
    a, b = operands()
    bad_name = simple_inputs(a, b, names=("INPUT0", "INPUT9"))
    bad_type = simple_inputs(a.astype(np.float32), b.astype(np.float32), datatype="FP32")
    short = simple_inputs(a[:, :8].copy(), b)
    short[0].set_shape([1, 16])  # claims 16 elements, carries 8
    for inputs, needle in [(bad_name, "INPUT9"), (bad_type, "data-type"), (short, "byte size")]:
        status, message = status_of(lambda: client.infer("simple", inputs))
        assert status == "400", message
        assert needle in message
    status, message = status_of(lambda: client.infer("no_such_model", simple_inputs(a, b)))
    assert status == "404" and "is not found" in message
    status, message = status_of(lambda: client.load_model("vgg16", config='{"instance_group": [{"count": 500}]}'))
    assert "MiB" in message


def test_metrics_have_tritons_names(client, emulator):
    a, b = operands()
    client.infer("simple", simple_inputs(a, b))
    with urllib.request.urlopen(emulator.metrics_url) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['nv_inference_request_success{model="simple",version="1"}'] >= 1
    utilization = next(v for k, v in samples.items() if k.startswith("nv_gpu_utilization{gpu_uuid="))
    assert 0.0 <= utilization <= 1.0
    for name in ("nv_gpu_memory_used_bytes", "nv_gpu_power_usage", "nv_energy_consumption", "perseus_emulator_sm_activity"):
        assert any(k.startswith(name + "{") for k in samples), name
