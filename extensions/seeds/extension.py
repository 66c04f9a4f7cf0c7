"""A1111's variation seeds: each image's initial noise turned towards a variation seed's by a strength (a picture
"like this one, a little different"), and "seed resize from", which keeps a picture's layout at another size by
drawing its seed's noise at the size it was found at (models/noise.py draws it).

A pipeline hook gives each image a generator that carries its variation (image i: seed + i, subseed + i); the hook
comes after ControlNet's, so the pipeline it sees draws the noise, and before hires fix's, whose second pass draws
its noise with the same variation. Generators are per image, so requests with different variations still share a
call. Written in the infotext as A1111 does: `Variation seed: 7, Variation seed strength: 0.3, Seed resize from:
512x512`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from extensions.base import Extension
from extensions.seeds.fields import (
    RESIZE_INFOTEXT,
    SEED_FIELDS,
    SEED_RESIZE_FROM_H,
    SEED_RESIZE_FROM_W,
    SUBSEED,
    SUBSEED_STRENGTH,
)
from models.fields import read_entries
from models.infotext import PerImage
from models.noise import Variation, VariedGenerator, allow_variations
from models.request import MAX_SEED


@dataclass(frozen=True)
class SeedsPart:
    subseed: int  # resolved: never -1
    strength: float
    resize_from: tuple[int, int] | None  # (width, height) in pixels


class Seeds(Extension):
    name = "seeds"
    fields = SEED_FIELDS
    modes = ("txt2img", "img2img", "inpaint", "outpaint")

    def install(self, manager) -> None:
        manager.pipeline_hooks.append(self._hook)

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> SeedsPart | None:
        values = {field.name: field.check(fields.get(field.name, field.default)) for field in SEED_FIELDS}
        width, height = values[SEED_RESIZE_FROM_W.name], values[SEED_RESIZE_FROM_H.name]
        resize_from = (width, height) if width > 0 and height > 0 else None
        strength = values[SUBSEED_STRENGTH.name]
        if not strength and resize_from is None:
            return None
        subseed = values[SUBSEED.name]
        if subseed == -1:  # as the seed: a random one, written in the infotext
            subseed = random.randint(0, MAX_SEED - 8)
        return SeedsPart(subseed, strength, resize_from)

    def batch_key(self, request) -> None:
        return None  # each image's generator carries its own variation: any mix shares a call

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        part = request.part(self.name)
        if part is None:
            return pipe, arguments
        allow_variations()
        factor = pipe.vae_scale_factor
        resize = None if part.resize_from is None else (part.resize_from[0] // factor, part.resize_from[1] // factor)
        generators = arguments["generator"]
        subseeds = [(part.subseed + index) % (MAX_SEED + 1) for index in range(len(generators))]
        arguments["generator"] = [VariedGenerator(generator.initial_seed(), Variation(subseed, part.strength, resize))
                                  for generator, subseed in zip(generators, subseeds)]
        if part.strength:
            parameters[SUBSEED.infotext] = PerImage(subseeds)
            parameters[SUBSEED_STRENGTH.infotext] = part.strength
        if part.resize_from is not None:
            parameters[RESIZE_INFOTEXT] = "{}x{}".format(*part.resize_from)
        return pipe, arguments

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        found = read_entries((SUBSEED, SUBSEED_STRENGTH), entries, warnings)
        size = entries.pop(RESIZE_INFOTEXT, None)
        if size is not None:
            width, _, height = size.partition("x")
            if width.strip().isdigit() and height.strip().isdigit():
                found.update(seed_resize_from_w=int(width), seed_resize_from_h=int(height))
            else:
                warnings.append(f"{RESIZE_INFOTEXT}: {size!r} is not WIDTHxHEIGHT; left out")
        return found

    def panel(self, tab):
        from extensions.seeds.panel import seeds_panel

        return seeds_panel(tab)
