"""Overhead: one txt2img generation through the pipeline manager vs the same plain diffusers call.

    python -m bench.overhead [--rounds N]

Both sides use the same weights in memory, sampler (Euler a), seed, size and steps; runs are interleaved.
Goal: ratio at most 1.03.
"""

from __future__ import annotations

import argparse
import statistics

from bench.common import manager_vs_plain, median_ratio
from bench.sd15_random import cached
from models.manager import PipelineManager


def measure(model: str, size: int, steps: int, rounds: int) -> dict:
    times = manager_vs_plain(PipelineManager.load(model, device="cpu"), size, steps, rounds)
    return {
        "model": model if model == "demo" else "SD 1.5 architecture, random weights",
        "size": size, "steps": steps, "rounds": rounds,
        "manager_s": statistics.median(times["manager"]), "plain_s": statistics.median(times["plain"]),
        "ratio": median_ratio(times["manager"], times["plain"]),
    }


def main(rounds: int = 7) -> list[dict]:
    results = [
        measure("demo", 128, 20, rounds),  # tiny model: the fixed per-request cost weighs most here
        measure(str(cached(inpainting=True)), 128, 4, 3),
    ]
    for r in results:
        print(f"overhead  {r['model']}, {r['size']}px, {r['steps']} steps: manager {r['manager_s']:.3f} s, "
              f"plain diffusers {r['plain_s']:.3f} s, ratio {r['ratio']:.3f} (median of {r['rounds']} rounds)")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    main(parser.parse_args().rounds)
