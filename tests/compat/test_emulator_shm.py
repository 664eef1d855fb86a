"""System shared memory against the emulator: tritonclient's shared-memory API over gRPC and HTTP
(register, status, inference with inputs and outputs in regions, unregister, Triton's errors for bad
offsets and sizes) and perf_analyzer's `--shared-memory system`."""

import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

import emulator_process
from test_emulator_perf_analyzer import perf_analyzer

BYTES = 64  # one [1,16] INT32 tensor


@pytest.fixture(scope="module")
def emulator():
    emu = emulator_process.start(models="simple")
    yield emu
    assert emu.stop() == 0


@pytest.fixture(params=["grpc", "http"])
def client(request, emulator):
    if request.param == "grpc":
        return grpcclient, grpcclient.InferenceServerClient(url=emulator.grpc)
    return httpclient, httpclient.InferenceServerClient(url=emulator.http)


@pytest.fixture
def regions(client):
    """Input and output regions of the `simple` model, holding a and b; removed afterwards."""
    _, c = client
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 5, dtype=np.int32)
    made = []
    handles = {}
    for name, size in [("in", 2 * BYTES), ("out", 2 * BYTES)]:
        key = f"/perseus_compat_{name}_{id(c)}"
        handle = shm.create_shared_memory_region(f"compat_{name}", key, size)
        made.append(handle)
        handles[name] = (f"compat_{name}", key, handle)
    shm.set_shared_memory_region(handles["in"][2], [a, b])
    for region, key, _ in handles.values():
        c.register_system_shared_memory(region, key, 2 * BYTES)
    yield a, b, handles
    c.unregister_system_shared_memory()
    for handle in made:
        shm.destroy_shared_memory_region(handle)


def shm_request(module, offsets=(0, BYTES), size=BYTES):
    inputs = []
    for name, offset in zip(("INPUT0", "INPUT1"), offsets):
        tensor = module.InferInput(name, [1, 16], "INT32")
        tensor.set_shared_memory("compat_in", size, offset=offset)
        inputs.append(tensor)
    outputs = []
    for name, offset in zip(("OUTPUT0", "OUTPUT1"), (0, BYTES)):
        out = module.InferRequestedOutput(name)
        out.set_shared_memory("compat_out", BYTES, offset=offset)
        outputs.append(out)
    return inputs, outputs


def test_server_metadata_lists_system_shared_memory(client):
    module, c = client
    meta = c.get_server_metadata()
    extensions = meta.extensions if module is grpcclient else meta["extensions"]
    assert "system_shared_memory" in extensions


def test_status_names_each_region(client, regions):
    module, c = client
    status = c.get_system_shared_memory_status()
    if module is grpcclient:
        names = set(status.regions.keys())
        assert status.regions["compat_in"].byte_size == 2 * BYTES
    else:
        names = {r["name"] for r in status}
        assert {r["name"]: r["byte_size"] for r in status}["compat_in"] == 2 * BYTES
    assert names == {"compat_in", "compat_out"}


def test_inference_reads_inputs_and_writes_outputs_in_regions(client, regions):
    module, c = client
    a, b, handles = regions
    inputs, outputs = shm_request(module)
    result = c.infer("simple", inputs, outputs=outputs)
    assert result.get_output("OUTPUT0") is not None
    out = handles["out"][2]
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out, np.int32, [1, 16]), a + b)
    np.testing.assert_array_equal(
        shm.get_contents_as_numpy(out, np.int32, [1, 16], offset=BYTES), a - b
    )


@pytest.mark.parametrize(
    "offsets,size,message",
    [
        ((0, 2 * BYTES), BYTES, "Invalid offset for shared memory region: 'compat_in'"),
        ((0, BYTES + 4), BYTES, "Invalid offset + byte size for shared memory region: 'compat_in'"),
    ],
)
def test_bad_offsets_and_sizes_get_tritons_errors(client, regions, offsets, size, message):
    module, c = client
    inputs, outputs = shm_request(module, offsets, size)
    with pytest.raises(InferenceServerException) as err:
        c.infer("simple", inputs, outputs=outputs)
    assert message in str(err.value)


def test_registering_beyond_the_object_or_twice_fails(client, regions):
    _, c = client
    _, _, handles = regions
    _, key, _ = handles["in"]
    with pytest.raises(InferenceServerException) as err:
        c.register_system_shared_memory("too_big", key, 4 * BYTES)
    assert "failed to register shared memory region 'too_big': invalid args" in str(err.value)
    with pytest.raises(InferenceServerException) as err:
        c.register_system_shared_memory("compat_in", key, BYTES)
    assert "already in manager" in str(err.value)


def test_unregister_removes_one_region_then_all(client, regions):
    module, c = client
    c.unregister_system_shared_memory("compat_in")
    status = c.get_system_shared_memory_status()
    names = set(status.regions.keys()) if module is grpcclient else {r["name"] for r in status}
    assert names == {"compat_out"}
    c.unregister_system_shared_memory()
    status = c.get_system_shared_memory_status()
    assert len(status.regions if module is grpcclient else status) == 0


def test_cuda_shared_memory_is_refused_as_without_gpus(client):
    module, c = client
    if module is grpcclient:
        with pytest.raises(InferenceServerException) as err:
            c.register_cuda_shared_memory("gpu_region", b"\0" * 64, 0, 64)
        assert "GPUs not supported" in str(err.value)
    status = c.get_cuda_shared_memory_status()
    assert len(status.regions if module is grpcclient else status) == 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_with_system_shared_memory(emulator, tmp_path, protocol):
    report = tmp_path / "shm.csv"
    url = emulator.grpc if protocol == "grpc" else emulator.http
    cmd = [
        str(perf_analyzer()), "-m", "simple", "-u", url, "-i", protocol,
        "--shared-memory", "system", "--request-rate-range", "100",
        "--measurement-interval", "2000", "--max-trials", "4", "--stability-percentage", "100",
        "-f", str(report),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Inferences/Second" in report.read_text()
