"""Decoding the pipelines' latents outside a pipeline call (a stopped job's last step, a decode in tiles after running
out of memory, hires fix's first pass), by the rule diffusers' own calls follow: a VAE in float16 whose config says
`force_upcast` (SDXL's: it overflows in float16) decodes in float32, then goes back to float16. An fp16-fix VAE
(madebyollin/sdxl-vae-fp16-fix, chosen as the request's VAE) says no upcast and decodes in float16."""

from __future__ import annotations

import torch


def pictures(pipe, latents: torch.Tensor) -> list:
    """Scaled latents as the pipeline's pictures (PIL), through its VAE and image processor."""
    return pipe.image_processor.postprocess(decode(pipe.vae, latents), output_type="pil")


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents to pixels in [-1, 1] (the VAE's output, in its dtype or float32)."""
    upcast = vae.dtype == torch.float16 and vae.config.get("force_upcast", False)
    if upcast:
        vae.to(torch.float32)
    try:
        with torch.no_grad():
            return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype), return_dict=False)[0]
    finally:
        if upcast:
            vae.to(torch.float16)
