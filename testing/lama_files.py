"""A LaMa file as a user puts one in the annotator folder: big-lama's layout (spandrel's LaMa has that one size),
random weights from a seed, saved as `.safetensors` in bfloat16 (102 MB: half the float32 file)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def make_lama(path: Path, seed: int = 0) -> Path:
    from spandrel.architectures.LaMa import LaMa

    torch.manual_seed(seed)
    model = LaMa(in_nc=4, out_nc=3)
    tensors = {name: (value.to(torch.bfloat16) if value.is_floating_point() else value).contiguous()
               for name, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, path)
    return path
