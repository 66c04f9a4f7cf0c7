"""Live previews' cost: a generation with an `approx` preview after every step against one without, interleaved, on
the demo model at 64 px and the SD 1.5 architecture (random weights) at 512 px; and one preview's own time.

    python -m bench.previews
"""

from __future__ import annotations

import statistics
import time

import torch

from bench.common import interleaved, median_ratio
from models.manager import PipelineManager
from models.request import GenerationRequest


def cost(manager: PipelineManager, size: int, steps: int, rounds: int) -> dict:
    request = GenerationRequest("txt2img", "a red circle", seed=1, steps=steps, width=size, height=size)

    def with_previews():
        manager.set_previews("approx", 1)
        manager.generate_together([request], on_preview=lambda index, picture: None)

    def without():
        manager.set_previews("off", 1)
        manager.generate(request)

    times = interleaved({"with": with_previews, "without": without}, rounds)
    manager.set_previews("approx", 5)
    side = size // manager.pipelines["txt2img"].vae_scale_factor
    latents = torch.randn(1, 4, side, side)
    started = time.perf_counter()
    for _ in range(20):
        manager.previewer.pictures(latents, (size, size))
    one = (time.perf_counter() - started) / 20
    step = statistics.median(times["without"]) / steps
    return {"ratio": median_ratio(times["with"], times["without"]), "preview ms": one * 1000,
            "step ms": step * 1000}


def main(rounds: int = 5) -> dict:
    from bench.sd15_random import cached

    figures = {"demo 64 px": cost(PipelineManager.load("demo", device="cpu"), 64, 20, rounds),
               "SD 1.5 512 px": cost(PipelineManager.load(str(cached(inpainting=False)), device="cpu"), 512, 2, 2)}
    for name, figure in figures.items():
        print(f"previews  {name}: a preview after every step {figure['ratio']:.3f}x the time without; one preview "
              f"{figure['preview ms']:.2f} ms against a step's {figure['step ms']:.0f} ms "
              f"({figure['preview ms'] / figure['step ms']:.2%})")
    return figures


if __name__ == "__main__":
    main()
