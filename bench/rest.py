"""Per-request overhead of the ways in, on the demo model (64 px, 2 steps, so the overhead shows): a direct
manager call, the service (the typed request built from plain fields, the extensions' prepare, the PNG saved),
the named endpoint through gradio_client, and A1111's REST route (which itself goes through the Gradio queue).
All against one launched app, interleaved.

    python -m bench.rest
"""

from __future__ import annotations

import socket
import statistics
import tempfile

import requests

from bench.common import interleaved
from models.request import GenerationRequest

REQUEST = {"prompt": "a lighthouse", "seed": 1, "steps": 2, "width": 64, "height": 64}


def main(rounds: int = 15) -> dict:
    from gradio_client import Client

    import app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp()
    config = app.parse_config(["--model", "demo", "--device", "cpu", "--port", str(port), "--api", "on",
                               "--lora-dir", f"{folder}/Lora", "--controlnet-dir", f"{folder}/ControlNet",
                               "--output-dir", f"{folder}/outputs"], environ={})
    server, service = app.start_in_background(config)
    try:
        url = f"http://127.0.0.1:{port}"
        client = Client(url, verbose=False)
        job = GenerationRequest("txt2img", REQUEST["prompt"], seed=1, steps=2, width=64, height=64)
        candidates = {
            "direct manager call": lambda: service.manager.generate(job),
            "service.run (typed request, saved PNG)": lambda: service.run("txt2img", REQUEST),
            "gradio_client /txt2img": lambda: client.predict(**REQUEST, api_name="/txt2img"),
            "REST /sdapi/v1/txt2img": lambda: requests.post(f"{url}/sdapi/v1/txt2img", json=REQUEST, timeout=60),
        }
        times = interleaved(candidates, rounds, warmup=2)
    finally:
        app.stop_in_background(server)
    direct = statistics.median(times["direct manager call"])
    figures = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in figures.items():
        print(f"rest overhead  {name}: {seconds * 1000:.0f} ms ({(seconds - direct) * 1000:+.0f} ms, "
              f"{seconds / direct:.2f}x the direct call)")
    return figures


if __name__ == "__main__":
    main()
