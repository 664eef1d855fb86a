"""The emulator under overload, as NVIDIA's clients see it: Triton's queue policy set over HTTP refuses
the excess with UNAVAILABLE and Triton's wording, and perf_analyzer asking far more than `simple` can
serve leaves the emulator's memory bounded (its own bound refuses what it cannot hold).

The overload case needs perf_analyzer from setup_perf_analyzer.sh and is skipped without it.
"""

import json
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

import emulator_process
from test_emulator_perf_analyzer import perf_analyzer

# The bar the emulator's memory bound is sized for (DESIGN §5: an overloaded emulator stays bounded).
MAX_RSS_MB = 500


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_for_pending(metrics_url: str, model: str, count: int, within_s: float = 60) -> None:
    """Waits until the emulator reports `count` requests pending for `model`."""
    line = f'nv_inference_pending_request_count{{model="{model}",version="1"}} {count}\n'
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(metrics_url) as response:
            if line in response.read().decode():
                return
        time.sleep(0.05)
    raise AssertionError(f"{model} never had {count} pending request(s)")


@pytest.fixture()
def emulator():
    emu = emulator_process.start(models="simple")
    yield emu
    assert emu.stop() == 0


def test_a_queue_policy_loaded_over_http_refuses_the_excess(emulator):
    client = httpclient.InferenceServerClient(url=emulator.http, concurrency=2)
    # A lone request waits 50 s for a batch of 8, so it stays queued; the queue holds one.
    config = {
        "max_batch_size": 8,
        "dynamic_batching": {
            "max_queue_delay_microseconds": 50_000_000,
            "preferred_batch_size": [8],
            "default_queue_policy": {"max_queue_size": 1},
        },
    }
    client.load_model("resnet50", config=json.dumps(config))
    assert client.get_model_config("resnet50")["dynamic_batching"]["default_queue_policy"] == {
        "max_queue_size": 1
    }
    image = httpclient.InferInput("input", [1, 3, 224, 224], "FP32")
    image.set_data_from_numpy(np.zeros((1, 3, 224, 224), dtype=np.float32))
    held = client.async_infer("resnet50", [image], request_id="held")
    wait_for_pending(emulator.metrics_url, "resnet50", 1)
    with pytest.raises(InferenceServerException) as refused:
        client.infer("resnet50", [image], request_id="excess")
    assert refused.value.status() == "503", refused.value
    assert refused.value.message() == "[request id: excess] Exceeds maximum queue size"
    client.unload_model("resnet50")
    with pytest.raises(InferenceServerException):
        held.get_result()


def test_perf_analyzer_overload_keeps_memory_bounded(emulator):
    pid = emulator.process.pid
    peak = [rss_mb(pid)]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    cmd = [
        str(perf_analyzer()), "-m", "simple", "-u", emulator.grpc, "-i", "grpc", "--async",
        "--request-rate-range", "20000", "--measurement-interval", "3000", "--max-trials", "3",
        "--stability-percentage", "100",
    ]
    # Far past what the emulator serves on a small machine, perf_analyzer may never settle on a
    # measurement: the flood itself is the test, so it is stopped after a while either way.
    flood = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = flood.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        flood.kill()
        output, _ = flood.communicate()
    finally:
        time.sleep(2)
        done.set()
        sampler.join()
    assert peak[0] < MAX_RSS_MB, f"emulator peak RSS {peak[0]:.0f} MB under overload\n{output}"
    # Still serving once the flood is over.
    client = httpclient.InferenceServerClient(url=emulator.http)
    assert client.is_model_ready("simple")
