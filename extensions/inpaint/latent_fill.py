"""A1111's masked content "latent noise" and "latent nothing" for 4-channel models: the model starts the masked
area from seeded noise or from zeros instead of from the masked pixels' latents (an inpainting U-Net sees the
masked image itself, so it has no use for them)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from models.latents import encode

LATENT_FILLS = ("latent noise", "latent nothing")


def filled_latents(pipe, image: Image.Image, mask: Image.Image, fill: str, seeds: list[int]) -> torch.Tensor:
    """The image's latents with the (rounded) masked area replaced by seeded noise or zeros, one per image of the
    batch."""
    latents = encode(pipe, [image], *image.size)
    height, width = latents.shape[-2:]
    area = np.round(np.asarray(mask.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255)
    area = torch.from_numpy(area).to(latents)
    filled = []
    for seed in seeds:
        if fill == "latent noise":
            replacement = torch.randn(latents.shape, generator=torch.Generator("cpu").manual_seed(seed)).to(latents)
        else:
            replacement = torch.zeros_like(latents)
        filled.append(latents * (1 - area) + replacement * area)
    return torch.cat(filled)


def hook(pipe, request, arguments: dict, parameters: dict) -> tuple:
    """The manager hook: for an inpaint request on a 4-channel U-Net whose part asks for a latent fill, the pipeline
    takes the filled latents as already-encoded `image` and `masked_image_latents` (the start and the kept area)."""
    options = request.part("inpaint")
    if request.mode != "inpaint" or options is None or options.masked_content not in LATENT_FILLS \
            or pipe.unet.config.in_channels == 9:
        return pipe, arguments
    size = (request.width, request.height)
    image = request.image.convert("RGB").resize(size, Image.LANCZOS)
    seeds = [request.seed + i for i in range(request.batch_size)]
    latents = filled_latents(pipe, image, request.mask.convert("L"), options.masked_content, seeds)
    return pipe, {**arguments, "image": latents, "masked_image_latents": latents}
