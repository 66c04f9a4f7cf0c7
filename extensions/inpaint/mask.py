"""Mask preparation (A1111's modules/masking.py): a hard binary mask that says what is repainted, a blurred copy that
says how the result is blended back, and "fill", which paints the masked area with the colours around it."""

from __future__ import annotations

from PIL import Image, ImageFilter, ImageOps

from extensions.inpaint.options import MASK_BLUR

# A1111's fill(): wide blurs first for the overall colour, then narrower ones for detail near the edge.
FILL_PASSES = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


def prepare_mask(mask: Image.Image, invert: bool, blur: int,
                 grey: bool = False) -> tuple[Image.Image, Image.Image]:
    """(hard, soft): hard is L, 255 where the model repaints (>= 128 after optional inversion), 0 elsewhere; soft is
    hard blurred with a Gaussian of radius `blur` (the same image when blur is 0), used to blend the result back.
    `grey` (soft inpainting): grey values are partial strength, so soft is the (inverted) mask itself blurred, and
    hard is 255 wherever it is not 0."""
    if not isinstance(mask, Image.Image):
        raise ValueError(f"mask must be an image, got {type(mask).__name__}")
    if not isinstance(invert, bool):
        raise ValueError(f"invert_mask must be true or false, got {invert!r}")
    blur = MASK_BLUR.check(blur)
    if grey:
        levels = mask.convert("L").point([255 - v if invert else v for v in range(256)])
        hard = levels.point([255 if v else 0 for v in range(256)])
    else:  # threshold and inversion in one lookup table: v >= 128 is "painted"; inverted, v <= 127 is
        levels = hard = mask.convert("L").point([255 if (v >= 128) != invert else 0 for v in range(256)])
    if hard.getbbox() is None:
        if invert:
            raise ValueError(
                "mask is empty after inverting: it covers the whole image, so 'Inpaint not masked' leaves nothing "
                "to repaint; untick invert mask or leave part of the image unpainted"
            )
        raise ValueError("mask is empty: paint the area to repaint (white in an uploaded mask)")
    soft = levels.filter(ImageFilter.GaussianBlur(blur)) if blur else levels
    return hard, soft


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """`image` (RGB) with the white area of `mask` (L) replaced by a smooth spread of the colours around it; pixels
    where mask is 0 come back unchanged. For 4-channel models, which otherwise see the old content under the mask.

    Blurring premultiplied RGBa with the unmasked area as alpha is a weighted blur: masked pixels get the average of
    the unmasked ones near them. Compositing the passes from wide to narrow fills the far inside with broad colour and
    the edges with local colour; the last pass (radius 0) puts the unmasked pixels back exactly.
    """
    outside = ImageOps.invert(mask.convert("L"))
    layer = Image.new("RGBa", image.size)
    layer.paste(image.convert("RGBA").convert("RGBa"), mask=outside)
    result = Image.new("RGBA", image.size)
    for radius, repeats in FILL_PASSES:
        blurred = (layer.filter(ImageFilter.GaussianBlur(radius)) if radius else layer).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")
