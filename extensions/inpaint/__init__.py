"""Inpainting as A1111 does it, as pure image geometry: mask preparation, the whole-picture / only-masked plan that
turns a picture and mask into the model's inputs and its outputs back into full pictures, and outpainting canvases.
No torch here: the pipelines consume `InpaintPlan.image` / `.mask` and hand their images to `InpaintPlan.paste`."""

from __future__ import annotations

from extensions.inpaint.mask import prepare_mask
from extensions.inpaint.options import INPAINT_AREAS, MASKED_CONTENT, InpaintOptions
from extensions.inpaint.outpaint import extend_canvas
from extensions.inpaint.plan import InpaintPlan

__all__ = ["InpaintOptions", "InpaintPlan", "prepare_mask", "extend_canvas", "INPAINT_AREAS", "MASKED_CONTENT"]
