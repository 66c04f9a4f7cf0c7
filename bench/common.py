"""Helpers shared by the benchmarks: interleaved timing and the plain diffusers call we compare against."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionInpaintPipeline
from PIL import Image

from models.request import GenerationRequest


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Run the candidates in turn, round after round, so machine noise hits all of them alike."""
    for _ in range(warmup):
        for run in candidates.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, run in candidates.items():
            started = time.perf_counter()
            run()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    return times


def median_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median of the per-round ratios: robust against a slow round that hit only one side."""
    return statistics.median(a / b for a, b in zip(numerator, denominator))


def manager_vs_plain(manager, size: int, steps: int, rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """One txt2img generation through the manager and the same call to plain diffusers on the same weights
    (sampler Euler a, seed, size, steps), interleaved; the times of each."""
    request = GenerationRequest("txt2img", "a photo of a cat", width=size, height=size, steps=steps, seed=1,
                                sampler="Euler a")
    plain = _plain_inpaint_txt2img(manager.pipelines["inpaint"].components, size, steps, seed=1)
    return interleaved({"manager": lambda: manager.generate(request), "plain": plain}, rounds, warmup)


def _plain_inpaint_txt2img(components: dict, size: int, steps: int, seed: int,
                           device: str = "cpu") -> Callable[[], object]:
    """What a user of plain diffusers writes for txt2img on an inpainting model: full mask, strength 1."""
    pipe = StableDiffusionInpaintPipeline(**components)
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    blank, full = Image.new("RGB", (size, size)), Image.new("L", (size, size), 255)

    def run():
        return pipe(
            prompt="a photo of a cat", negative_prompt="", image=blank, mask_image=full, width=size, height=size,
            strength=1.0, num_inference_steps=steps, guidance_scale=7.0,
            generator=torch.Generator("cpu").manual_seed(seed),
        ).images

    return run
