"""Hires fix against generating directly at the large size: the time ratio, interleaved, through the studio service
(the Latent upscaler, A1111's defaults: denoising strength 0.7, as many hires steps as first-pass steps).

    python -m bench.hires [--sd15]

- the demo model, 64 -> 128 px, 20 steps (and 20 hires steps), 3 rounds;
- with --sd15, also the SD 1.5 architecture (random weights, bench/sd15_random.py; the 9-channel inpainting U-Net,
  as the app's default) 512 -> 1024 px at 2 steps (and 2 hires steps), one round: minutes on a CPU.

The second pass denoises at the large size as many steps as the direct generation does, so hires fix costs the
first pass more; what it buys is composition at the model's native size (no repeated subjects).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from bench.common import interleaved, median_ratio
from extensions.upscale import Upscale
from models.manager import PipelineManager
from service.studio import StudioService


def ratio(spec: str, size: int, steps: int, rounds: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        service = StudioService(PipelineManager.load(spec, device="cpu"), folder, [Upscale(folder)])
        fields = {"prompt": "a red circle and a blue square", "seed": 1, "steps": steps}

        def hires():
            service.run("txt2img", {**fields, "width": size, "height": size, "enable_hr": True, "hr_scale": 2})

        def direct():
            service.run("txt2img", {**fields, "width": 2 * size, "height": 2 * size})

        times = interleaved({"hires": hires, "direct": direct}, rounds, warmup=1 if rounds > 1 else 0)
    figures = {"hires s": statistics.median(times["hires"]), "direct s": statistics.median(times["direct"]),
               "ratio": median_ratio(times["hires"], times["direct"])}
    print(f"hires  {spec} {size} -> {2 * size} px, {steps} + {steps} steps: hires fix {figures['hires s']:.2f} s, "
          f"direct at {2 * size} px {figures['direct s']:.2f} s: {figures['ratio']:.2f}x")
    return figures


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sd15", action="store_true", help="also the SD 1.5 architecture at 512 -> 1024 px")
    args = parser.parse_args(argv)
    figures = {"demo": ratio("demo", 64, 20, 3)}
    if args.sd15:
        from bench.sd15_random import cached

        figures["sd15"] = ratio(str(cached(inpainting=True)), 512, 2, 1)
    return figures


if __name__ == "__main__":
    main()
