"""A generation request: a frozen, validated description of one job, the one type every interface builds (through
service/requests.py) and the service and the manager take. Invalid values raise ValueError naming the field and
the value; nothing is clamped silently. No torch here: a request is checked before any model is touched.

The core fields are what every Stable Diffusion job has. What an extension adds (LoRA tags, ControlNet units,
inpaint settings, ...) travels in `parts`, under the extension's name, as the extension's own frozen type; the core
never looks inside.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from PIL import Image

from models.sampler_names import DEFAULT_SAMPLER, check_sampler
from models.validate import in_range, integer, multiple_of_8, one_of, text

MODES = ("txt2img", "img2img", "inpaint")
SIZE_RANGE = (64, 2048)
MIN_SIDE = SIZE_RANGE[0]
STEPS_RANGE = (1, 150)
CFG_RANGE = (1.0, 30.0)
BATCH_RANGE = (1, 8)
MAX_SEED = 2**32 - 1  # A1111 seeds are 32-bit


def size_of_image(image: Image.Image) -> tuple[int, int]:
    """The generation size an input image asks for: its own, scaled down to fit SIZE_RANGE if it is larger, each
    side the nearest multiple of 8 and at least MIN_SIDE."""
    scale = min(1.0, SIZE_RANGE[1] / max(image.size))
    return tuple(min(SIZE_RANGE[1], max(MIN_SIDE, math.floor(side * scale / 8 + 0.5) * 8)) for side in image.size)


@dataclass(frozen=True)
class GenerationRequest:
    mode: str
    prompt: str  # as typed: extensions that read syntax in it (LoRA tags) change what reaches the text encoder
    negative_prompt: str = ""
    steps: int = 20
    guidance_scale: float = 7.0
    width: int = 512
    height: int = 512
    sampler: str = DEFAULT_SAMPLER
    seed: int = -1  # -1: a random seed
    batch_size: int = 1
    strength: float = 0.75  # img2img and inpaint only ("Denoising strength")
    image: Image.Image | None = None
    mask: Image.Image | None = None  # white = repaint
    parts: Mapping[str, Any] = field(default_factory=dict)  # extension name -> its part of the request

    def __post_init__(self) -> None:
        one_of("mode", self.mode, MODES)
        for name in ("prompt", "negative_prompt"):
            text(name, getattr(self, name))
        # Frozen: the float-to-int normalisation goes through object.__setattr__.
        for name in ("width", "height"):
            self._set(name, multiple_of_8(name, getattr(self, name), *SIZE_RANGE))
        for name, bounds in (("steps", STEPS_RANGE), ("batch_size", BATCH_RANGE)):
            self._set(name, in_range(name, integer(name, getattr(self, name)), bounds))
        in_range("guidance_scale", self.guidance_scale, CFG_RANGE)
        seed = self._set("seed", integer("seed", self.seed))
        if not (seed == -1 or 0 <= seed <= MAX_SEED):
            raise ValueError(f"seed must be -1 (random) or from 0 to {MAX_SEED}, got {seed}")
        check_sampler(self.sampler)
        self._set("parts", MappingProxyType(dict(self.parts)))
        if self.mode == "txt2img":
            return
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)) or not 0 < self.strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {self.strength!r}")
        if int(self.steps * self.strength) < 1:  # diffusers denoises int(steps * strength) steps
            raise ValueError(
                f"steps × strength must give at least one denoising step, got steps {self.steps} × "
                f"strength {self.strength} = {self.steps * self.strength:g}: raise steps or strength"
            )
        if not isinstance(self.image, Image.Image):
            raise ValueError(f"image is required for {self.mode}")
        if self.mode == "inpaint":
            if not isinstance(self.mask, Image.Image):
                raise ValueError("mask is required for inpaint")
            if self.mask.size != self.image.size:
                raise ValueError(f"mask size {self.mask.size} differs from image size {self.image.size}")
            if self.mask.convert("L").getbbox() is None:
                raise ValueError("mask is empty: paint the area to repaint (white in an uploaded mask)")

    def _set(self, name: str, value):
        object.__setattr__(self, name, value)
        return value

    def part(self, name: str, default=None):
        """An extension's part of the request (`default` when the request has none)."""
        return self.parts.get(name, default)

    def with_part(self, name: str, part) -> GenerationRequest:
        return dataclasses.replace(self, parts={**self.parts, name: part})

    def replace(self, **changes) -> GenerationRequest:
        return dataclasses.replace(self, **changes)
