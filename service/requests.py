"""The one place plain inputs become a typed request. Every interface hands over plain fields by their API names
(the UI's components, gradio_client's keywords, REST bodies mapped by api/payloads.py); the core fields and each
extension's fields are checked here, and the result is a frozen GenerationRequest with one part per extension that
the request uses. Errors name the field and the value."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from extensions.base import Extension
from models.images import load_image, load_mask
from models.request import MODES, GenerationRequest, size_of_image
from models.sampler_names import DEFAULT_SAMPLER
from models.validate import text

# The core fields and their defaults (the UI's and the endpoints'); the width and height default to the model's size.
CORE_FIELDS: dict[str, Any] = {
    "prompt": "", "negative_prompt": "", "seed": -1, "steps": 20, "guidance_scale": 7.0, "width": 512, "height": 512,
    "sampler": DEFAULT_SAMPLER, "batch_size": 1, "strength": 0.75, "image": None, "mask": None,
}
IMAGE_SIZED = ("img2img", "inpaint")  # a width or height of 0 (their endpoints' default) means the image's own
MODE_FIELDS = {  # the core fields each endpoint takes
    "txt2img": ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "sampler",
                "batch_size"),
    "img2img": ("prompt", "image", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "sampler",
                "batch_size", "strength"),
    "inpaint": ("prompt", "image", "mask", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height",
                "sampler", "batch_size", "strength"),
}
class RequestBuilder:
    def __init__(self, extensions: Sequence[Extension]):
        self.extensions = list(extensions)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Each endpoint's fields with their defaults, in order: the core's, then each extension's. An endpoint an
        extension adds works on an image: prompt and image, its own fields, then the other core fields."""
        endpoints = {}
        for mode in (*MODES, *(name for extension in self.extensions for name in extension.endpoints)):
            core = MODE_FIELDS.get(mode, MODE_FIELDS["img2img"])
            own = {name: value for extension in self.extensions if mode in extension.modes
                   for name, value in extension.fields.items()}
            lead, rest = (core, ()) if mode in MODES else (core[:2], core[2:])
            fields = {**{name: CORE_FIELDS[name] for name in lead}, **own,
                      **{name: CORE_FIELDS[name] for name in rest}}
            for extension in self.extensions:
                fields.update(extension.endpoints.get(mode, {}))
            endpoints[mode] = fields
        return endpoints

    def build(self, mode: str, fields: Mapping[str, Any]) -> tuple[GenerationRequest, list[str]]:
        """The request for `mode` (an endpoint's name) from its plain fields; and warnings for the user."""
        fields = dict(fields)
        endpoints = self.endpoints()
        if mode not in endpoints:
            raise ValueError(f"mode must be one of {', '.join(endpoints)}, got {mode!r}")
        unknown = sorted(set(fields) - set(endpoints[mode]))
        if unknown:
            raise ValueError(f"{mode} takes no field {', '.join(map(repr, unknown))}")
        for name in ("prompt", "negative_prompt"):  # the text's length first: nothing else reads a prompt over it
            fields[name] = text(name, fields[name]) if fields.get(name) is not None else ""
        if "image" in fields:
            fields["image"] = load_image(fields["image"], "image")
        if "mask" in fields:
            fields["mask"] = load_mask(fields["mask"])
        for extension in self.extensions:
            mode = extension.rewrite(mode, fields)
        warnings: list[str] = []
        image, mask = fields.get("image"), fields.get("mask")
        if mode in IMAGE_SIZED and isinstance(image, Image.Image):  # no size given (or 0): the image's own
            for name, side in zip(("width", "height"), size_of_image(image)):
                fields[name] = fields.get(name) or side
        if isinstance(mask, Image.Image) and isinstance(image, Image.Image) and mask.size != image.size:
            warnings.append("mask was {}x{}, resized to the image's {}x{}".format(*mask.size, *image.size))
            fields["mask"] = mask.resize(image.size, Image.NEAREST)
        parts = {}
        for extension in self.extensions:
            part = extension.parse(mode, fields, warnings)
            if part is not None:
                parts[extension.name] = part
        core = {name: fields[name] for name in CORE_FIELDS if fields.get(name) is not None}
        return GenerationRequest(mode=mode, **core, parts=parts), warnings

    def encoder_text(self, prompt: str) -> str:
        """What of a prompt reaches the text encoder, once every extension took out its syntax (LoRA tags)."""
        for extension in self.extensions:
            prompt = extension.encoder_text(prompt)
        return prompt
