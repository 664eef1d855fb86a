"""NVIDIA's tritonclient.grpc against the emulator: every call Perseus and NVIDIA's examples make."""

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

import emulator_process


@pytest.fixture(scope="module")
def emulator():
    emu = emulator_process.start(models="simple,resnet50")
    yield emu
    assert emu.stop() == 0, "SIGTERM shuts the emulator down cleanly"


@pytest.fixture(scope="module")
def client(emulator):
    return grpcclient.InferenceServerClient(url=emulator.grpc)


def simple_inputs(a, b, datatype="INT32", names=("INPUT0", "INPUT1")):
    inputs = []
    for name, values in zip(names, (a, b)):
        tensor = grpcclient.InferInput(name, list(values.shape), datatype)
        tensor.set_data_from_numpy(values)
        inputs.append(tensor)
    return inputs


def operands(batch=1):
    a = np.arange(16 * batch, dtype=np.int32).reshape(batch, 16) * 3 - 7
    b = np.full((batch, 16), 11, dtype=np.int32) - np.arange(16, dtype=np.int32)
    return a, b


def status_of(call):
    with pytest.raises(InferenceServerException) as info:
        call()
    return info.value.status(), info.value.message()


def test_health_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta.name == "triton", "what clients check"
    assert meta.version.startswith("perseus-emulator ")
    assert meta.version
    assert "model_repository" in meta.extensions
    assert client.is_model_ready("simple")
    assert not client.is_model_ready("no_such_model")


def test_model_metadata_and_config(client):
    meta = client.get_model_metadata("simple")
    assert [t.name for t in meta.inputs] == ["INPUT0", "INPUT1"]
    assert [t.name for t in meta.outputs] == ["OUTPUT0", "OUTPUT1"]
    assert all(t.datatype == "INT32" and list(t.shape) == [-1, 16] for t in meta.inputs)
    config = client.get_model_config("resnet50").config
    assert config.max_batch_size > 1
    assert config.instance_group[0].count == 1
    assert config.HasField("dynamic_batching")


def test_simple_sums_and_differences(client):
    for batch in (1, 4):
        a, b = operands(batch)
        result = client.infer("simple", simple_inputs(a, b))
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    # Only the output asked for comes back.
    result = client.infer("simple", simple_inputs(a, b), outputs=[grpcclient.InferRequestedOutput("OUTPUT1")])
    assert result.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)


def test_resnet50_output_shape(client):
    meta = client.get_model_metadata("resnet50")
    tensor = meta.inputs[0]
    shape = [2] + list(tensor.shape)[1:]
    image = grpcclient.InferInput(tensor.name, shape, tensor.datatype)
    image.set_data_from_numpy(np.zeros(shape, dtype=np.float32))
    result = client.infer("resnet50", [image])
    output = meta.outputs[0]
    assert list(result.as_numpy(output.name).shape) == [2] + list(output.shape)[1:]


def test_statistics_count_requests(client):
    def stats():
        return client.get_inference_statistics("simple").model_stats[0]

    before = stats()
    a, b = operands(2)
    for _ in range(5):
        client.infer("simple", simple_inputs(a, b))
    after = stats()
    success = after.inference_stats.success.count - before.inference_stats.success.count
    assert success == 5
    assert after.inference_count - before.inference_count == 10, "two images per request"
    assert after.inference_stats.queue.count - before.inference_stats.queue.count == 5
    assert after.inference_stats.compute_infer.ns > before.inference_stats.compute_infer.ns
    assert after.execution_count > before.execution_count


def test_stream_infer_answers_each_request(client):
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        a, b = operands()
        for i in range(3):
            client.async_stream_infer("simple", simple_inputs(a, b), request_id=str(i))
        results = [answers.get(timeout=10) for _ in range(3)]
    finally:
        client.stop_stream()
    assert all(error is None for _, error in results)
    for result, _ in results:
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)


def test_repository_index_load_and_unload(client):
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["simple"].state == "READY"
    assert "mobilenet_v2" in index
    client.load_model("mobilenet_v2")
    assert client.is_model_ready("mobilenet_v2")
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["mobilenet_v2"].state == "READY"
    client.unload_model("mobilenet_v2")
    assert not client.is_model_ready("mobilenet_v2")
    index = {m.name: m for m in client.get_model_repository_index().models}
    assert index["mobilenet_v2"].state == "UNAVAILABLE"


def test_load_config_sets_instances_and_batcher(client):
    config = '{"instance_group": [{"count": 2}], "dynamic_batching": {"max_queue_delay_microseconds": 100, "preferred_batch_size": [4, 8]}}'
    client.load_model("mobilenet_v2", config=config)
    try:
        got = client.get_model_config("mobilenet_v2").config
        assert got.instance_group[0].count == 2
        assert list(got.dynamic_batching.preferred_batch_size) == [4, 8]
        assert got.dynamic_batching.max_queue_delay_microseconds == 100
    finally:
        client.unload_model("mobilenet_v2")


def test_invalid_inputs_are_invalid_argument(client):
    a, b = operands()
    wrong_name = simple_inputs(a, b, names=("INPUT0", "INPUT9"))
    wrong_type = simple_inputs(a.astype(np.float32), b.astype(np.float32), datatype="FP32")
    short = a[:, :8].copy()
    wrong_shape = simple_inputs(short, b[:, :8].copy())
    wrong_size = simple_inputs(short, b)
    wrong_size[0].set_shape([1, 16])  # claims 16 elements, carries 8
    for inputs, needle in [
        (wrong_name, "INPUT9"),
        (wrong_type, "data-type"),
        (wrong_shape, "unexpected shape"),
        (wrong_size, "byte size"),
    ]:
        status, message = status_of(lambda: client.infer("simple", inputs))
        assert status == "StatusCode.INVALID_ARGUMENT", message
        assert needle in message


def test_unknown_model_is_not_found(client):
    a, b = operands()
    status, message = status_of(lambda: client.infer("no_such_model", simple_inputs(a, b)))
    assert status == "StatusCode.NOT_FOUND"
    assert "'no_such_model' is not found" in message


def test_unloaded_model_is_unavailable(client):
    client.unload_model("simple")
    try:
        a, b = operands()
        status, _ = status_of(lambda: client.infer("simple", simple_inputs(a, b)))
        assert status == "StatusCode.UNAVAILABLE"
    finally:
        client.load_model("simple")
    assert client.is_model_ready("simple")


def test_load_that_does_not_fit_is_resource_exhausted(client):
    status, message = status_of(lambda: client.load_model("vgg16", config='{"instance_group": [{"count": 500}]}'))
    assert status == "StatusCode.RESOURCE_EXHAUSTED"
    assert "MiB" in message
