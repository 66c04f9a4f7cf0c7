"""VAE files for the tests and bench: the demo model's VAE with changed weights, as an A1111 (LDM) single
`.safetensors` file and as a diffusers folder."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.single_file import vae_to_ldm


def changed_vae(vae, seed: int = 0, amount: float = 0.05):
    """A copy of `vae` whose decoder weights are moved a little: it decodes the same latents to other pixels."""
    other = copy.deepcopy(vae)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in other.decoder.named_parameters():
            if name.endswith("weight"):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * amount * parameter.std())
    return other


def save_ldm_vae(vae, path: Path) -> Path:
    """`vae` as A1111's standalone VAE files are (vae-ft-mse-840000-ema-pruned.safetensors): LDM keys, no prefix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = vae_to_ldm({key: value.detach().contiguous() for key, value in vae.state_dict().items()}, vae.config)
    save_file({key: value.contiguous() for key, value in state.items()}, path)
    return path
