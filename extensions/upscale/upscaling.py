"""A picture made larger by one of A1111's upscalers: `Lanczos`, `Nearest`, `None` (A1111 then resizes with
Lanczos all the same), or a model of the upscaler folder.

A model runs in tiles with an overlap, so memory stays bounded however large the picture: each tile is run with
`OVERLAP` pixels of its neighbours around it and only its own part of the result is kept, so the seams see the
same context as an untiled run (within the model's receptive field). A model that scales by less than asked runs
again on its result (at most 3 passes, as A1111); the result is then resized with Lanczos to the exact size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

PIXEL_UPSCALERS = {"None": Image.Resampling.LANCZOS, "Lanczos": Image.Resampling.LANCZOS,
                   "Nearest": Image.Resampling.NEAREST}
TILE = 192  # px of the input per tile
OVERLAP = 16  # px of context on each side of a tile
MAX_PASSES = 3


def upscale(picture: Image.Image, upscaler: str, size: tuple[int, int], load_model: Callable[[str], object],
            device: torch.device) -> Image.Image:
    """`picture` at `size` (width, height) by the upscaler named `upscaler` (a model name goes to `load_model`)."""
    picture = picture.convert("RGB")
    if upscaler not in PIXEL_UPSCALERS:
        model = load_model(upscaler)
        for _ in range(MAX_PASSES):
            if picture.width >= size[0] and picture.height >= size[1]:
                break
            picture = model_pass(model, picture, device)
    if picture.size == tuple(size):
        return picture
    return picture.resize(size, PIXEL_UPSCALERS.get(upscaler, Image.Resampling.LANCZOS))


def model_pass(model, picture: Image.Image, device: torch.device, tile: int = TILE,
               overlap: int = OVERLAP) -> Image.Image:
    """One pass of a spandrel model over the picture, tile by tile."""
    dtype = torch.float16 if device.type == "cuda" and model.supports_half else torch.float32
    model.to(device=device, dtype=dtype)
    pixels = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].to(device, dtype).div(255)
    with torch.no_grad():
        result = run_tiled(model, pixels, model.scale, tile, overlap)
    array = result[0].float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def run_tiled(model, pixels: torch.Tensor, scale: int, tile: int, overlap: int) -> torch.Tensor:
    """model(pixels) for a (1, C, H, W) tensor, computed tile by tile with `overlap` pixels of context."""
    height, width = pixels.shape[-2:]
    if height <= tile and width <= tile:
        return model(pixels)
    result = None
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            above, before = max(top - overlap, 0), max(left - overlap, 0)
            part = model(pixels[..., above: min(bottom + overlap, height), before: min(right + overlap, width)])
            if result is None:
                result = pixels.new_zeros(1, part.shape[1], height * scale, width * scale)
            result[..., top * scale: bottom * scale, left * scale: right * scale] = part[
                ..., (top - above) * scale: (bottom - above) * scale, (left - before) * scale: (right - before) * scale]
    return result
