"""GPU speed: SD 1.5 architecture (random weights, built from config), 512x512, fp16, 20 steps, Euler a:
steps per second through the manager vs plain diffusers on the same weights.

    python -m bench.cuda_speed [--rounds N]

Needs CUDA; prints why and exits 0 without it (the benchmark is optional, the tests never need a GPU).
"""

from __future__ import annotations

import argparse
import statistics

import torch

from bench.common import manager_vs_plain, median_ratio
from bench.sd15_random import cached

SIZE, STEPS = 512, 20


def main(rounds: int = 5) -> dict | None:
    if not torch.cuda.is_available():
        print("cuda speed  skipped: no CUDA device on this machine")
        return None
    from models.manager import PipelineManager

    manager = PipelineManager.load(str(cached(inpainting=True)), device="cuda")
    times = manager_vs_plain(manager, SIZE, STEPS, rounds, warmup=2)
    result = {
        "device": torch.cuda.get_device_name(), "attention": manager.runtime.attention,
        "manager_steps_per_s": STEPS / statistics.median(times["manager"]),
        "plain_steps_per_s": STEPS / statistics.median(times["plain"]),
        "time_ratio": median_ratio(times["manager"], times["plain"]),
    }
    print(f"cuda speed  {result['device']}, fp16, {result['attention']}, {SIZE}px, {STEPS} steps: manager "
          f"{result['manager_steps_per_s']:.1f} steps/s, plain diffusers {result['plain_steps_per_s']:.1f} steps/s, "
          f"time ratio {result['time_ratio']:.3f}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    main(parser.parse_args().rounds)
