"""Results as files: each image a PNG in outputs/<mode>-images/<date>/ numbered as A1111 numbers them, carrying its
infotext."""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from models.infotext import format_infotext, save_png
from models.request import GUIDANCE, SAMPLER, SEED, STEPS, STRENGTH, WIDTH, GenerationRequest
from models.sampler_names import split_name


@dataclass(frozen=True)
class Generation:
    """A job's saved images: their files, infotexts and seeds, what to tell the user, and whether Interrupt cut it
    short."""

    files: list[Path]
    infotexts: list[str]
    seeds: list[int]
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False


def infotext(request: GenerationRequest, seed: int, model_name: str, model_hash: str, extra: dict) -> str:
    """A1111's infotext of one image: the prompt as typed (<lora:...> tags included), then its parameters."""
    sampler, schedule_type = split_name(request.sampler)
    parameters = {
        STEPS.infotext: request.steps,
        SAMPLER.infotext: sampler,
        "Schedule type": schedule_type,  # the sampler's other half
        GUIDANCE.infotext: request.guidance_scale,
        SEED.infotext: seed,
        WIDTH.infotext: f"{request.width}x{request.height}",  # Size, the height too
        "Model hash": model_hash or None,
        "Model": model_name,
        STRENGTH.infotext: request.strength if request.mode != "txt2img" else None,
        **extra,
    }
    return format_infotext(request.prompt, request.negative_prompt, parameters)


class OutputFolder:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()

    def save(self, mode: str, image: Image.Image, seed: int, text: str, kind: str = "images") -> Path:
        """`kind`: "images", or "grids" for a script's own (A1111's txt2img-grids)."""
        folder = self.folder / f"{mode}-{kind}" / datetime.date.today().isoformat()
        with self._lock:  # A1111's numbering: 00000-seed.png, 00001-seed.png, ...
            number = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
            return save_png(image, folder / f"{number:05d}-{seed}.png", text)
