"""Inpainting as A1111 does it: mask preparation and the whole-picture / only-masked plan as pure image geometry
(mask.py, plan.py: no torch), latent noise / nothing (latent_fill.py), and the extension that puts them around a
request (extension.py) with its settings panel (panel.py)."""

from __future__ import annotations

from extensions.inpaint.extension import Inpaint
from extensions.inpaint.mask import prepare_mask
from extensions.inpaint.options import INPAINT_AREAS, MASKED_CONTENT, InpaintOptions
from extensions.inpaint.plan import InpaintPlan

__all__ = ["Inpaint", "InpaintOptions", "InpaintPlan", "prepare_mask", "INPAINT_AREAS", "MASKED_CONTENT"]
