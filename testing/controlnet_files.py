"""Tiny ControlNets, saved as diffusers folders and as single files in lllyasviel's original key layout.

Nothing can be downloaded on the machines that test this project, so the tests build ControlNets here and save
them as real files, exercising the same loading code as a 1.4 GB `control_v11p_sd15_canny.safetensors`.

The original layout (`control_model.` + LDM names) is what diffusers' `convert_controlnet_checkpoint` reads:
U-Net-like parts renamed as in `models.single_file.unet_to_ldm`, plus `input_hint_block.{0, 2, 4, ..., 14}`
(the conditioning embedding; diffusers always reads its last conv from index 14), `zero_convs.N.0` and
`middle_block_out.0`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ControlNetModel
from safetensors.torch import save_file

from models.single_file import unet_to_ldm

PREFIX = "control_model."


def tiny_controlnet(cross_attention_dim: int = 32, seed: int = 0) -> ControlNetModel:
    """A ControlNet of ~0.4 M parameters shaped like SD 1.5's (4-channel conv_in, cross-attention, 2 levels)."""
    torch.manual_seed(seed)
    return ControlNetModel(
        in_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        conditioning_embedding_out_channels=(16, 32),
        attention_head_dim=8,
        norm_num_groups=8,
    )


def save_original(model: ControlNetModel, path: str | Path) -> Path:
    """Write `model` as one .safetensors file with lllyasviel's key names (`control_model.input_blocks...`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {PREFIX + key: value.contiguous() for key, value in controlnet_to_original(model).items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def controlnet_to_original(model: ControlNetModel) -> dict[str, torch.Tensor]:
    """The state dict renamed to the original layout, without the `control_model.` prefix."""
    own, shared = {}, {}
    for key, value in model.state_dict().items():
        if key.startswith("controlnet_cond_embedding."):
            rest = key.removeprefix("controlnet_cond_embedding.")
            layer, param = rest.rsplit(".", 1)
            if layer == "conv_in":
                index = 0
            elif layer == "conv_out":
                index = 14
            else:  # blocks.N
                index = 2 * (int(layer.split(".")[1]) + 1)
            own[f"input_hint_block.{index}.{param}"] = value
        elif key.startswith("controlnet_down_blocks."):
            _, index, param = key.split(".")
            own[f"zero_convs.{index}.0.{param}"] = value
        elif key.startswith("controlnet_mid_block."):
            own[f"middle_block_out.0.{key.rsplit('.', 1)[1]}"] = value
        else:
            shared[key] = value
    return {**unet_to_ldm(shared, dict(model.config)), **own}


def controlnet_for(unet, seed: int = 0, vae_scale_factor: int = 8) -> ControlNetModel:
    """A random ControlNet that fits `unet` (its blocks, widths and cross-attention), with the 4-channel conv_in
    real SD 1.5 ControlNets have even beside a 9-channel inpainting U-Net. Its output layers are random rather
    than zero (as trained ones are not), so it visibly changes an image."""
    torch.manual_seed(seed)
    config = unet.config
    model = ControlNetModel(
        in_channels=4,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        cross_attention_dim=config.cross_attention_dim,
        down_block_types=tuple(config.down_block_types),
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        # one stride-2 step per halving from the image to the latents (three for SD's VAE)
        conditioning_embedding_out_channels=(8, 16, 16, 32)[: vae_scale_factor.bit_length()],
    )
    with torch.no_grad():
        for layer in [*model.controlnet_down_blocks, model.controlnet_mid_block]:
            layer.weight.normal_(0, 0.5)
    return model
