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

from models.fields import Field
from models.sampler_names import DEFAULT_SAMPLER, SAMPLER_NAMES, check_sampler
from models.validate import integer, one_of

MODES = ("txt2img", "img2img", "inpaint")


def tab_of(mode: str) -> str:
    """A1111's tab for a mode (its scripts and axes are by tab): inpaint is img2img's."""
    return "txt2img" if mode == "txt2img" else "img2img"
MAX_SEED = 2**32 - 1  # A1111 seeds are 32-bit


def seed_value(name: str, value) -> int:
    value = integer(name, value)
    if not (value == -1 or 0 <= value <= MAX_SEED):
        raise ValueError(f"{name} must be -1 (random) or from 0 to {MAX_SEED}, got {value}")
    return value


# The core fields: what every Stable Diffusion job has (the extensions declare theirs beside them).
PROMPT = Field("prompt", "text", "", label="Prompt", rest="prompt",
               help="what to draw, in A1111's syntax: (emphasis:1.2), [less], BREAK, <lora:name:weight>, embeddings")
NEGATIVE_PROMPT = Field("negative_prompt", "text", "", label="Negative prompt", rest="negative_prompt",
                        help="what to keep out of the picture")
IMAGE = Field("image", "image", None, label="Image", help="the picture to start from")
MASK = Field("mask", "image", None, label="Mask", help="white = repaint, black = keep")
SEED = Field("seed", "int", -1, minimum=-1, maximum=MAX_SEED, label="Seed (-1: random)", rest="seed", infotext="Seed",
             help="the noise's seed; image i of a batch uses seed + i", validator=seed_value)
STEPS = Field("steps", "int", 20, minimum=1, maximum=150, step=1, label="Sampling steps", rest="steps",
              infotext="Steps", help="denoising steps")
GUIDANCE = Field("guidance_scale", "number", 7.0, minimum=1.0, maximum=30.0, step=0.5, label="CFG scale",
                 rest="cfg_scale", infotext="CFG scale", help="how closely to follow the prompt")
WIDTH = Field("width", "size", 512, minimum=64, maximum=2048, step=8, label="Width", rest="width", infotext="Size",
              help="pixels; img2img and inpaint: 0 or absent is the image's own")
HEIGHT = Field("height", "size", 512, minimum=64, maximum=2048, step=8, label="Height", rest="height",
               infotext="Size", help="pixels; img2img and inpaint: 0 or absent is the image's own")
SAMPLER = Field("sampler", "choice", DEFAULT_SAMPLER, choices=SAMPLER_NAMES, label="Sampling method",
                infotext="Sampler", help="A1111's sampler names; a Karras variant by its pre-1.9 name",
                validator=lambda name, value: check_sampler(value, name))
BATCH_SIZE = Field("batch_size", "int", 1, minimum=1, maximum=8, step=1, label="Batch size", rest="batch_size",
                   help="images made together, from seeds seed, seed + 1, ...")
STRENGTH = Field("strength", "fraction", 0.75, minimum=0, maximum=1, step=0.01, ui_range=(0.01, 1),
                 label="Denoising strength", rest="denoising_strength", infotext="Denoising strength",
                 help="img2img and inpaint: how much of the picture is remade")
CORE_FIELDS = (PROMPT, IMAGE, MASK, NEGATIVE_PROMPT, SEED, STEPS, GUIDANCE, WIDTH, HEIGHT, SAMPLER, BATCH_SIZE,
               STRENGTH)
SIZE_RANGE = (WIDTH.minimum, WIDTH.maximum)
MIN_SIDE = SIZE_RANGE[0]
BATCH_RANGE = (BATCH_SIZE.minimum, BATCH_SIZE.maximum)


@dataclass(frozen=True)
class Pass:
    """A denoising pass of a job, for what it costs: its size and the steps it runs."""

    width: int
    height: int
    steps: int


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
        # Frozen: the values in their proper types (512.0 -> 512) go in through object.__setattr__.
        for declared in (PROMPT, NEGATIVE_PROMPT, WIDTH, HEIGHT, STEPS, BATCH_SIZE, GUIDANCE, SEED, SAMPLER):
            self._set(declared.name, declared.check(getattr(self, declared.name)))
        self._set("parts", MappingProxyType(dict(self.parts)))
        if self.mode == "txt2img":
            return
        STRENGTH.check(self.strength)
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
