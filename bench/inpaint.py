"""Inpainting a small area of a large photo: "Only masked" (the masked crop generated at 512 px) vs "Whole
picture" (the whole photo generated, at the same 512 px budget and at 1024 px; even at 1024 px the 300 px object
gets 102 px of the generation, against 371 px in the only-masked crop).
Time and peak memory of one inpaint on the demo model, each case in its own process so peaks do not mix.

    python -m bench.inpaint
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

PHOTO, STEPS, ROUNDS = (3000, 2000), 4, 2
CASES = {
    "only masked, 512 px": {"inpaint_area": "Only masked", "width": 512, "height": 512},
    "whole picture, 512 px budget": {"inpaint_area": "Whole picture", "width": 512, "height": 512},
    "whole picture, 1024 px budget": {"inpaint_area": "Whole picture", "width": 1024, "height": 1024},
}


def case(name: str) -> dict:
    """Runs inside the child process: one warm-up at 256 px, then the measured inpaint."""
    import tempfile

    import numpy as np
    from PIL import Image, ImageDraw

    from bench.memory import peak_rss_during
    from extensions.inpaint import Inpaint
    from models.manager import PipelineManager
    from service.studio import StudioService

    service = StudioService(PipelineManager.load("demo", device="cpu"), tempfile.mkdtemp(), [Inpaint()])
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*PHOTO[::-1], 3), dtype=np.uint8))
    mask = Image.new("L", PHOTO, 0)
    ImageDraw.Draw(mask).ellipse([1300, 800, 1600, 1150], fill=255)  # a 300x350 px object to replace
    settings = {"prompt": "a red ball", "steps": STEPS, "seed": 1, "strength": 1.0}
    service.run("inpaint", dict(image=photo.resize((256, 256)), mask=mask.resize((256, 256)), width=256, height=256,
                                **settings))
    started = time.perf_counter()
    peak = peak_rss_during(lambda: service.run("inpaint", dict(image=photo, mask=mask, **CASES[name], **settings)))
    return {"seconds": time.perf_counter() - started, "peak_mib": peak}


def main() -> dict:
    results: dict[str, list[dict]] = {name: [] for name in CASES}
    for _ in range(ROUNDS):  # interleaved, each run a fresh process
        for name in CASES:
            output = subprocess.run([sys.executable, "-m", "bench.inpaint", name], capture_output=True, text=True,
                                    check=True).stdout
            results[name].append(json.loads(output.strip().splitlines()[-1]))
    figures = {name: {key: sorted(run[key] for run in runs)[len(runs) // 2] for key in ("seconds", "peak_mib")}
               for name, runs in results.items()}
    base = figures["only masked, 512 px"]
    for name, figure in figures.items():
        print(f"inpaint  {PHOTO[0]}x{PHOTO[1]} photo, {STEPS} steps, {name}: {figure['seconds']:.2f} s "
              f"({figure['seconds'] / base['seconds']:.2f}x), peak +{figure['peak_mib']:,.0f} MiB "
              f"({figure['peak_mib'] / base['peak_mib']:.2f}x)")
    return figures


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(case(sys.argv[1])))
    else:
        main()
