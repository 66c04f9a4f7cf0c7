"""Fit the demo model's latent-to-RGB map for live previews (models/previews.py) and ship it beside the model:

    python -m training.fit_latent_rgb

Renders shapes scenes, encodes them with the model's VAE into the latents the pipeline holds (scaled), decodes
them, and fits RGB (averaged over each latent pixel's area) from the latents by least squares.
"""

from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from models.demo import shipped
from models.previews import FITTED_FILE, fit_latent_rgb
from training.common import batches, to_tensor


@torch.no_grad()
def main(scenes: int = 256) -> dict:
    vae = AutoencoderKL.from_pretrained(shipped.PIPELINE_DIR / "vae").eval()
    images, _, _ = next(batches(seed=20261130, batch_size=scenes))
    pixels = to_tensor(images).cpu()
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
    decoded = vae.decode(latents / vae.config.scaling_factor).sample.clamp(-1, 1)
    factor = pixels.shape[-1] // latents.shape[-1]
    fitted = fit_latent_rgb(latents, F.avg_pool2d(decoded, factor))
    (shipped.PIPELINE_DIR / FITTED_FILE).write_text(json.dumps(fitted, indent=1) + "\n")
    return fitted


if __name__ == "__main__":
    print(main())
