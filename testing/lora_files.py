"""Random LoRA files shaped for a given model, in the kohya-ss or the diffusers/PEFT layout.

Nothing can be downloaded on the machines that test and benchmark this project, so the tests and `bench/`
make their LoRAs here, for the loaded model's own layer shapes, and save them as real .safetensors files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def make_lora(
    pipe, path: str | Path, seed: int, layout: str = "diffusers", rank: int = 4, scale: float = 0.3,
    text_encoder: bool = True, cross_attention_width: int | None = None,
) -> Path:
    """Save a LoRA for `pipe`'s U-Net (and text encoder) attention layers. `cross_attention_width` makes it
    for another base (SDXL's is 2048): the cross-attention key/value layers then take that width."""
    if layout not in ("diffusers", "kohya"):
        raise ValueError(f"layout must be diffusers or kohya, got {layout!r}")
    generator = torch.Generator().manual_seed(seed)
    parts = [("unet", pipe.unet, UNET_TARGETS)]
    if text_encoder:
        parts.append(("text_encoder", pipe.text_encoder, TEXT_TARGETS))
    tensors = {}
    for component, model, targets in parts:
        for name, module in model.named_modules():
            name = name.removesuffix(".base_layer")
            if not isinstance(module, torch.nn.Linear) or not name.endswith(targets) or ".lora_" in name:
                continue
            width_in = module.in_features
            if cross_attention_width and name.endswith(("attn2.to_k", "attn2.to_v")):
                width_in = cross_attention_width
            down = torch.randn(rank, width_in, generator=generator) * scale
            up = torch.randn(module.out_features, rank, generator=generator) * scale
            if layout == "kohya":
                key = ("lora_unet_" if component == "unet" else "lora_te_") + name.replace(".", "_")
                tensors.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up,
                                f"{key}.alpha": torch.tensor(float(rank))})
            else:
                tensors.update({f"{component}.{name}.lora_A.weight": down, f"{component}.{name}.lora_B.weight": up})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path
