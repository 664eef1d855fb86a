"""Triton's example models in the emulator, driven by NVIDIA's tritonclient over gRPC and HTTP: the
names, tensors and behaviours NVIDIA's example clients rely on (our own checks, not their code)."""

import json
import queue
import urllib.error
import urllib.request
from functools import partial

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, deserialize_bytes_tensor

import emulator_process

MODELS = "simple,simple_string,simple_int8,simple_identity,simple_sequence,repeat_int32,densenet_onnx,resnet50"


@pytest.fixture(scope="module")
def emulator():
    emu = emulator_process.start(models=MODELS)
    yield emu
    assert emu.stop() == 0


@pytest.fixture(scope="module")
def grpc(emulator):
    return grpcclient.InferenceServerClient(url=emulator.grpc)


@pytest.fixture(scope="module")
def http(emulator):
    return httpclient.InferenceServerClient(url=emulator.http)


def tensor(module, name, values, datatype, binary=True):
    t = module.InferInput(name, list(values.shape), datatype)
    if module is httpclient:
        t.set_data_from_numpy(values, binary_data=binary)
    else:
        t.set_data_from_numpy(values)
    return t


@pytest.mark.parametrize("binary", [True, False])
def test_simple_string_adds_numbers_written_as_strings(grpc, http, binary):
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), -3, dtype=np.int32)
    texts = lambda v: np.array([str(x).encode() for x in v.flatten()], dtype=np.object_).reshape(v.shape)
    for module, client in ((grpcclient, grpc), (httpclient, http)):
        inputs = [tensor(module, "INPUT0", texts(a), "BYTES", binary), tensor(module, "INPUT1", texts(b), "BYTES", binary)]
        outputs = None
        if module is httpclient:
            outputs = [httpclient.InferRequestedOutput(n, binary_data=binary) for n in ("OUTPUT0", "OUTPUT1")]
        result = client.infer("simple_string", inputs, outputs=outputs)
        sums = result.as_numpy("OUTPUT0")
        assert sums.shape == (1, 16)
        decode = lambda x: int(x.decode() if isinstance(x, bytes) else x)
        assert [decode(x) for x in sums.flatten()] == list((a + b).flatten())
        assert [decode(x) for x in result.as_numpy("OUTPUT1").flatten()] == list((a - b).flatten())


def test_bytes_outputs_are_length_prefixed_elements(emulator):
    """A BYTES output in binary form: 16 elements, each a 4-byte length and its bytes."""
    body = json.dumps({
        "inputs": [{"name": n, "datatype": "BYTES", "shape": [1, 16], "data": [str(i) for i in range(16)]}
                   for n in ("INPUT0", "INPUT1")],
        "outputs": [{"name": "OUTPUT0", "parameters": {"binary_data": True}}],
    }).encode()
    request = urllib.request.Request(f"http://{emulator.http}/v2/models/simple_string/infer", data=body)
    with urllib.request.urlopen(request) as response:
        raw = response.read()
        header_len = int(response.headers["Inference-Header-Content-Length"])
    elements = deserialize_bytes_tensor(raw[header_len:])
    assert [int(e) for e in elements] == [2 * i for i in range(16)]


def test_simple_int8_wraps_like_int8(grpc):
    a = np.array([[127, -128] + [1] * 14], dtype=np.int8)
    b = np.array([[1, 1] + [2] * 14], dtype=np.int8)
    result = grpc.infer("simple_int8", [tensor(grpcclient, "INPUT0", a, "INT8"), tensor(grpcclient, "INPUT1", b, "INT8")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)  # numpy wraps int8 too
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_simple_identity_returns_strings_of_any_length(grpc, http):
    values = np.array([[b"", b"x" * 1000, "ünïcode".encode()]], dtype=np.object_)
    for module, client in ((grpcclient, grpc), (httpclient, http)):
        result = client.infer("simple_identity", [tensor(module, "INPUT0", values, "BYTES")])
        out = result.as_numpy("OUTPUT0")
        assert out.shape == (1, 3)
        assert list(out.flatten()) == list(values.flatten())


def sequence_step(module, client, seq, value, start=False, end=False):
    inputs = [tensor(module, "INPUT", np.array([[value]], dtype=np.int32), "INT32")]
    result = client.infer("simple_sequence", inputs, sequence_id=seq, sequence_start=start, sequence_end=end)
    return int(result.as_numpy("OUTPUT")[0][0])


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sequences_follow_their_flags(grpc, http, protocol):
    module, client = (grpcclient, grpc) if protocol == "grpc" else (httpclient, http)
    first, second = (1000, 1001) if protocol == "grpc" else ("seq-a", "seq-b")
    assert sequence_step(module, client, first, 0, start=True) == 1, "START adds one"
    assert sequence_step(module, client, second, 100, start=True) == 101
    assert sequence_step(module, client, first, 11) == 11
    assert sequence_step(module, client, second, -7) == -7
    assert sequence_step(module, client, first, 5, end=True) == 5
    with pytest.raises(InferenceServerException) as info:
        sequence_step(module, client, first, 1)
    assert f"sequence {first} to model 'simple_sequence' must specify the START flag" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        sequence_step(module, client, 0, 1, start=True)
    assert "must specify a non-zero or non-empty correlation ID" in info.value.message()
    config = client.get_model_config("simple_sequence")
    config = config.config if protocol == "grpc" else config
    controls = config.sequence_batching.control_input if protocol == "grpc" else config["sequence_batching"]["control_input"]
    names = [c.name for c in controls] if protocol == "grpc" else [c["name"] for c in controls]
    assert names == ["START", "READY"]
    # The control inputs are the server's, not the client's.
    meta = client.get_model_metadata("simple_sequence")
    inputs = [t.name for t in meta.inputs] if protocol == "grpc" else [t["name"] for t in meta["inputs"]]
    assert inputs == ["INPUT"]


def test_a_stream_answers_each_sequence_in_order(emulator):
    # Two sequences interleaved on one stream, as NVIDIA's sequence stream clients send them: the
    # responses come back in request order, as Triton's sequence batcher answers them.
    answers = queue.Queue()
    client = grpcclient.InferenceServerClient(url=emulator.grpc)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    sent, steps = [], 100
    for step in range(steps):
        for seq, base in ((2000, 0), (2001, 1000), (2002, 2000)):
            value = base + step
            inputs = [tensor(grpcclient, "INPUT", np.array([[value]], dtype=np.int32), "INT32")]
            request_id = f"{seq}-{step}"
            client.async_stream_infer(
                "simple_sequence", inputs, request_id=request_id, sequence_id=seq,
                sequence_start=step == 0, sequence_end=step == steps - 1,
            )
            sent.append(request_id)
    got = []
    for _ in sent:
        result, error = answers.get(timeout=10)
        assert error is None, error
        got.append(result.get_response().id)
    client.stop_stream()
    assert got == sent


def test_repeat_int32_streams_one_response_per_element(grpc, emulator):
    values = np.arange(100, 105, dtype=np.int32)
    inputs = [
        tensor(grpcclient, "IN", values, "INT32"),
        tensor(grpcclient, "DELAY", np.full(5, 20, dtype=np.uint32), "UINT32"),
        tensor(grpcclient, "WAIT", np.array([10], dtype=np.uint32), "UINT32"),
    ]
    answers = queue.Queue()
    client = grpcclient.InferenceServerClient(url=emulator.grpc)
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("repeat_int32", inputs, request_id="r1", enable_empty_final_response=True)
    got, idx = [], []
    while True:
        result, error = answers.get(timeout=10)
        assert error is None, error
        final = result.get_response().parameters["triton_final_response"].bool_param
        if final:
            assert result.as_numpy("OUT") is None, "the final response is empty"
            break
        got.append(int(result.as_numpy("OUT")[0]))
        idx.append(int(result.as_numpy("IDX")[0]))
        assert result.get_response().id == "r1"
    client.stop_stream()
    assert got == list(values)
    assert idx == list(range(5))
    assert grpc.get_model_config("repeat_int32").config.model_transaction_policy.decoupled
    # One-answer endpoints refuse a decoupled model, as Triton does.
    with pytest.raises(InferenceServerException) as info:
        grpc.infer("repeat_int32", inputs)
    assert "doesn't support models with decoupled transaction policy" in info.value.message()


def test_densenet_onnx_has_its_real_tensors_and_no_batch_dimension(grpc, http):
    meta = grpc.get_model_metadata("densenet_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("data_0", "FP32", [3, 224, 224])]
    assert [(t.name, list(t.shape)) for t in meta.outputs] == [("fc6_1", [1000])]
    config = grpc.get_model_config("densenet_onnx").config
    assert config.max_batch_size == 0
    assert config.input[0].format == 2  # FORMAT_NCHW, which NVIDIA's image client requires
    assert http.get_model_config("densenet_onnx")["input"][0]["format"] == "FORMAT_NCHW"
    assert http.get_model_config("resnet50")["input"][0]["format"] == "FORMAT_NCHW"
    image = np.zeros((3, 224, 224), dtype=np.float32)
    result = grpc.infer("densenet_onnx", [tensor(grpcclient, "data_0", image, "FP32")])
    assert result.as_numpy("fc6_1").shape == (1000,)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_classification_returns_score_index_label(grpc, http, protocol):
    module, client = (grpcclient, grpc) if protocol == "grpc" else (httpclient, http)
    image = np.zeros((3, 224, 224), dtype=np.float32)
    output = module.InferRequestedOutput("fc6_1", class_count=3)
    result = client.infer("densenet_onnx", [tensor(module, "data_0", image, "FP32")], outputs=[output])
    classes = [c.decode() if isinstance(c, bytes) else c for c in result.as_numpy("fc6_1")]
    assert len(classes) == 3
    score, index, label = classes[0].split(":")
    assert float(score) == pytest.approx(0.001, abs=1e-6)  # the placeholder's uniform scores
    assert (index, label) == ("0", "TENCH")
    # A batching model without labels: one row of classes per image, "score:index".
    batch = np.zeros((2, 3, 224, 224), dtype=np.float32)
    output = module.InferRequestedOutput("output", class_count=2)
    result = client.infer("resnet50", [tensor(module, "input", batch, "FP32")], outputs=[output])
    rows = result.as_numpy("output")
    assert rows.shape == (2, 2)
    assert all(len((c.decode() if isinstance(c, bytes) else c).split(":")) == 2 for c in rows.flatten())


def http_error(emulator, path, body=None, method=None):
    request = urllib.request.Request(f"http://{emulator.http}{path}", data=body, method=method)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    return info.value.code, json.loads(info.value.read())


def test_every_http_error_has_a_json_body(emulator):
    code, body = http_error(emulator, "/v2/nowhere")
    assert code == 404 and body["error"]
    code, body = http_error(emulator, "/v2/models/simple/infer", method="GET")
    assert code == 405 and body["error"]
    code, body = http_error(emulator, "/v2/models/simple/infer", body=b"{")
    assert code == 400 and "failed to parse" in body["error"]


def test_unknown_model_over_http_json_is_not_found(emulator):
    body = json.dumps({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}).encode()
    code, reply = http_error(emulator, "/v2/models/no_such_model/infer", body=body)
    assert code == 404
    assert "Request for unknown model: 'no_such_model' is not found" == reply["error"]


def test_http_accepts_a_body_over_two_mib(http):
    batch = np.zeros((4, 3, 224, 224), dtype=np.float32)  # 2.4 MB
    result = http.infer("resnet50", [tensor(httpclient, "input", batch, "FP32")])
    assert result.as_numpy("output").shape == (4, 1000)


def test_a_load_override_does_not_survive_a_plain_reload(grpc):
    grpc.load_model("simple", config=json.dumps({"instance_group": [{"count": 3}]}))
    assert grpc.get_model_config("simple").config.instance_group[0].count == 3
    grpc.unload_model("simple")
    grpc.load_model("simple")
    assert grpc.get_model_config("simple").config.instance_group[0].count == 1
    grpc.load_model("simple", config=json.dumps({"instance_group": [{"count": 2}]}))
    grpc.load_model("simple")
    assert grpc.get_model_config("simple").config.instance_group[0].count == 1, "reload while loaded"
