"""Outpainting as inpainting: a bigger canvas with the picture on it, the new area pre-filled, and a mask over the
new area that reaches a little into the picture so the seam is repainted too.

Intended use, with the mask's 0-area (the picture beyond the overlap band) kept bit for bit:

    canvas, mask = extend_canvas(image, left=128, right=128, overlap=16)
    plan = InpaintPlan.make(canvas, mask, InpaintOptions(mask_blur=0), width, height)
    results = plan.paste_all(pipeline(image=plan.image, mask_image=plan.mask, ...))

prepare_mask binarises the mask at 128, so with mask_blur=0 the repainted seam starts at the middle of the overlap
band (overlap // 2 pixels into the picture); a mask_blur of up to overlap // 8 softens that edge while the
blurred mask still stays 0 beyond the band.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from models.fields import Field
from models.request import MAX_SEED
from models.validate import whole_number

OUTPAINT_MAX = 1024  # pixels per side, as A1111's outpainting scripts allow
FILLS = ("edge", "noise", "lama")
EDGE_BLUR = 16  # softens the streaks that stretching single edge pixels leaves
SIDES = tuple(Field(side, "whole", 0, minimum=0, maximum=OUTPAINT_MAX, step=8, label=side.capitalize(),
                    help=f"pixels added {where}")
              for side, where in (("left", "on the left"), ("right", "on the right"), ("up", "above"),
                                  ("down", "below")))
OVERLAP = Field("overlap", "whole", 16, minimum=0, maximum=256, step=1, label="Seam overlap, pixels",
                help="how far into the picture the seam is repainted")
FILL = Field("fill", "choice", "edge", choices=FILLS, label="Pre-fill new area",
             help="edge: the nearest edge pixels stretched outward; noise: seeded random colours; lama: LaMa's fill "
                  "(its weights in the annotator folder)")
FIELDS = (*SIDES, OVERLAP, FILL)


def extend_canvas(
    image: Image.Image,
    left: int = 0,
    right: int = 0,
    up: int = 0,
    down: int = 0,
    overlap: int = 16,
    fill: str = "edge",
    seed: int = 0,
    lama: Callable[[Image.Image, Image.Image], Image.Image] | None = None,
) -> tuple[Image.Image, Image.Image]:
    """(canvas, mask): `image` (as RGB) at (left, up) on a canvas of (w + left + right, h + up + down) whose new area
    is pre-filled ("edge": the nearest edge pixels stretched outward and blurred; "noise": seeded random colours;
    "lama": `lama(canvas, new_area)` over the edge fill),
    and an L mask that is 255 over the new area, ramps linearly from 255 at the picture's border to 0 `overlap`
    pixels inside it on the extended sides only, and is 0 elsewhere."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be an image, got {type(image).__name__}")
    left, right, up, down = (field.check(value) for field, value in zip(SIDES, (left, right, up, down)))
    if not (left or right or up or down):
        raise ValueError("outpaint: give at least one of left, right, up, down")
    overlap = OVERLAP.check(overlap)
    FILL.check(fill)
    seed = whole_number("seed", seed, 0, MAX_SEED)
    picture = image.convert("RGB")
    w, h = picture.size
    # A band wider than the picture has no "inside" left to ramp down to.
    if (left or right) and overlap > w:
        raise ValueError(f"overlap must not exceed the image width {w} when extending left or right, got {overlap}")
    if (up or down) and overlap > h:
        raise ValueError(f"overlap must not exceed the image height {h} when extending up or down, got {overlap}")

    pixels = np.asarray(picture)
    if fill == "lama" and lama is None:
        raise ValueError("fill 'lama' needs LaMa's weights in the annotator folder")
    if fill in ("edge", "lama"):
        stretched = np.pad(pixels, ((up, down), (left, right), (0, 0)), mode="edge")
        canvas = Image.fromarray(stretched).filter(ImageFilter.GaussianBlur(EDGE_BLUR))
    else:
        noise = np.random.default_rng(seed).integers(0, 256, (h + up + down, w + left + right, 3), dtype=np.uint8)
        canvas = Image.fromarray(noise)
    canvas.paste(picture, (left, up))  # the picture itself stays exact; only the new area is invented
    if fill == "lama":
        new_area = Image.new("L", canvas.size, 255)
        new_area.paste(0, (left, up, left + w, up + h))
        canvas = lama(canvas, new_area)
    return canvas, _mask(w, h, left, right, up, down, overlap)


def _mask(w: int, h: int, left: int, right: int, up: int, down: int, overlap: int) -> Image.Image:
    mask = np.full((h + up + down, w + left + right), 255, dtype=np.uint8)
    # Distance of each picture pixel to the nearest extended border (0 on the border row or column itself).
    distance = np.full((h, w), np.inf)
    columns, rows = np.arange(w)[None, :], np.arange(h)[:, None]
    for extended, edge in ((left, columns), (right, w - 1 - columns), (up, rows), (down, h - 1 - rows)):
        if extended:
            distance = np.minimum(distance, edge)
    # 255 at distance 0, falling linearly to 0 at `overlap` pixels in; the max of the sides' ramps, as one formula.
    ramp = np.clip(np.round(255 * (overlap - distance) / max(overlap, 1)), 0, 255) if overlap else 0
    mask[up:up + h, left:left + w] = ramp
    return Image.fromarray(mask)
