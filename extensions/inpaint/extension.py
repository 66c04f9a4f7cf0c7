"""Inpaint as an extension: A1111's settings under the mask (blur, mask mode, area, padding, masked content) as the
request's "inpaint" part; whole-picture or only-masked geometry around the run (crop before, paste back after);
latent noise / nothing as a manager hook; the settings' infotext entries, written and read back; the tab's settings
panel; the REST fields of an img2img body with a mask."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from extensions.base import Extension, Job, Panel, TabContext, rename_words
from extensions.inpaint import latent_fill
from extensions.inpaint.mask import prepare_mask
from extensions.inpaint.options import INPAINT_AREAS, MASKED_CONTENT, InpaintOptions
from extensions.inpaint.plan import InpaintPlan
from models.images import decode_image
from models.infotext import read_value
from models.validate import brief

DEFAULTS = InpaintOptions()
MASK_MODES = ("Inpaint masked", "Inpaint not masked")  # A1111's words for invert_mask off / on
# A1111 writes "Mask blur" for every inpaint job and leaves the other settings out at their defaults.
INFOTEXT_KEYS = ("Mask blur", "Inpaint area", "Masked area padding", "Masked content", "Mask mode")


class Inpaint(Extension):
    name = "inpaint"
    fields = {field.name: getattr(DEFAULTS, field.name) for field in dataclasses.fields(InpaintOptions)}
    modes = ("inpaint",)
    rest_fields = frozenset({"mask", "mask_blur", "inpainting_fill", "inpaint_full_res", "inpaint_full_res_padding",
                             "inpainting_mask_invert"})
    rest_names = {"padding": "inpaint_full_res_padding", "invert_mask": "inpainting_mask_invert",
                  "masked_content": "inpainting_fill", "inpaint_area": "inpaint_full_res"}

    def in_rest_words(self, message: str) -> str:
        return rename_words(message, self.rest_names)

    def install(self, manager) -> None:
        manager.pipeline_hooks.append(latent_fill.hook)

    def rewrite(self, mode: str, fields: dict) -> str:
        # "Inpaint not masked": the model sees the inverted mask (refused when nothing is left to repaint)
        if mode == "inpaint" and fields.get("invert_mask") is True and fields.get("mask") is not None:
            fields["mask"], _ = prepare_mask(fields["mask"], invert=True, blur=0)
        return mode

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> InpaintOptions | None:
        if mode != "inpaint":
            return None
        return InpaintOptions(**{name: fields[name] for name in self.fields if name in fields})

    def prepare(self, job: Job) -> None:
        options = job.request.part(self.name)
        if options is None:
            return
        request = job.request
        # the mask was inverted by `rewrite` already
        plan = InpaintPlan.make(request.image, request.mask, dataclasses.replace(options, invert_mask=False),
                                request.width, request.height)
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
        """What the infotext says, and the defaults for what it leaves out, so sending it to the inpaint tab
        reproduces the job."""
        if "Mask blur" not in entries:
            return {}
        found = {key: entries.pop(key) for key in INFOTEXT_KEYS if key in entries}
        fields: dict = {"inpaint_area": DEFAULTS.inpaint_area, "padding": DEFAULTS.padding,
                        "masked_content": DEFAULTS.masked_content, "invert_mask": DEFAULTS.invert_mask}
        read_value(fields, "mask_blur", "Mask blur", found["Mask blur"], "whole", warnings)
        if "Masked area padding" in found:
            read_value(fields, "padding", "Masked area padding", found["Masked area padding"], "whole", warnings)
        for key, field, choices in (("Inpaint area", "inpaint_area", INPAINT_AREAS),
                                    ("Masked content", "masked_content", MASKED_CONTENT)):
            value = found.get(key)
            if value is not None and value not in choices:
                warnings.append(f"{key}: {value!r} is not one of {', '.join(choices)}; left at {fields[field]!r}")
            elif value is not None:
                fields[field] = value
        mode = found.get("Mask mode")
        if mode is not None and mode not in MASK_MODES:
            warnings.append(f"Mask mode: {mode!r} is not one of {', '.join(MASK_MODES)}; left at inpaint masked")
        elif mode is not None:
            fields["invert_mask"] = mode == MASK_MODES[1]
        return fields

    def from_rest(self, payload: dict, route: str, fields: dict) -> str:
        """An img2img body with a mask is an inpaint job."""
        if route != "img2img" or not payload.get("mask"):
            return route
        fields["mask"] = decode_image(payload["mask"], "mask")
        fill = payload.get("inpainting_fill", 1)
        if not isinstance(fill, int) or isinstance(fill, bool) or not 0 <= fill < len(MASKED_CONTENT):
            raise ValueError(f"inpainting_fill must be 0 to 3 ({', '.join(MASKED_CONTENT)}), got {fill!r}")
        fields.update(
            mask_blur=payload.get("mask_blur", 4), masked_content=MASKED_CONTENT[fill],
            inpaint_area="Only masked" if _flag(payload, "inpaint_full_res") else "Whole picture",
            padding=payload.get("inpaint_full_res_padding", 32),
            invert_mask=_flag(payload, "inpainting_mask_invert"),
        )
        return "inpaint"

    def panel(self, tab: TabContext) -> Panel | None:
        if tab.mode != "inpaint":
            return None
        from extensions.inpaint.panel import inpaint_panel

        return inpaint_panel()


def _flag(payload: dict, name: str) -> bool:
    """An A1111 on/off field: true or false, or 0 or 1 as its int fields take them; absent or null is off."""
    value = payload.get(name)
    if value is None or isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise ValueError(f"{name} must be true or false (or 0 or 1), got {brief(value)}")
