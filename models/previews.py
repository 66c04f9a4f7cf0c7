"""Live previews: a running job's latents as a picture, every few steps, without the VAE.

`approx` maps the 4 latent channels to RGB with a linear map per pixel, then enlarges it to the generation size
(A1111's "Approx cheap"). The map is the model family's published one (SD 1.5's or SDXL's, models/families.py),
unless the model folder ships its own fitted map in `latent_rgb.json` (the demo model's VAE is its own:
training/fit_latent_rgb.py fits it). `taesd`: diffusers' AutoencoderTiny (madebyollin/taesd for SD 1.x and 2.x
latents, madebyollin/taesdxl for SDXL's) makes a picture at the generation size, close to the final image, from a
local folder or the Hub (`--taesd`). `off`: none.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.families import SD1, Family
from models.files import hub_unreachable

PREVIEW_MODES = ("approx", "taesd", "off")
FITTED_FILE = "latent_rgb.json"


class LatentPreviewer:
    def __init__(self, weights, bias):
        self.weights = torch.tensor(weights, dtype=torch.float32)  # latent channels x 3
        self.bias = torch.tensor(bias, dtype=torch.float32)

    @classmethod
    def for_model(cls, folder: Path | None, family: Family = SD1) -> LatentPreviewer:
        """The model's own fitted map when its folder ships one, else its family's."""
        fitted = folder / FITTED_FILE if folder is not None else None
        if fitted is not None and fitted.is_file():
            data = json.loads(fitted.read_text())
            return cls(data["weights"], data["bias"])
        return cls(*family.latent_rgb)

    def pictures(self, latents: torch.Tensor, size: tuple[int, int]) -> list[Image.Image]:
        """Each latent of the batch as an RGB picture of `size` (width, height), enlarged with crisp pixels."""
        rgb = torch.einsum("bchw,cr->bhwr", latents.detach().float().cpu(), self.weights) + self.bias
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        return [Image.fromarray(np.ascontiguousarray(picture)).resize(size, Image.NEAREST) for picture in pixels]


class TinyVaePreviewer:
    def __init__(self, vae):
        self.vae = vae.eval().requires_grad_(False)

    @classmethod
    @functools.lru_cache(maxsize=2)  # one copy per folder or Hub id, whichever models use it
    def load(cls, spec: str) -> TinyVaePreviewer:
        """AutoencoderTiny from a diffusers folder or a Hub id (from the local cache when the Hub is unreachable);
        `.safetensors` weights only."""
        from diffusers import AutoencoderTiny

        local = Path(spec).is_dir()
        return cls(AutoencoderTiny.from_pretrained(spec, use_safetensors=True,
                                                   local_files_only=local or hub_unreachable()))

    def pictures(self, latents: torch.Tensor, size: tuple[int, int]) -> list[Image.Image]:
        """Each latent (as the pipeline holds them: scaled, which is what taesd decodes) as an RGB picture of
        `size` (width, height)."""
        parameter = next(self.vae.parameters())
        if parameter.device != latents.device or parameter.dtype != latents.dtype:
            self.vae.to(latents.device, latents.dtype)
        with torch.no_grad():
            rgb = self.vae.decode(latents.detach()).sample  # (b, 3, 8h, 8w) in [-1, 1]
        pixels = ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(np.ascontiguousarray(picture)).resize(size, Image.BILINEAR) for picture in pixels]


def fit_latent_rgb(latents: torch.Tensor, rgb: torch.Tensor) -> dict:
    """The least-squares linear map (with bias) from latents (N, C, h, w) to RGB in [-1, 1] at the same (h, w)."""
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    y = rgb.permute(0, 2, 3, 1).reshape(-1, 3).double()
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1), y).solution
    return {"weights": solution[:-1].tolist(), "bias": solution[-1].tolist()}
