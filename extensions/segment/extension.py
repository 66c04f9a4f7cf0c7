"""Click to mask: Segment Anything (models/segment.py) turns a few clicks on a picture into a mask. An accordion under
the inpaint tab's editor paints the mask of the clicks into the editor (the user can paint over it or erase it, and
it reaches the generation as a painted mask does); gradio_client's /segment and REST's POST /segment/v1/segment
return the mask. It adds no field to the generation requests."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from extensions.base import Extension, Route, Settings, TabContext
from extensions.segment.fields import BODY, IMAGE, LABELS, POINTS
from models import segment
from models.images import decode_image, png_base64
from models.validate import brief


class Segment(Extension):
    name = "segment"
    modes = ()
    placement = "image"  # under the tab's picture, where the clicks go

    def __init__(self, annotator_dir: Path | None = None):
        self.annotator_dir = annotator_dir  # where SAM's weights are (facebook/sam-vit-base/)

    @classmethod
    def from_settings(cls, settings: Settings) -> Segment:
        return cls(settings.annotator_dir)

    def missing(self) -> str | None:
        """Why SAM cannot run here (what to put where), or None."""
        return segment.missing(self.annotator_dir)

    def mask(self, picture: Image.Image, points, labels=None) -> Image.Image:
        """The mask (L, the picture's size, white: selected) of the clicks; `points` and `labels` may be JSON text
        (a plain gradio_client or curl call)."""
        return segment.segment(picture, _json(POINTS.name, points), _json(LABELS.name, labels),
                               annotator_dir=self.annotator_dir)

    def register_endpoints(self, image_file) -> None:
        from extensions.segment.panel import segment_endpoint

        segment_endpoint(self, image_file)

    def rest_routes(self) -> list[Route]:
        return [Route("POST", "/segment/v1/segment", self._segment, takes_body=True, body=BODY)]

    def _segment(self, payload: dict) -> dict:
        picture = decode_image(payload.get(IMAGE.rest), IMAGE.rest)
        return {"mask": png_base64(self.mask(picture, payload.get(POINTS.rest), payload.get(LABELS.rest)))}

    def panel(self, tab: TabContext) -> None:
        if tab.mode == "inpaint":
            from extensions.segment.panel import segment_panel

            segment_panel(self, tab)
        return None  # nothing of it goes into the generation


def _json(field: str, value):
    """A list given as JSON text, read; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value) if value.strip() else None
    except ValueError:
        raise ValueError(f"{field} must be a list or JSON text of one, got {brief(value)}") from None
