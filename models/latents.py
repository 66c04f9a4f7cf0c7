"""Decoding the pipelines' latents outside a pipeline call (a stopped job's last step, a decode in tiles after running
out of memory, hires fix's first pass) and encoding pictures (soft inpainting's original, a latent fill), by the rule
diffusers' own calls follow: a VAE in float16 whose config says `force_upcast` (SDXL's: it overflows in float16)
works in float32, then goes back to float16. An fp16-fix VAE (madebyollin/sdxl-vae-fp16-fix, chosen as the
request's VAE) says no upcast and works in float16."""

from __future__ import annotations

import contextlib

import torch


def pictures(pipe, latents: torch.Tensor) -> list:
    """Scaled latents as the pipeline's pictures (PIL), through its VAE and image processor."""
    return pipe.image_processor.postprocess(decode(pipe.vae, latents), output_type="pil")


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents to pixels in [-1, 1] (the VAE's output, in its dtype or float32)."""
    with upcast_if_needed(vae), torch.no_grad():
        return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype), return_dict=False)[0]


@contextlib.contextmanager
def upcast_if_needed(vae):
    """The VAE in float32 for the block when it is float16 and its config says `force_upcast`."""
    upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        yield vae
    finally:
        if upcast:
            vae.to(torch.float16)


def encode(pipe, pictures: list, width: int, height: int) -> torch.Tensor:
    """Pictures (PIL) as the pipeline's scaled latents at width x height: the VAE's mean, by the same upcast rule."""
    with upcast_if_needed(pipe.vae) as vae, torch.no_grad():
        pixels = pipe.image_processor.preprocess(pictures, height=height, width=width).to(vae.device, vae.dtype)
        return vae.encode(pixels).latent_dist.mode() * vae.config.scaling_factor
