"""The one place plain inputs become a typed request. Every interface hands over plain fields by their API names
(the UI's components, gradio_client's keywords, REST bodies mapped by api/payloads.py); the core fields and each
extension's fields are checked here, and the result is a frozen GenerationRequest with one part per extension that
the request uses. Errors name the field and the value."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from extensions.base import RequestPart
from models.fields import Field
from models.images import load_image, load_mask
from models.request import CORE_FIELDS, MODES, NEGATIVE_PROMPT, PROMPT, GenerationRequest, size_of_image

IMAGE_SIZED = ("img2img", "inpaint")  # a width or height of 0 (their endpoints' default) means the image's own
MODE_FIELDS = {  # the core fields each endpoint takes, by name, in order
    "txt2img": ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "sampler",
                "batch_size"),
    "img2img": ("prompt", "image", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "sampler",
                "batch_size", "strength"),
    "inpaint": ("prompt", "image", "mask", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height",
                "sampler", "batch_size", "strength"),
}
CORE = {field.name: field for field in CORE_FIELDS}
# checked before the extensions read them (hires fix's sizes come from the width and height)
CHECKED_FIRST = ("width", "height", "steps", "batch_size", "guidance_scale", "seed", "sampler")


class RequestBuilder:
    def __init__(self, extensions: Sequence[RequestPart]):
        self.extensions = list(extensions)

    def endpoints(self) -> dict[str, tuple[Field, ...]]:
        """Each endpoint's fields, with their defaults there, in order: the core's, then each extension's. An endpoint
        an extension adds works on an image: prompt and image, its own fields, the other extensions', then the other
        core fields."""
        endpoints = {}
        for endpoint in (*MODES, *(name for extension in self.extensions for name in extension.endpoints)):
            core = MODE_FIELDS.get(endpoint, MODE_FIELDS["img2img"])
            takers = sorted((extension for extension in self.extensions if endpoint in extension.modes),
                            key=lambda extension: endpoint not in extension.endpoints)  # its owner's fields first
            own = [field for extension in takers for field in extension.fields]
            lead, rest = (core, ()) if endpoint in MODES else (core[:2], core[2:])
            fields = [*(CORE[name] for name in lead), *own, *(CORE[name] for name in rest)]
            changed = {}  # the model's defaults, then the endpoint's
            for extension in self.extensions:
                changed.update(extension.model_defaults())
            for extension in self.extensions:
                changed.update(extension.endpoints.get(endpoint, {}))
            endpoints[endpoint] = tuple(dataclasses.replace(field, default=changed[field.name])
                                        if field.name in changed else field for field in fields)
        return endpoints

    def build(self, endpoint: str, fields: Mapping[str, Any]) -> tuple[GenerationRequest, list[str]]:
        """The request for `endpoint` from its plain fields; and warnings for the user."""
        fields = dict(fields)
        endpoints = self.endpoints()
        if endpoint not in endpoints:
            raise ValueError(f"mode must be one of {', '.join(endpoints)}, got {endpoint!r}")
        unknown = sorted(set(fields) - {field.name for field in endpoints[endpoint]})
        if unknown:
            raise ValueError(f"{endpoint} takes no field {', '.join(map(repr, unknown))}")
        for text in (PROMPT, NEGATIVE_PROMPT):  # the text's length first: nothing else reads a prompt over it
            fields[text.name] = text.check(fields[text.name]) if fields.get(text.name) is not None else ""
        if "image" in fields:
            fields["image"] = load_image(fields["image"], "image")
        if "mask" in fields:
            fields["mask"] = load_mask(fields["mask"])
        mode = endpoint
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
        for name in CHECKED_FIRST:  # the core's values before the extensions' parts are built from them
            if fields.get(name) is not None:
                fields[name] = CORE[name].check(fields[name])
        parts = {}
        for extension in self.extensions:
            part = extension.parse(mode, fields, warnings)
            if part is not None:
                parts[extension.name] = part
        core = {name: fields[name] for name in CORE if fields.get(name) is not None}
        return GenerationRequest(mode=mode, **core, parts=parts), warnings

    def encoder_text(self, prompt: str) -> str:
        """What of a prompt reaches the text encoder, once every extension took out its syntax (LoRA tags)."""
        for extension in self.extensions:
            prompt = extension.encoder_text(prompt)
        return prompt
