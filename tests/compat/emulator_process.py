"""Starts `perseus emulate` on free loopback ports for the compatibility tests and stops it cleanly.

The binary is `$PERSEUS_BIN` (default: the `emulate` example, which takes the same `emulate ...`
arguments as the main binary). Ports are chosen by the emulator itself (port 0) and read back from the
addresses it prints, so parallel runs never collide.
"""

import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = ROOT / "target" / "debug" / "examples" / "emulate"
STARTUP_TIMEOUT_S = 60


@dataclass
class Emulator:
    process: subprocess.Popen
    grpc: str  # host:port
    http: str  # host:port
    metrics_url: str
    banner: str

    def stop(self) -> int:
        """SIGTERM, as a service manager would; returns the exit code (0 = clean shutdown)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def binary() -> str:
    return os.environ.get("PERSEUS_BIN", str(DEFAULT_BIN))


def start(gpu: str = "t4", models: str = "simple,resnet50", extra: tuple = ()) -> Emulator:
    cmd = [
        binary(), "emulate", "--gpu", gpu, "--models", models,
        "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
        *extra,
    ]
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    found = {}
    patterns = {
        "grpc": re.compile(r"^\s*gRPC\s+(\S+:\d+)\s*$"),
        "http": re.compile(r"^\s*HTTP\s+http://(\S+:\d+)\s*$"),
        "metrics": re.compile(r"^\s*metrics\s+(http://\S+/metrics)\s*$"),
    }

    def read_banner():
        for line in process.stdout:
            lines.append(line)
            for key, pattern in patterns.items():
                match = pattern.match(line)
                if match:
                    found[key] = match.group(1)
            if len(found) == len(patterns) and "Ctrl-C" in line:
                return

    reader = threading.Thread(target=read_banner, daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT_S)
    if len(found) != len(patterns):
        process.kill()
        process.wait()
        raise RuntimeError(f"emulator did not start ({' '.join(cmd)}):\n{''.join(lines)}")
    # Keep draining output so the emulator never blocks on a full pipe.
    threading.Thread(target=lambda: [lines.append(l) for l in process.stdout], daemon=True).start()
    return Emulator(process, found["grpc"], found["http"], found["metrics"], "".join(lines))
