"""sd-webui-controlnet's effective region mask: a unit acts only where its region is white. A ControlNet's and a
T2I-Adapter's residuals are weighted by it at each of their sizes; an IP-Adapter's attention output through
diffusers' `ip_adapter_masks` (image_prompts.py)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def weights(region: Image.Image, height: int, width: int) -> torch.Tensor:
    """The region as [1, 1, height, width] weights from 0 (black) to 1 (white), resized to that grid."""
    pixels = np.asarray(region.convert("L").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    return torch.from_numpy(pixels / 255.0)[None, None]


def weights_like(region: Image.Image, tensor: torch.Tensor) -> torch.Tensor:
    """The region's weights at a residual's own size, on its device and in its dtype (to multiply it by)."""
    return weights(region, *tensor.shape[-2:]).to(tensor.device, tensor.dtype)
