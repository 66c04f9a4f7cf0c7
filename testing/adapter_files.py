"""Tiny IP-Adapters (h94's single-file layout), their CLIP image encoder (h94/IP-Adapter's folder layout) and
T2I-Adapters (diffusers folders), shaped for a given U-Net and saved as real files, so the tests load them exactly as
they load `ip-adapter_sd15.safetensors`, `models/image_encoder/` and `TencentARC/t2iadapter_canny_sd15v2`.

h94's layout: `image_proj.proj.weight` [cross-attention width x 4 tokens, embedding width], `image_proj.proj.bias`,
`image_proj.norm.{weight,bias}`, and for each cross-attention layer, in the U-Net's processor order, numbered 1, 3,
5, ... (the self-attention layers take the even numbers), `ip_adapter.N.to_k_ip.weight` and `to_v_ip.weight`
[the layer's width, the cross-attention width].
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from extensions.controlnet.image_encoders import FOLDERS, REPOSITORY

TOKENS = 4  # a plain IP-Adapter's image tokens


def save_image_encoder(annotator_dir: str | Path, encoder: str = "h", width: int = 32, image_size: int = 32,
                       seed: int = 0) -> Path:
    """A CLIPVisionModelWithProjection of `width` (its projection's too) where h94's encoder `encoder` goes."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                              num_attention_heads=2, image_size=image_size, patch_size=8, projection_dim=width)
    folder = Path(annotator_dir) / REPOSITORY / FOLDERS[encoder]
    CLIPVisionModelWithProjection(config).eval().save_pretrained(folder, safe_serialization=True)
    return folder


def ip_adapter_weights(unet, embedding_width: int, seed: int = 0, scale: float = 0.3) -> dict[str, torch.Tensor]:
    """h94's tensors for `unet` (its cross-attention layers and width), random."""
    generator = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim

    def random(*shape):
        return torch.randn(*shape, generator=generator) * scale

    tensors = {"image_proj.proj.weight": random(cross * TOKENS, embedding_width), "image_proj.proj.bias": random(
        cross * TOKENS), "image_proj.norm.weight": 1 + random(cross), "image_proj.norm.bias": random(cross)}
    number = 1
    for name in unet.attn_processors:
        if name.endswith("attn2.processor"):
            attention = unet.get_submodule(name.removesuffix(".processor"))
            width = attention.to_q.out_features
            tensors[f"ip_adapter.{number}.to_k_ip.weight"] = random(width, cross)
            tensors[f"ip_adapter.{number}.to_v_ip.weight"] = random(width, cross)
            number += 2
    return tensors


def save_ip_adapter(unet, path: str | Path, embedding_width: int = 32, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: value.contiguous() for key, value in ip_adapter_weights(unet, embedding_width, seed).items()},
              str(path), metadata={"format": "pt"})
    return path


def save_t2i_adapter(unet, folder: str | Path, seed: int = 0, vae_scale_factor: int = 8) -> Path:
    """A full T2I-Adapter whose levels match `unet`'s down blocks, as a diffusers folder."""
    from diffusers import T2IAdapter

    torch.manual_seed(seed)
    adapter = T2IAdapter(in_channels=3, channels=list(unet.config.block_out_channels), num_res_blocks=1,
                         downscale_factor=vae_scale_factor, adapter_type="full_adapter")
    with torch.no_grad():  # diffusers' init leaves small features; a visible effect at a tiny size needs more
        for parameter in adapter.parameters():
            parameter.mul_(3)
    adapter.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def save_original_t2i_adapter(folder: str | Path, path: str | Path) -> Path:
    """The diffusers T2I-Adapter in `folder` as one file in TencentARC's original layout (`conv_in.*`,
    `body.{level * blocks + block}.block1.*`, `body.{level * blocks}.in_conv.*`), as sd-webui-controlnet's
    `t2iadapter_*` files are."""
    from diffusers import T2IAdapter

    adapter = T2IAdapter.from_pretrained(folder)
    blocks = adapter.config.num_res_blocks
    tensors = {}
    for key, value in adapter.state_dict().items():
        key = key.removeprefix("adapter.")
        if key.startswith("body."):
            _, level, rest = key.split(".", 2)
            if rest.startswith("resnets."):
                _, block, rest = rest.split(".", 2)
                key = f"body.{int(level) * blocks + int(block)}.{rest}"
            else:  # in_conv: the level's first block's
                key = f"body.{int(level) * blocks}.{rest}"
        tensors[key] = value.contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})
    return Path(path)
