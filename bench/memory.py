"""Memory: process RSS after using all three tabs through the manager, vs one plain pipeline, vs three
separately loaded pipelines. Each scenario runs in its own process on the SD 1.5 architecture (random weights).

    python -m bench.memory

Goal: the manager with all three tabs used at most 1.05x one plain pipeline.
"""

from __future__ import annotations

import ctypes
import gc
import json
import subprocess
import sys

from bench.sd15_random import cached

SIZE, STEPS = 64, 2


def rss_mib() -> float:
    """Resident memory after a collection and giving freed heap pages back, so it counts what is kept."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_during(run) -> float:
    """MiB the process's RSS rose to above where it started, sampled every 2 ms while `run` works."""
    import threading
    import time

    import psutil

    process, peak, done = psutil.Process(), [0], threading.Event()
    start = process.memory_info().rss

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return (max(peak[0], start) - start) / 2**20


def scenario(name: str, folder: str) -> float:
    """Runs inside the child process; returns its RSS in MiB after the work."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline
    from PIL import Image

    from models.manager import PipelineManager
    from models.request import GenerationRequest

    image, mask = Image.new("RGB", (SIZE, SIZE), "gray"), Image.new("L", (SIZE, SIZE), 255)
    common = {"width": SIZE, "height": SIZE, "steps": STEPS, "seed": 1, "strength": 1.0}
    plain_args = {"prompt": "a cat", "image": image, "mask_image": mask, "width": SIZE, "height": SIZE,
                  "num_inference_steps": STEPS, "generator": torch.Generator().manual_seed(1)}
    if name == "manager, three tabs used":
        manager = PipelineManager.load(folder, device="cpu")
        for mode in ("txt2img", "img2img", "inpaint"):
            manager.generate(GenerationRequest(mode, "a cat", image=image, mask=mask, **common))
    else:
        count = 1 if name == "one plain pipeline" else 3
        pipes = [StableDiffusionInpaintPipeline.from_pretrained(folder, safety_checker=None) for _ in range(count)]
        for pipe in pipes:
            pipe.set_progress_bar_config(disable=True)
            pipe(**plain_args)
    return rss_mib()


SCENARIOS = ("one plain pipeline", "manager, three tabs used", "three separate pipelines")


def main() -> dict[str, float]:
    folder = str(cached(inpainting=True))
    results = {}
    for name in SCENARIOS:
        output = subprocess.run(
            [sys.executable, "-m", "bench.memory", "--child", name, folder], capture_output=True, text=True, check=True
        ).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
    base = results["one plain pipeline"]
    for name, rss in results.items():
        print(f"memory  {name}: RSS {rss:,.0f} MiB, {rss / base:.3f}x one plain pipeline")
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(scenario(sys.argv[2], sys.argv[3])))
    else:
        main()
