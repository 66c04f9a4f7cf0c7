"""Inpaint as an extension: A1111's settings under the mask (blur, mask mode, area, padding, masked content) as the
request's "inpaint" part; whole-picture or only-masked geometry around the run (crop before, paste back after);
latent noise / nothing as a manager hook; the settings' infotext entries, written and read back; the tab's settings
panel; the REST fields of an img2img body with a mask."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path

from extensions.base import Extension, Panel, PreparedRequest, Settings, TabContext, rename_words
from extensions.inpaint import latent_fill
from extensions.inpaint.mask import prepare_mask
from extensions.inpaint.options import (
    FIELDS,
    INPAINT_AREA,
    INVERT_MASK,
    MASK_BLUR,
    MASK_MODES,
    MASKED_CONTENT,
    MASKED_CONTENT_FIELD,
    PADDING,
    InpaintOptions,
)
from extensions.inpaint.plan import InpaintPlan
from models import lama
from models.fields import Field, read_entries
from models.images import decode_image
from models.validate import brief

# A1111's inpaint fields in forms of their own (an index, 0 or 1), read by `from_rest`
REST_MASK = Field("mask", "image", rest="mask", help="base64: with it, img2img is inpaint (white = repaint)")
INPAINTING_FILL = Field("inpainting_fill", "whole", 1, minimum=0, maximum=len(MASKED_CONTENT) - 1,
                        rest="inpainting_fill",
                        help="masked content: " + ", ".join(f"{i} {name}" for i, name in enumerate(MASKED_CONTENT)))
INPAINT_FULL_RES = Field("inpaint_full_res", "switch", False, rest="inpaint_full_res",
                         help="true (or 1): inpaint area Only masked")
INPAINTING_MASK_INVERT = Field("inpainting_mask_invert", "whole", 0, minimum=0, maximum=1,
                               rest="inpainting_mask_invert", help="1 (or true): Inpaint not masked")
SOFT_INPAINTING = "soft_inpainting"  # the part (and switch) of soft inpainting, under which grey values are strength
IN_REST_WORDS = {"padding": "inpaint_full_res_padding", "invert_mask": "inpainting_mask_invert",
                 "masked_content": "inpainting_fill", "inpaint_area": "inpaint_full_res"}


class Inpaint(Extension):
    name = "inpaint"
    fields = FIELDS
    modes = ("inpaint",)
    rest_body = (REST_MASK, INPAINTING_FILL, INPAINT_FULL_RES, INPAINTING_MASK_INVERT)

    def __init__(self, annotator_dir: Path | None = None):
        self.annotator_dir = annotator_dir  # where LaMa's weights are, for masked content "lama"

    @classmethod
    def from_settings(cls, settings: Settings) -> Inpaint:
        return cls(settings.annotator_dir)

    def in_rest_words(self, message: str) -> str:
        return rename_words(message, IN_REST_WORDS)

    def install(self, manager) -> None:
        manager.pipeline_hooks.append(latent_fill.hook)

    def rewrite(self, mode: str, fields: dict) -> str:
        # "Inpaint not masked": the model sees the inverted mask (refused when nothing is left to repaint)
        if mode == "inpaint" and fields.get("invert_mask") is True and fields.get("mask") is not None:
            _, fields["mask"] = prepare_mask(fields["mask"], invert=True, blur=0, grey=_grey(fields))
        return mode

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> InpaintOptions | None:
        if mode != "inpaint":
            return None
        options = InpaintOptions(**{field.name: fields[field.name] for field in self.fields if field.name in fields})
        if options.masked_content == "lama" and (reason := lama.missing(self.annotator_dir)):
            raise ValueError(f"masked_content 'lama': {reason}")
        return options

    def prepare(self, job: PreparedRequest) -> None:
        options = job.request.part(self.name)
        if options is None:
            return
        request = job.request
        # the mask was inverted by `rewrite` already
        plan = InpaintPlan.make(request.image, request.mask, dataclasses.replace(options, invert_mask=False),
                                request.width, request.height, grey=request.part(SOFT_INPAINTING) is not None,
                                lama=functools.partial(lama.fill, annotator_dir=self.annotator_dir))
        job.request = request.replace(image=plan.image, mask=plan.mask, width=plan.size[0], height=plan.size[1])
        job.crop = (request.image.size, plan.box)
        job.finish.append(plan.paste_all)  # every pixel outside the blurred mask untouched
        job.infotext.update(options.infotext())
        if options.masked_content in latent_fill.LATENT_FILLS and job.inpainting_model:
            job.warnings.append(
                f"masked content {options.masked_content!r} acts on 4-channel models; this inpainting model sees the "
                "masked image itself, so it was inpainted as with 'original'"
            )

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        """What the infotext says, and the defaults for what it leaves out (A1111 writes "Mask blur" for every
        inpaint job and leaves the others out at their defaults), so sending it to the inpaint tab reproduces the
        job."""
        if MASK_BLUR.infotext not in entries:
            return {}
        fields = {field.name: field.default for field in (INPAINT_AREA, PADDING, MASKED_CONTENT_FIELD, INVERT_MASK)}
        fields.update(read_entries((MASK_BLUR, PADDING), entries, warnings))
        for field in (INPAINT_AREA, MASKED_CONTENT_FIELD):
            value = entries.pop(field.infotext, None)
            if value is not None and value not in field.choices:
                warnings.append(f"{field.infotext}: {value!r} is not one of {', '.join(field.choices)}; left at "
                                f"{fields[field.name]!r}")
            elif value is not None:
                fields[field.name] = value
        mode = entries.pop(INVERT_MASK.infotext, None)
        if mode is not None and mode not in MASK_MODES:
            warnings.append(f"Mask mode: {mode!r} is not one of {', '.join(MASK_MODES)}; left at inpaint masked")
        elif mode is not None:
            fields["invert_mask"] = mode == MASK_MODES[1]
        return fields

    def from_rest(self, payload: dict, endpoint: str, fields: dict) -> str:
        """An img2img body with a mask is an inpaint job."""
        if endpoint != "img2img" or not payload.get("mask"):
            return endpoint
        fields["mask"] = decode_image(payload["mask"], "mask")
        fill = INPAINTING_FILL.check(payload.get("inpainting_fill", INPAINTING_FILL.default))
        fields.update(
            masked_content=MASKED_CONTENT[fill],
            inpaint_area=INPAINT_AREA.choices[_flag(payload, INPAINT_FULL_RES.rest)],
            invert_mask=_flag(payload, INPAINTING_MASK_INVERT.rest),
        )
        return "inpaint"

    def panel(self, tab: TabContext) -> Panel | None:
        if tab.mode != "inpaint":
            return None
        from extensions.inpaint.panel import inpaint_panel

        return inpaint_panel()


def _grey(fields: Mapping) -> bool:
    """Soft inpainting is on (its own check refuses a value that is not true or false)."""
    return fields.get(SOFT_INPAINTING) is True


def _flag(payload: dict, name: str) -> bool:
    """An A1111 on/off field: true or false, or 0 or 1 as its int fields take them; absent or null is off."""
    value = payload.get(name)
    if value is None or isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be true or false (or 0 or 1), got {brief(value)}")
