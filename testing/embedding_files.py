"""Textual-inversion embedding files as A1111 and diffusers save them, with seeded random vectors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def make_embedding(path: Path, width: int, vectors: int = 1, seed: int = 0, style: str = "a1111") -> torch.Tensor:
    """Write an embedding: "a1111" (emb_params), "string_to_param" (A1111's key, flattened) or "diffusers"
    (learned_embeds: one key, the token). Returns its vectors, (vectors, width)."""
    values = torch.randn((vectors, width), generator=torch.Generator().manual_seed(seed))
    key = {"a1111": "emb_params", "string_to_param": "string_to_param.*", "diffusers": f"<{path.stem}>"}[style]
    tensor = values[0] if style == "diffusers" and vectors == 1 else values
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor.contiguous()}, str(path))
    return values
