"""Cold start: from the run command to the first image served, on the embedded demo model.

    python -m bench.cold_start

Starts `python app.py --model demo` as a user would, waits for the server, asks /txt2img for one image with
the UI's defaults through gradio_client, and reports both times next to the bare import time of the stack.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"app.py did not listen on port {port} within {timeout} s")


def import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, diffusers, transformers, gradio"], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> dict[str, float]:
    from gradio_client import Client

    port = free_port()
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    with TemporaryDirectory() as outputs:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "app.py", "--model", "demo", "--port", str(port), "--output-dir", outputs],
            cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port, process)
            listening = time.perf_counter() - started
            client = Client(f"http://127.0.0.1:{port}", verbose=False)
            gallery, _, _ = client.predict(prompt="a cat", api_name="/txt2img")
            first_image = time.perf_counter() - started
            assert len(gallery) == 1
        finally:
            process.terminate()
            process.wait(timeout=30)
    imports = import_seconds()
    print(f"cold start  demo model: listening after {listening:.1f} s, first image served after {first_image:.1f} s "
          f"({first_image / imports:.2f}x the {imports:.1f} s it takes just to import torch, diffusers, "
          "transformers and gradio)")
    return {"listening_s": listening, "first_image_s": first_image, "imports_s": imports}


if __name__ == "__main__":
    main()
