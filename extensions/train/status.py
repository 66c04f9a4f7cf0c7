"""What the Train tab shows while a run goes on (the run updates it; the tab reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image


@dataclass
class Status:
    step: int = 0
    steps: int = 0
    loss: float = float("nan")
    sample: Image.Image | None = None
    sample_step: int = 0
