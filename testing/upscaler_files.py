"""Upscaler model files for the tests and bench: tiny Real-ESRGAN-compact and ESRGAN networks in spandrel's own
architectures (the state dicts real files have), random weights, saved as .safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def make_upscaler(path: Path, kind: str = "compact", scale: int = 2, seed: int = 0) -> Path:
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    model = (Compact(num_feat=8, num_conv=2, upscale=scale) if kind == "compact"
             else ESRGAN(num_filters=8, num_blocks=1, scale=scale))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, path)
    return path
