"""sd-webui-controlnet's inpaint preprocessors, for control_v11p_sd15_inpaint and its kind: the control map is the
picture with its hole marked, which the ControlNet reads as -1 there (its training's "masked pixel").

Here a picture with a hole is an RGBA image whose alpha is 0 in the hole and 255 elsewhere (a transparent hole, as
a preview shows it); the unit's mask (white = hole) or the inpaint tab's makes it.

- `inpaint_global_harmonious`: the map only; the job repaints the whole picture, in harmony with the hint;
- `inpaint_only`: the same map, and the job keeps everything outside the hole (an inpaint job: in txt2img and
  img2img the unit's picture and mask become the job's);
- `inpaint_only+lama`: as `inpaint_only`, the hole first filled by LaMa, in the map and in the picture the
  denoising starts from.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from extensions.controlnet import detectors
from models import lama

HARMONIOUS, ONLY, ONLY_LAMA = "inpaint_global_harmonious", "inpaint_only", "inpaint_only+lama"
KEEPS_THE_REST = (ONLY, ONLY_LAMA)  # the job keeps what is outside the hole


def with_hole(picture: Image.Image, mask: Image.Image, name: str = "mask") -> Image.Image:
    """`picture` as RGBA with alpha 0 where `mask` is at least 128 (the hole), 255 elsewhere; the sizes must agree."""
    if mask.size != picture.size:
        raise ValueError("{} is {}x{} but its picture is {}x{}: they must be the same size".format(
            name, *mask.size, *picture.size))
    picture = picture.convert("RGBA")
    picture.putalpha(mask.convert("L").point([0 if v >= 128 else 255 for v in range(256)]))
    return picture


def has_hole(picture: Image.Image) -> bool:
    return picture.mode == "RGBA" and picture.getchannel("A").getextrema()[0] < 128


def hole(picture: Image.Image) -> Image.Image:
    """L: 255 in the hole (alpha under 128), 0 elsewhere."""
    return picture.getchannel("A").point([255 if v < 128 else 0 for v in range(256)])


def marked(rgba: np.ndarray, a=None, b=None) -> np.ndarray:
    """The map of `inpaint_global_harmonious` and `inpaint_only`: the picture, its hole's alpha rounded to 0."""
    out = rgba.copy()
    out[..., 3] = np.where(rgba[..., 3] >= 128, 255, 0)
    return out


def lama_filled(rgba: np.ndarray, a=None, b=None) -> np.ndarray:
    """The map of `inpaint_only+lama`: the hole filled by LaMa (its weights in the annotator folder), still marked."""
    picture = Image.fromarray(np.ascontiguousarray(rgba), "RGBA")
    filled = lama.fill(picture.convert("RGB"), hole(picture), detectors.annotator_dir())
    return marked(np.dstack([np.asarray(filled), rgba[..., 3]]))


def lama_missing() -> str | None:
    return lama.missing(detectors.annotator_dir())


def control_tensor(picture: Image.Image):
    """The map as the ControlNet takes it: (1, 3, H, W) in [0, 1], -1 in the hole."""
    import torch

    pixels = torch.from_numpy(np.asarray(picture.convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    holes = torch.from_numpy(np.asarray(hole(picture)) > 0)[None, None].expand_as(pixels)
    return torch.where(holes, torch.full_like(pixels, -1.0), pixels)
