"""A generation request: a frozen, validated description of one job. Invalid values raise ValueError
naming the field and the value; nothing is clamped silently."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from models.limits import check_text
from models.samplers import DEFAULT_SAMPLER, check_sampler

MODES = ("txt2img", "img2img", "inpaint")
SIZE_RANGE = (64, 2048)
STEPS_RANGE = (1, 150)
CFG_RANGE = (1.0, 30.0)
BATCH_RANGE = (1, 8)
MAX_SEED = 2**32 - 1  # A1111 seeds are 32-bit
LATENT_FILLS = ("latent noise", "latent nothing")  # A1111's masked content that acts on the starting latents
CONTROL_MODES = ("Balanced", "My prompt is more important", "ControlNet is more important")
CONTROL_WEIGHT_RANGE = (0.0, 2.0)


@dataclass(frozen=True)
class ControlInput:
    """One ControlNet unit as the model runs it: the control map is already detected, resized and cropped to
    the generation size. `model` is a name the ControlNet extension resolves."""

    model: str
    image: Image.Image
    weight: float = 1.0
    guidance_start: float = 0.0  # the fraction of the steps where the unit starts and stops acting
    guidance_end: float = 1.0
    control_mode: str = "Balanced"

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"ControlNet model must be a name, got {self.model!r}")
        if not isinstance(self.image, Image.Image):
            raise ValueError(f"ControlNet image must be an image, got {type(self.image).__name__}")
        _in_range("ControlNet weight", self.weight, CONTROL_WEIGHT_RANGE)
        _in_range("ControlNet guidance_start", self.guidance_start, (0.0, 1.0))
        _in_range("ControlNet guidance_end", self.guidance_end, (0.0, 1.0))
        if self.guidance_start > self.guidance_end:
            raise ValueError(
                f"ControlNet guidance_start {self.guidance_start} must not be after guidance_end {self.guidance_end}"
            )
        if self.control_mode not in CONTROL_MODES:
            raise ValueError(f"ControlNet control_mode must be one of {', '.join(CONTROL_MODES)}, got {self.control_mode!r}")


@dataclass(frozen=True)
class GenerationRequest:
    mode: str
    prompt: str
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
    loras: tuple[tuple[str, float], ...] = ()  # (name, weight) pairs; the prompt holds no <lora:...> tags
    latent_fill: str | None = None  # inpaint with a 4-channel U-Net: start the masked area from noise or zeros
    controls: tuple[ControlInput, ...] = ()  # ControlNet units, each with its map at the generation size

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for field in ("prompt", "negative_prompt"):
            if not isinstance(getattr(self, field), str):
                raise ValueError(f"{field} must be text, got {getattr(self, field)!r}")
            check_text(field, getattr(self, field))
        for field in ("width", "height"):
            value = _integer(field, getattr(self, field))
            if not SIZE_RANGE[0] <= value <= SIZE_RANGE[1] or value % 8:
                raise ValueError(
                    f"{field} must be a multiple of 8 from {SIZE_RANGE[0]} to {SIZE_RANGE[1]}, got {value}"
                )
        _in_range("steps", _integer("steps", self.steps), STEPS_RANGE)
        _in_range("guidance_scale", self.guidance_scale, CFG_RANGE)
        _in_range("batch_size", _integer("batch_size", self.batch_size), BATCH_RANGE)
        seed = _integer("seed", self.seed)
        if not (seed == -1 or 0 <= seed <= MAX_SEED):
            raise ValueError(f"seed must be -1 (random) or from 0 to {MAX_SEED}, got {seed}")
        check_sampler(self.sampler)
        for name, weight in self.loras:
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not -10 <= weight <= 10:
                raise ValueError(f"LoRA {name!r} weight must be a number from -10 to 10, got {weight!r}")
        if self.mode != "txt2img":
            if not isinstance(self.strength, (int, float)) or not 0.0 < self.strength <= 1.0:
                raise ValueError(f"strength must be in (0, 1], got {self.strength!r}")
            if int(self.steps * self.strength) < 1:  # diffusers denoises int(steps * strength) steps
                raise ValueError(
                    f"steps × strength must give at least one denoising step, got steps {self.steps} × "
                    f"strength {self.strength} = {self.steps * self.strength:g}: raise steps or strength"
                )
            if self.image is None:
                raise ValueError(f"image is required for {self.mode}")
        if self.latent_fill is not None and self.latent_fill not in LATENT_FILLS:
            raise ValueError(f"latent_fill must be one of {', '.join(LATENT_FILLS)}, got {self.latent_fill!r}")
        for unit in self.controls:
            if not isinstance(unit, ControlInput):
                raise ValueError(f"controls must be ControlInput units, got {type(unit).__name__}")
            if unit.image.size != (self.width, self.height):
                raise ValueError(f"ControlNet image size {unit.image.size} differs from the generation size "
                                 f"{(self.width, self.height)}")
        if self.mode == "inpaint":
            if self.mask is None:
                raise ValueError("mask is required for inpaint")
            if self.mask.size != self.image.size:
                raise ValueError(f"mask size {self.mask.size} differs from image size {self.image.size}")
            if self.mask.convert("L").getbbox() is None:
                raise ValueError("mask is empty: paint the area to repaint (white in an uploaded mask)")


def _integer(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ValueError(f"{field} must be a whole number, got {value!r}")
    return value


def _in_range(field: str, value, bounds: tuple) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{field} must be from {bounds[0]} to {bounds[1]}, got {value!r}")
