"""Random LoRA files shaped for a given model, in the kohya-ss or the diffusers/PEFT layout.

Nothing can be downloaded on the machines that test and benchmark this project, so the tests and `bench/`
make their LoRAs here, for the loaded model's own layer shapes, and save them as real .safetensors files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from models.single_file import unet_to_ldm

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def make_lora(
    pipe, path: str | Path, seed: int, layout: str = "diffusers", rank: int = 4, scale: float = 0.3,
    text_encoder: bool = True, cross_attention_width: int | None = None,
) -> Path:
    """Save a LoRA for `pipe`'s U-Net (and text encoders') attention layers. `cross_attention_width` makes it
    for another base (SDXL's is 2048): the cross-attention key/value layers then take that width. The kohya layout
    names the layers as kohya-ss's scripts do: the text encoders' from `text_model`, an SDXL U-Net's by its LDM
    blocks (`input_blocks_4_1_...`), with the text encoders `lora_te1_` and `lora_te2_`."""
    if layout not in ("diffusers", "kohya"):
        raise ValueError(f"layout must be diffusers or kohya, got {layout!r}")
    generator = torch.Generator().manual_seed(seed)
    xl = getattr(pipe, "text_encoder_2", None) is not None
    parts = [("unet", pipe.unet, UNET_TARGETS)]
    if text_encoder:
        parts.append(("text_encoder", pipe.text_encoder, TEXT_TARGETS))
        if xl:
            parts.append(("text_encoder_2", pipe.text_encoder_2, TEXT_TARGETS))
    kohya_prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if xl else "lora_te_",
                      "text_encoder_2": "lora_te2_"}
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
                key = kohya_prefixes[component] + _kohya_name(component, name, pipe.unet.config, xl)
                tensors.update({f"{key}.lora_down.weight": down, f"{key}.lora_up.weight": up,
                                f"{key}.alpha": torch.tensor(float(rank))})
            else:
                tensors.update({f"{component}.{name}.lora_A.weight": down, f"{component}.{name}.lora_B.weight": up})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def make_lycoris(pipe, path: str | Path, seed: int, kind: str = "loha", rank: int = 4, scale: float = 0.3,
                 alpha: float = 2.0) -> Path:
    """Save a LyCORIS file (LoHa or LoKr, kohya-ss's layout) for `pipe`'s attention layers, U-Net and text
    encoder(s). LoKr: w1 whole (a 4 x 4 factor of each side), w2 as the product of two rank-`rank` matrices."""
    generator = torch.Generator().manual_seed(seed)
    xl = getattr(pipe, "text_encoder_2", None) is not None
    parts = [("unet", pipe.unet, UNET_TARGETS), ("text_encoder", pipe.text_encoder, TEXT_TARGETS)]
    if xl:
        parts.append(("text_encoder_2", pipe.text_encoder_2, TEXT_TARGETS))
    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if xl else "lora_te_", "text_encoder_2": "lora_te2_"}

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * scale

    tensors = {}
    for component, model, targets in parts:
        for name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or not name.endswith(targets):
                continue
            key = prefixes[component] + _kohya_name(component, name, pipe.unet.config, xl)
            out, width = module.out_features, module.in_features
            if kind == "loha":
                layer = {"hada_w1_a": random(out, rank), "hada_w1_b": random(rank, width),
                         "hada_w2_a": random(out, rank), "hada_w2_b": random(rank, width)}
            else:
                layer = {"lokr_w1": random(4, 4), "lokr_w2_a": random(out // 4, rank),
                         "lokr_w2_b": random(rank, width // 4)}
            tensors.update({f"{key}.{role}": tensor for role, tensor in layer.items()})
            tensors[f"{key}.alpha"] = torch.tensor(alpha)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def _kohya_name(component: str, name: str, unet_config, xl: bool) -> str:
    if component != "unet":
        name = name if name.startswith("text_model.") else f"text_model.{name}"  # transformers >= 5.6 flattened it
    elif xl:  # kohya-ss names an SDXL U-Net's layers as the LDM checkpoint does
        name = next(iter(unet_to_ldm({f"{name}.weight": None}, unet_config))).removesuffix(".weight")
    return name.replace(".", "_")
