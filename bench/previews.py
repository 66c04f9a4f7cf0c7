"""Live previews' cost: a generation with an `approx` or a `taesd` preview after every step against one without,
interleaved, on the demo model at 64 px and the SD 1.5 architecture (random weights) at 512 px; and one preview's
own time. taesd is AutoencoderTiny in madebyollin/taesd's shape, with random weights (the Hub is out of reach).

    python -m bench.previews
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch

from bench.common import interleaved, median_ratio
from models.manager import PipelineManager
from models.request import GenerationRequest

MODES = ("approx", "taesd")


def cost(manager: PipelineManager, size: int, steps: int, rounds: int, taesd: str) -> dict:
    request = GenerationRequest("txt2img", "a red circle", seed=1, steps=steps, width=size, height=size)

    def with_previews(mode: str):
        def run():
            manager.set_previews(mode, 1, taesd)
            manager.generate_together([request], on_preview=lambda index, picture: None)
        return run

    def without():
        manager.set_previews("off", 1)
        manager.generate(request)

    times = interleaved({**{mode: with_previews(mode) for mode in MODES}, "without": without}, rounds)
    side = size // manager.pipelines["txt2img"].vae_scale_factor
    latents = torch.randn(1, 4, side, side)
    step = statistics.median(times["without"]) / steps
    figures = {"step ms": step * 1000}
    for mode in MODES:
        manager.set_previews(mode, 1, taesd)
        previewer = manager.tiny_vae or manager.previewer
        started = time.perf_counter()
        for _ in range(5):
            previewer.pictures(latents, (size, size))
        figures[mode] = {"ratio": median_ratio(times[mode], times["without"]),
                         "preview ms": (time.perf_counter() - started) / 5 * 1000}
    manager.set_previews("approx", 5)
    return figures


def main(rounds: int = 5) -> dict:
    from diffusers import AutoencoderTiny

    from bench.sd15_random import cached

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        AutoencoderTiny().save_pretrained(folder)  # taesd's own configuration
        figures = {"demo 64 px": cost(PipelineManager.load("demo", device="cpu"), 64, 20, rounds, folder),
                   "SD 1.5 512 px": cost(PipelineManager.load(str(cached(inpainting=False)), device="cpu"), 512, 2, 2,
                                         folder)}
    for name, figure in figures.items():
        for mode in MODES:
            print(f"previews  {name} {mode}: a preview after every step {figure[mode]['ratio']:.3f}x the time "
                  f"without; one preview {figure[mode]['preview ms']:.2f} ms against a step's "
                  f"{figure['step ms']:.0f} ms ({figure[mode]['preview ms'] / figure['step ms']:.2%})")
    return figures


if __name__ == "__main__":
    main()
