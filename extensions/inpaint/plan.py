"""Inpaint geometry: which part of the picture the model sees, at what size, and how its output goes back.

A1111's two inpaint areas. "Whole picture" generates the whole image, scaled to fit the requested size. "Only masked"
crops the mask's bounding box plus padding, grown to the requested aspect ratio, and generates that crop at exactly
the requested size, so a small mask gets the model's full resolution. Either way the result is blended back through
the blurred mask, so every pixel outside it is the original, bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from extensions.inpaint.mask import fill, prepare_mask
from extensions.inpaint.options import InpaintOptions
from models.request import MIN_SIDE
from models.validate import multiple_of_8

Box = tuple[int, int, int, int]  # (left, top, right, bottom), right and bottom exclusive, as PIL's crop takes it


def round8(x: float) -> int:
    """The nearest multiple of 8, at least 8: the VAE downsamples by 8."""
    return max(8, math.floor(x / 8 + 0.5) * 8)


@dataclass(frozen=True)
class InpaintPlan:
    original: Image.Image  # RGB, input size: what paste blends onto
    soft_mask: Image.Image  # L, input size: the paste-back's weight; 0 means "keep the original pixel"
    box: Box  # the region of the original that is generated
    image: Image.Image  # RGB, generation size: the model's init image
    mask: Image.Image  # L, generation size: the model's mask

    @property
    def size(self) -> tuple[int, int]:
        """The generation size (both sides multiples of 8)."""
        return self.image.size

    @classmethod
    def make(
        cls, image: Image.Image, mask: Image.Image, options: InpaintOptions, width: int, height: int,
        grey: bool = False, lama: Callable[[Image.Image, Image.Image], Image.Image] | None = None,
    ) -> InpaintPlan:
        """`grey` (soft inpainting): the mask's grey values reach the model as they are, and the paste-back keeps
        the original only where the mask is 0 (soft inpainting's own composite has blended the rest). `lama(picture,
        mask)`: LaMa's fill, for masked content "lama"."""
        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be an image, got {type(image).__name__}")
        if not isinstance(mask, Image.Image):
            raise ValueError(f"mask must be an image, got {type(mask).__name__}")
        if mask.size != image.size:
            raise ValueError(f"mask size {mask.size} differs from image size {image.size}")
        if not isinstance(options, InpaintOptions):
            raise ValueError(f"options must be InpaintOptions, got {type(options).__name__}")
        width, height = multiple_of_8("width", width), multiple_of_8("height", height)
        original = image.convert("RGB")  # RGBA/P inputs: the model and the result are RGB
        hard, soft = prepare_mask(mask, options.invert_mask, options.mask_blur, grey)
        if options.only_masked:
            box = expand_crop_region(crop_region(soft, options.padding), width, height, *original.size)
            size = (width, height)
        else:
            box = (0, 0, *original.size)
            scale = min(width / original.width, height / original.height)
            # Never under the model's smallest size: a very wide or tall picture is stretched a little there.
            size = (max(MIN_SIDE, round8(original.width * scale)), max(MIN_SIDE, round8(original.height * scale)))
        # "fill" and "lama" work on the whole picture so the crop's fill comes from all around the mask.
        source = original
        if options.masked_content == "fill":
            source = fill(original, hard)
        elif options.masked_content == "lama":
            if lama is None:
                raise ValueError("masked content 'lama' needs LaMa")
            source = lama(original, hard)
        return cls(
            original=original,
            soft_mask=soft.point([255 if v else 0 for v in range(256)]) if grey else soft,
            box=box,
            image=source.crop(box).resize(size, Image.Resampling.LANCZOS),
            mask=soft.crop(box).resize(size, Image.Resampling.BILINEAR),
        )

    def paste(self, generated: Image.Image) -> Image.Image:
        """`generated` (at the generation size) put back into the original: RGB, input size, and identical to the
        original wherever soft_mask is 0."""
        if generated.size != self.size:
            raise ValueError(f"generated image size {generated.size} differs from the generation size {self.size}")
        left, top, right, bottom = self.box
        patch = generated.convert("RGB").resize((right - left, bottom - top), Image.Resampling.LANCZOS)
        canvas = self.original.copy()
        canvas.paste(patch, (left, top))
        return Image.composite(canvas, self.original, self.soft_mask)

    def paste_all(self, images: list[Image.Image]) -> list[Image.Image]:
        return [self.paste(image) for image in images]


def crop_region(mask: Image.Image, padding: int) -> Box:
    """A1111's get_crop_region: the bounding box of the mask's non-zero pixels grown by `padding` on every side,
    clamped to the image."""
    left, top, right, bottom = mask.getbbox()  # never empty: prepare_mask refuses a mask with nothing painted
    return (
        max(left - padding, 0),
        max(top - padding, 0),
        min(right + padding, mask.width),
        min(bottom + padding, mask.height),
    )


def expand_crop_region(box: Box, width: int, height: int, image_width: int, image_height: int) -> Box:
    """A1111's expand_crop_region: `box` grown in its short direction to the aspect ratio width:height, symmetrically,
    shifted back inside the image where it overhangs; where the image is too small it is clamped to the image and
    the crop is later stretched a little to width x height."""
    left, top, right, bottom = box
    if (right - left) * height > (bottom - top) * width:  # wider than the target: grow the height
        top, bottom = _grow(top, bottom, round((right - left) * height / width), image_height)
    else:
        left, right = _grow(left, right, round((bottom - top) * width / height), image_width)
    return left, top, right, bottom


def _grow(start: int, end: int, length: int, limit: int) -> tuple[int, int]:
    """[start, end) widened to `length` around its centre, then moved (or, if longer than limit, clamped) into
    [0, limit)."""
    extra = max(length - (end - start), 0)
    start, end = start - extra // 2, end + extra - extra // 2
    if end > limit:
        start, end = start - (end - limit), limit
    if start < 0:
        start, end = 0, min(end - start, limit)
    return start, end
