"""Outpaint: extend the canvas and inpaint the new area (canvas.py), as the /outpaint endpoint and the inpaint tab's
Outpaint button (extension.py)."""

from extensions.outpaint.canvas import extend_canvas
from extensions.outpaint.extension import Outpaint

__all__ = ["extend_canvas", "Outpaint"]
