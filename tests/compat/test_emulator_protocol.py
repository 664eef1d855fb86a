"""Triton's protocol extensions in the emulator, through NVIDIA's tritonclient: compression, logging and
trace settings, model control's `file:` parameters, and the server's name and extensions."""

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import emulator_process


@pytest.fixture(scope="module")
def emulator():
    emu = emulator_process.start(models="simple,resnet50")
    yield emu
    assert emu.stop() == 0


@pytest.fixture(scope="module")
def grpc(emulator):
    return grpcclient.InferenceServerClient(url=emulator.grpc)


@pytest.fixture(scope="module")
def http(emulator):
    return httpclient.InferenceServerClient(url=emulator.http)


def simple_inputs(module):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    inputs = []
    for name, values in (("INPUT0", a), ("INPUT1", b)):
        t = module.InferInput(name, [1, 16], "INT32")
        t.set_data_from_numpy(values)
        inputs.append(t)
    return inputs, a, b


def test_metadata_names_triton_and_lists_what_is_implemented(grpc, http):
    for meta in (grpc.get_server_metadata(as_json=True), http.get_server_metadata()):
        assert meta["name"] == "triton"
        assert meta["version"].startswith("perseus-emulator")
        for extension in ("classification", "sequence", "logging", "trace", "model_repository", "statistics"):
            assert extension in meta["extensions"]


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests_and_replies(grpc, http, algorithm):
    inputs, a, b = simple_inputs(grpcclient)
    result = grpc.infer("simple", inputs, compression_algorithm=algorithm)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    inputs, a, b = simple_inputs(httpclient)
    result = http.infer(
        "simple", inputs, request_compression_algorithm=algorithm, response_compression_algorithm=algorithm
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    # A big binary body compressed: the 2.4 MB of zeros shrink to almost nothing.
    batch = np.zeros((4, 3, 224, 224), dtype=np.float32)
    image = httpclient.InferInput("input", list(batch.shape), "FP32")
    image.set_data_from_numpy(batch)
    result = http.infer("resnet50", [image], request_compression_algorithm=algorithm)
    assert result.as_numpy("output").shape == (4, 1000)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_log_settings_are_reported_back_as_changed(grpc, http, protocol):
    client = grpc if protocol == "grpc" else http
    get = (lambda: client.get_log_settings(as_json=True)) if protocol == "grpc" else client.get_log_settings
    settings = get()
    settings = settings.get("settings", settings)
    assert set(settings) >= {"log_file", "log_info", "log_warning", "log_error", "log_verbose_level", "log_format"}
    client.update_log_settings({"log_verbose_level": 2, "log_info": False})
    after = get()
    after = after.get("settings", after)
    if protocol == "grpc":
        value = lambda v: next(iter(v.values()))  # {"uint32_param": 2} and the like
        assert value(after["log_verbose_level"]) == 2
        assert value(after["log_info"]) is False
    else:
        assert after["log_verbose_level"] == 2 and after["log_info"] is False
    with pytest.raises(InferenceServerException) as info:
        client.update_log_settings({"log_file": "elsewhere.log"})
    assert "log file location can not be updated through network protocol" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        client.update_log_settings({"log_format": "xml"})
    assert "log_format" in info.value.message()
    client.update_log_settings({"log_verbose_level": 0, "log_info": True})


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_trace_settings_per_model_fall_back_to_global(grpc, http, protocol):
    client = grpc if protocol == "grpc" else http

    def get(model=None):
        s = client.get_trace_settings(model_name=model, as_json=True) if protocol == "grpc" else client.get_trace_settings(model_name=model)
        s = s.get("settings", s)
        return {k: (v.get("value", []) if isinstance(v, dict) else v) for k, v in s.items()}

    assert get()["trace_level"] == ["OFF"]
    client.update_trace_settings(model_name="simple", settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "10"})
    own = get("simple")
    assert own["trace_level"] == ["TIMESTAMPS"]
    assert own["trace_rate"] in ("10", ["10"])
    assert get()["trace_level"] == ["OFF"], "the global settings are untouched"
    client.update_trace_settings(model_name="simple", settings={"trace_level": None, "trace_rate": None})
    assert get("simple")["trace_level"] == ["OFF"]
    with pytest.raises(InferenceServerException):
        client.update_trace_settings(settings={"trace_level": ["LOUD"]})


def test_file_parameters_are_checked_as_triton_checks_them(grpc, http):
    with pytest.raises(InferenceServerException) as info:
        grpc.load_model("simple", config="{}", files={"file:" + "A" * 256: b"a"})
    assert info.value.status() == "StatusCode.INTERNAL"
    assert "failed to poll from model repository" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        grpc.load_model("simple", files={"file:1/model.onnx": b"a"})
    assert "config" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        http.load_model("simple", config="{}", files={"file:../../etc/passwd": b"a"})
    assert "inside the model directory" in info.value.message()
    grpc.load_model("simple", config="{}", files={"file:1/model.onnx": b"weights"})
    assert grpc.is_model_ready("simple") and grpc.is_server_live()
