"""AUTOMATIC1111's /sdapi/v1 request bodies turned into our endpoints' fields, and our results into its responses.

A1111 clients send every field they know, most with defaults for features this app does not have (hires fix,
face restoration, ...). Those are ignored and listed in the response's `info`; a value we use but cannot accept
is a ValueError naming the field, which the route answers with HTTP 422.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from extensions.base import Extension
from models.images import decode_image, fit
from models.limits import check_text
from models.sampler_names import (
    DEFAULT_SAMPLER,
    SAMPLER_NAMES,
    SCHEDULE_TYPES,
    join_name,
    split_name,
)
from models.validate import brief, whole_number

# A1111 field -> our keyword, for fields that mean the same thing
SHARED = {"prompt": "prompt", "negative_prompt": "negative_prompt", "seed": "seed", "steps": "steps",
          "cfg_scale": "guidance_scale", "width": "width", "height": "height", "batch_size": "batch_size"}
# Fields read here rather than passed on (the extensions read theirs: Extension.rest_fields)
HANDLED = {"sampler_name", "sampler_index", "scheduler", "n_iter", "init_images", "denoising_strength", "resize_mode",
           "override_settings", "send_images", "save_images"}
RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
FIT_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill", "Just Resize")  # the same, as `fit` names them


@dataclass
class Job:
    """One REST request as jobs of our endpoints: `n_iter` batches of `kwargs` (images decoded), the seed advancing
    by batch."""

    endpoint: str  # "/txt2img", "/img2img" or "/inpaint"
    kwargs: dict
    n_iter: int = 1
    ignored: list[str] = field(default_factory=list)


def job_from_payload(payload: dict, route: str, extensions: Sequence[Extension] = ()) -> Job:
    if not isinstance(payload, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(payload).__name__}")
    if not isinstance(payload.get("override_settings") or {}, dict):
        raise ValueError(f"override_settings must be an object of settings by name, got "
                         f"{brief(payload['override_settings'])}")
    kwargs = {ours: payload[theirs] for theirs, ours in SHARED.items() if payload.get(theirs) is not None}
    kwargs.setdefault("prompt", "")  # A1111's default: an empty prompt is a valid request
    for name in ("prompt", "negative_prompt"):  # before anything else reads them, and before the queue
        check_text(name, kwargs.get(name))
    kwargs["sampler"] = _sampler(payload)
    job = Job("/txt2img", kwargs, whole_number("n_iter", payload.get("n_iter", 1), 1, 100))
    image = None
    if route == "img2img":
        images = payload.get("init_images")
        if not isinstance(images, list) or not images:
            raise ValueError("init_images must be a list with one base64-encoded image")
        image = decode_image(images[0], "init_images[0]")
        kwargs["strength"] = payload.get("denoising_strength", 0.75)
    for extension in extensions:  # their fields (the service's builder checks them, as every interface's)
        route = extension.from_rest(payload, route, kwargs)
    if image is not None:
        kwargs["image"] = _resized(image, payload.get("resize_mode", 0), kwargs) if route == "img2img" else image
    job.endpoint = f"/{route}"
    handled = SHARED.keys() | HANDLED | {name for extension in extensions for name in extension.rest_fields}
    job.ignored = sorted(key for key in payload if key not in handled)
    settings = {"sd_model_checkpoint"} | {name for extension in extensions for name in extension.rest_settings}
    job.ignored += sorted(key for key in (payload.get("override_settings") or {}) if key not in settings)
    return job


def _resized(image: Image.Image, mode, kwargs: dict) -> Image.Image:
    """img2img's init image at width x height by A1111's resize_mode (0 stretch, 1 crop, 2 fill, 3 as 0)."""
    if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode < len(RESIZE_MODES):
        raise ValueError(f"resize_mode must be 0 to 3 ({', '.join(RESIZE_MODES)}), got {mode!r}")
    width, height = kwargs.get("width"), kwargs.get("height")
    if not all(isinstance(side, int) and side > 0 for side in (width, height)):
        return image  # no size: the image's own (the endpoint names a bad one)
    return fit(image, (width, height), FIT_MODES[mode], Image.Resampling.LANCZOS)


def _sampler(payload: dict) -> str:
    """Our sampler name from A1111's sampler_name and scheduler ("DPM++ 2M" + "karras" -> "DPM++ 2M Karras")."""
    name = payload.get("sampler_name") or payload.get("sampler_index") or DEFAULT_SAMPLER
    scheduler = payload.get("scheduler") or "automatic"
    schedulers = [kind.lower() for kind in SCHEDULE_TYPES]
    if not isinstance(scheduler, str) or scheduler.lower() not in schedulers:
        raise ValueError(f"scheduler must be one of {', '.join(schedulers)}, got {scheduler!r}")
    if not isinstance(name, str) or name not in SAMPLER_NAMES:
        raise ValueError(f"sampler_name {brief(name)} is unknown; choose one of: {', '.join(SAMPLER_NAMES)}")
    if scheduler.lower() == "automatic" or split_name(name)[1].lower() == scheduler.lower():
        return name
    joined = join_name(name, scheduler.capitalize())
    if joined == name:
        raise ValueError(f"scheduler {scheduler!r} is not available with sampler_name {name!r}")
    return joined


def encode_png(path) -> str:
    """The saved PNG's bytes as base64: the infotext chunk travels with the image."""
    with open(path, "rb") as file:
        return base64.b64encode(file.read()).decode()


def response(images: list[str], infotexts: list[str], seeds: list[int], payload: dict, job: Job,
             warnings: list[str]) -> dict:
    """A1111's response: images, the request's parameters, and `info` as a JSON string."""
    first = infotexts[0] if infotexts else ""
    info = {
        "prompt": payload.get("prompt", ""), "all_prompts": [payload.get("prompt", "")] * len(seeds),
        "negative_prompt": payload.get("negative_prompt", ""), "seed": seeds[0] if seeds else -1,
        "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * len(seeds),
        "width": job.kwargs.get("width"), "height": job.kwargs.get("height"),
        "sampler_name": job.kwargs.get("sampler"), "cfg_scale": job.kwargs.get("guidance_scale"),
        "steps": job.kwargs.get("steps"), "batch_size": job.kwargs.get("batch_size", 1),
        "infotexts": infotexts, "job_timestamp": "", "index_of_first_image": 0,
        "ignored_fields": job.ignored, "warnings": warnings, "info": first,
    }
    parameters = {**payload, **{key: None for key in ("init_images", "mask") if key in payload}}  # not echoed back
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}
