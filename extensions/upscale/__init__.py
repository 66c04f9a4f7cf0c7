"""Upscaler models (ESRGAN, Real-ESRGAN, SwinIR and the others spandrel detects), the Extras tab and A1111's
extras routes. See extension.py."""

from extensions.upscale.extension import Upscale

__all__ = ["Upscale"]
