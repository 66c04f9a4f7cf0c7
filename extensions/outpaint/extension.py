"""Outpaint as an extension: the /outpaint endpoint takes a picture and how far to extend each side, and runs as an
inpaint job on the bigger canvas, its new area pre-filled and masked with a seam that reaches `overlap` px into the
picture; the picture beyond the seam is kept exactly."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from extensions.base import Extension, Panel, PreparedRequest, Settings, TabContext
from extensions.outpaint.canvas import FIELDS, OVERLAP, extend_canvas
from models.lama import fill as lama_fill


@dataclass(frozen=True)
class Extents:
    """How far an outpaint job extended each side of its picture, and the result's size."""
    left: int
    right: int
    up: int
    down: int
    size: tuple[int, int]

class Outpaint(Extension):
    name = "outpaint"
    fields = FIELDS
    modes = ("outpaint",)
    endpoints = {"outpaint": {"strength": 1.0}}  # the new area has nothing worth keeping

    def __init__(self, annotator_dir: Path | None = None):
        self.annotator_dir = annotator_dir  # where LaMa's weights are, for the "lama" pre-fill

    @classmethod
    def from_settings(cls, settings: Settings) -> Outpaint:
        return cls(settings.annotator_dir)

    def rewrite(self, endpoint: str, fields: dict) -> str:
        if endpoint != "outpaint":
            return endpoint
        settings = {field.name: fields.pop(field.name) for field in self.fields if field.name in fields}
        if fields.get("image") is None:
            raise ValueError("image is required for outpaint")
        seed = fields.get("seed", -1)
        canvas, mask = extend_canvas(fields["image"], seed=seed if isinstance(seed, int) and seed >= 0 else 0,
                                     lama=functools.partial(lama_fill, annotator_dir=self.annotator_dir), **settings)
        overlap = settings.get("overlap", OVERLAP.default)
        # A blur up to overlap / 8 softens the seam while the picture beyond the band stays 0 in the blurred mask.
        fields.update(image=canvas, mask=mask, mask_blur=min(4, int(overlap) // 8))
        fields[self.name] = Extents(*(int(settings.get(side, 0)) for side in ("left", "right", "up", "down")),
                                    canvas.size)
        return "inpaint"

    def parse(self, mode: str, fields, warnings: list[str]) -> Extents | None:
        return fields.pop(self.name, None)  # what `rewrite` left for the job

    def prepare(self, job: PreparedRequest) -> None:
        extents = job.request.part(self.name)
        if extents is not None:  # the generation's Size is the model's; these say what the result is
            job.infotext["Outpaint extents"] = (f"left {extents.left}, right {extents.right}, up {extents.up}, "
                                                f"down {extents.down}")
            job.infotext["Result size"] = "{}x{}".format(*extents.size)

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        # The outpainted result is the picture to work on now: the extents are history, not settings to reapply.
        entries.pop("Outpaint extents", None)
        entries.pop("Result size", None)
        return {}

    def panel(self, tab: TabContext) -> Panel | None:
        if tab.mode != "inpaint":
            return None
        from extensions.outpaint.panel import outpaint_panel

        return outpaint_panel()
