"""A1111's SD upscale (img2img): the picture made larger by an upscaler, cut into tiles of the request's size that
overlap, each tile redrawn by img2img (a job of its own through the queue: tile i with seed + i), and the tiles
joined again, blended linearly across their overlaps.

Arguments, positional as A1111's: an unused first one (A1111's note), the overlap in px, the upscaler (by name, or by
its index in /sdapi/v1/upscalers' list, as A1111's clients send it) and the scale factor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from extensions.base import Cell, Script, ScriptPlan
from models.fields import Field
from models.infotext import format_infotext, parse_infotext
from models.request import MAX_SEED
from models.validate import brief

TITLE = "SD upscale"
ARGUMENTS = (
    Field("info", "text", ""),  # A1111's note in its UI: no value
    Field("overlap", "int", 64, minimum=0, maximum=256, step=16, label="Tile overlap"),
    Field("upscaler_index", "text", "Lanczos", label="Upscaler", help="by name or by its index in /sdapi/v1/upscalers"),
    Field("scale_factor", "number", 2.0, minimum=1.0, maximum=4.0, step=0.05, label="Scale Factor"),
)


class Tile(NamedTuple):
    x: int
    y: int


class SdUpscale(Script):
    title = TITLE
    modes = ("img2img",)
    arguments = ARGUMENTS

    def __init__(self, names: Callable[[], list[str]], upscale: Callable[..., Image.Image], max_jobs: int = 64):
        """`names`: the upscalers, in /sdapi/v1/upscalers' order; `upscale(picture, name, size)`: through the
        queue; `max_jobs`: the most tiles."""
        super().__init__(max_jobs)
        self.names, self.upscale = names, upscale

    def choices(self, argument: str, mode: str) -> list[str] | None:
        return self.names() if argument == "upscaler_index" else None

    def plan(self, mode: str, fields: Mapping[str, Any], args: list, warnings: list[str]) -> ScriptPlan:
        if len(args) != 4:
            raise ValueError(f"script_args: SD upscale takes 4 arguments (\"\", overlap, upscaler, scale factor), got "
                             f"{len(args)}")
        overlap, scale = (_checked(ARGUMENTS[index], args[index], index) for index in (1, 3))
        upscaler = self._upscaler(args[2])
        picture = fields.get("image")
        if not isinstance(picture, Image.Image):
            raise ValueError("image is required for SD upscale")
        tile = (int(fields["width"]), int(fields["height"]))
        if overlap >= min(tile):
            raise ValueError(f"script_args[1]: the overlap ({overlap} px) must be less than a tile's side "
                             f"({tile[0]}x{tile[1]}, the width and height)")
        size = picture.size if upscaler == "None" else (round(picture.width * scale), round(picture.height * scale))
        if size[0] < tile[0] or size[1] < tile[1]:
            raise ValueError(f"script_args[3]: the upscaled picture ({size[0]}x{size[1]}) is smaller than a tile "
                             f"({tile[0]}x{tile[1]}, the width and height)")
        tiles = tiles_for(size, tile, overlap)
        if len(tiles) > self.max_jobs:
            raise ValueError(f"script_args[3]: {size[0]}x{size[1]} in {tile[0]}x{tile[1]} tiles is {len(tiles)} "
                             f"tiles; at most {self.max_jobs} (--max-script-jobs; a larger width and height make "
                             "fewer)")
        seed = fields.get("seed", -1)
        seed = seed if isinstance(seed, int) and seed >= 0 else random.randint(0, MAX_SEED - len(tiles))

        def jobs() -> list:
            upscaled = self.upscale(picture, upscaler, size).convert("RGB")
            return [(mode, {**fields, "image": upscaled.crop((place.x, place.y, place.x + tile[0], place.y + tile[1])),
                            "seed": seed + number, "batch_size": 1}, None)
                    for number, place in enumerate(tiles)]

        def compose(cells: list[Cell]) -> list:
            pictures = [cell.images[0] if cell.images else Image.new("RGB", tile) for cell in cells]
            first = next(cell for cell in cells if cell.images)
            prompt, negative, parameters = parse_infotext(first.infotexts[0])
            parameters.update({"Size": f"{size[0]}x{size[1]}", "SD upscale overlap": overlap,
                               "SD upscale upscaler": upscaler})
            return [(joined(pictures, tiles, size, overlap), format_infotext(prompt, negative, parameters))]

        return ScriptPlan(TITLE, jobs, compose, keep_cells=False, size=len(tiles))

    def _upscaler(self, value) -> str:
        names = self.names()
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            return names[value]
        if isinstance(value, str) and (found := next((name for name in names if name.lower() == value.lower()), None)):
            return found
        raise ValueError(f"script_args[2]: no upscaler {brief(value)}; the upscalers: {', '.join(names)} (or their "
                         "index)")


def _checked(field: Field, value, index: int):
    try:
        return field.check(value)
    except ValueError as error:
        raise ValueError(f"script_args[{index}]: {error}") from None


def tiles_for(size: tuple[int, int], tile: tuple[int, int], overlap: int) -> list[Tile]:
    """The tiles' top-left corners, row by row, spread evenly so that neighbours overlap by at least `overlap` and
    the last ones end at the edges (A1111's split)."""
    def starts(length: int, side: int) -> list[int]:
        if length <= side:
            return [0]
        count = math.ceil((length - overlap) / (side - overlap))
        step = (length - side) / (count - 1) if count > 1 else 0
        return [min(int(index * step), length - side) for index in range(count)]

    return [Tile(x, y) for y in starts(size[1], tile[1]) for x in starts(size[0], tile[0])]


def joined(pictures: list[Image.Image], tiles: list[Tile], size: tuple[int, int], overlap: int) -> Image.Image:
    """The tiles pasted in order, each blended linearly into what is under it across its first `overlap` px (left
    and top), so that no seam shows where two tiles meet."""
    canvas = np.zeros((size[1], size[0], 3), dtype=np.float32)
    filled = np.zeros((size[1], size[0]), dtype=bool)
    for picture, place in zip(pictures, tiles):
        pixels = np.asarray(picture.convert("RGB"), dtype=np.float32)
        height, width = pixels.shape[:2]
        weight = np.ones((height, width), dtype=np.float32)
        if overlap:
            ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
            region = filled[place.y:place.y + height, place.x:place.x + width]
            left = region[:, :overlap].all() and place.x > 0
            top = region[:overlap, :].all() and place.y > 0
            if left:
                weight[:, :overlap] *= ramp[None, :]
            if top:
                weight[:overlap, :] *= ramp[:, None]
        window = canvas[place.y:place.y + height, place.x:place.x + width]
        underneath = filled[place.y:place.y + height, place.x:place.x + width]
        weight = np.where(underneath, weight, 1.0)[..., None]
        canvas[place.y:place.y + height, place.x:place.x + width] = window * (1 - weight) + pixels * weight
        filled[place.y:place.y + height, place.x:place.x + width] = True
    return Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
