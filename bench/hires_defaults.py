"""Which hires fix settings keep the demo model's picture: its seeded prompts made at 64 px, then hires fixed with
each upscaler, denoising strength and scale; the share of results whose background, colour and shape still match
the prompt (training/evaluate_shapes.py), beside the first pass's own.

    python -m bench.hires_defaults [--prompts 24]

The demo model knows 64 px only: at 128 px even one step at the lowest noise redraws the picture (a circle becomes
two); at 96 px it still draws what it was asked. Its hires defaults (extensions/upscale/defaults.py) are chosen
from these figures.
"""

from __future__ import annotations

import argparse
import tempfile

from PIL import Image

from extensions.upscale import Upscale
from models.manager import PipelineManager
from service.studio import StudioService
from training.evaluate_shapes import evaluate, seeded_prompts

# (upscaler, denoising strength, scale): A1111's defaults first
SETTINGS = [("Latent", 0.7, 2), ("Lanczos", 0.35, 2), ("Lanczos", 0.1, 2), ("Latent", 0.7, 1.5), ("Latent", 0.5, 1.5),
            ("Lanczos", 0.7, 1.5), ("Lanczos", 0.5, 1.5), ("Lanczos", 0.3, 1.5)]


def main(count: int) -> dict:
    prompts = seeded_prompts(count)
    scenes = [scene for _, scene in prompts]
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        service = StudioService(PipelineManager.load("demo", device="cpu"), folder, [Upscale(folder)])

        def images(**hires) -> list:
            made = []
            for index, (prompt, _) in enumerate(prompts):
                generation = service.run("txt2img", {"prompt": prompt, "seed": index, "steps": 20, "width": 64,
                                                     "height": 64, **hires})
                made.append(Image.open(generation.files[0]).convert("RGB"))
            return made

        figures["first pass (64 px)"] = evaluate(images(), scenes)
        for upscaler, strength, scale in SETTINGS:
            figures[f"{upscaler}, {strength}, x{scale}"] = evaluate(images(
                enable_hr=True, hr_upscaler=upscaler, hr_denoising_strength=strength, hr_scale=scale), scenes)
    for name, result in figures.items():
        print(f"hires defaults  {name:20s} background {result['background']:.2f}  colour {result['colour']:.2f}  "
              f"shape {result['shape']:.2f}  (n={result['n']})")
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=24)
    main(parser.parse_args().prompts)
