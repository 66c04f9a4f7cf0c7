"""Inpainting beyond A1111's core, on this CPU: what soft inpainting, a ControlNet inpaint unit and the detailer cost
against the plain job they extend, interleaved in one run, and LaMa's fill at two picture sizes.

    python -m bench.inpaint_plus [--rounds N]

- soft inpainting: an inpaint job (demo model, 256 px, 20 steps, a grey-and-white mask) with soft inpainting vs
  without; goal at most 1.10x (a VAE encode and a blend of the latents per step);
- ControlNet inpaint_only: the same job with one `inpaint_only` unit (a ControlNet the size of the demo's U-Net,
  random weights) vs without: the ControlNet's own forward passes, about 2x;
- detailer: ADetailer's face_haar unit on scikit-image's astronaut (256 px, "skip img2img", so the photo itself: the
  demo model would paint the face away): the detection and one inpaint pass of 0.4 x 20 = 8 steps, against an
  img2img job of the same photo (20 steps at 0.5: 10 steps);
- LaMa: its fill of a hole in a 512 px and in a 4000 x 3000 picture (big-lama's layout, random weights): the time
  stays bounded, since it works at most 512 px over the hole's surroundings.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.common import interleaved, median_ratio
from extensions.controlnet.extension import ControlNet
from extensions.detailer import Detailer
from extensions.inpaint import Inpaint
from extensions.soft_inpainting import SoftInpaint
from models import lama
from models.manager import PipelineManager
from service.studio import StudioService

SIZE, STEPS = 256, 20


def picture() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((SIZE, SIZE), Image.LANCZOS)


def grey_mask() -> Image.Image:
    mask = Image.new("L", (SIZE, SIZE), 0)
    ImageDraw.Draw(mask).rectangle([40, 60, 120, 200], fill=128)
    ImageDraw.Draw(mask).rectangle([120, 60, 200, 200], fill=255)
    return mask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args(argv).rounds
    from testing.controlnet_files import controlnet_for
    from testing.lama_files import make_lama

    work = Path(tempfile.mkdtemp(prefix="bench-inpaint-plus-"))
    make_lama(work / "annotators" / "lama" / "big-lama.safetensors")
    manager = PipelineManager.load("demo", device="cpu")
    unet = manager.pipelines["txt2img"].unet
    controlnet_for(unet, seed=5, vae_scale_factor=manager.pipelines["txt2img"].vae_scale_factor).save_pretrained(
        work / "ControlNet" / "inpaint_cn")
    service = StudioService(manager, work / "outputs", [
        Inpaint(work / "annotators"), ControlNet(work / "ControlNet", annotator_dir=work / "annotators"),
        SoftInpaint(), Detailer()])
    photo, mask = picture(), grey_mask()
    inpaint = dict(prompt="a red circle", image=photo, mask=mask, steps=STEPS, seed=3, width=SIZE, height=SIZE,
                   strength=1.0)
    img2img = dict(prompt="a face", image=photo, steps=STEPS, seed=3, width=SIZE, height=SIZE, strength=0.5)
    unit = {"module": "inpaint_only", "model": "inpaint_cn"}

    def job(mode, **fields):
        return lambda: service.generate(*service.build(mode, fields))

    times = interleaved({
        "inpaint": job("inpaint", **inpaint),
        "soft": job("inpaint", **inpaint, soft_inpainting=True),
        "controlnet": job("inpaint", **inpaint, controlnet_units=[unit]),
        "img2img": job("img2img", **img2img),
        "detailer": job("img2img", **img2img, ad_skip_img2img=True, detailer_units=[{"ad_model": "face_haar"}]),
    }, rounds)
    for name, base in (("soft", "inpaint"), ("controlnet", "inpaint"), ("detailer", "img2img")):
        print(f"{name}: {median_ratio(times[name], times[base]):.3f}x {base} "
              f"({np.median(times[name]):.2f} s vs {np.median(times[base]):.2f} s, demo model, {SIZE} px, "
              f"{STEPS} steps)")
    for size in ((512, 512), (4000, 3000)):
        big = Image.new("RGB", size, "navy")
        hole = Image.new("L", size, 0)
        ImageDraw.Draw(hole).ellipse([size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4], fill=255)
        lama.fill(big, hole, work / "annotators")  # loaded once, before timing
        started = time.perf_counter()
        lama.fill(big, hole, work / "annotators")
        print(f"lama fill {size[0]}x{size[1]}: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
