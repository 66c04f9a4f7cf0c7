"""AUTOMATIC1111's /sdapi/v1 request bodies turned into our endpoints' fields, and our results into its responses.

The body's fields are the endpoint's fields under their A1111 names (`Field.rest`, `Field.setting`), A1111's own
ones declared here (`A1111_FIELDS`: n_iter, sampler_name, init_images, ...), and the extensions' fields in forms of
their own (`Extension.rest_body`, read by their `from_rest`). A1111 clients send every field they know, most with
defaults for features this app does not have (face restoration, ...): those are ignored and listed in the
response's `info`; a value we use but cannot accept is a ValueError naming the field, which the route answers with
HTTP 422.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from extensions.base import Extension
from models.fields import Field, from_rest
from models.images import decode_image, fit
from models.infotext import parse_infotext
from models.limits import check_text
from models.request import CORE_FIELDS, DEFAULT_SAMPLER
from models.sampler_names import SAMPLER_NAMES, SCHEDULE_TYPES, check_sampler, join_name, split_name
from models.validate import brief
from service.requests import MODE_FIELDS

RESIZE_MODES = ("Just resize", "Crop and resize", "Resize and fill", "Just resize (latent upscale)")
FIT_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill", "Just Resize")  # the same, as `fit` names them
SCHEDULERS = tuple(kind.lower() for kind in SCHEDULE_TYPES)

# A1111's own body fields, which are not fields of our endpoints as they are (the endpoint's `modes`)
N_ITER = Field("n_iter", "whole", 1, minimum=1, maximum=100, rest="n_iter",
               help="batches one after another, the seed advancing by batch_size")
SAMPLER_NAME = Field("sampler_name", "choice", DEFAULT_SAMPLER, choices=SAMPLER_NAMES, rest="sampler_name",
                     help="with `scheduler`: 'DPM++ 2M' + 'karras' is DPM++ 2M Karras")
SAMPLER_INDEX = Field("sampler_index", "text", rest="sampler_index", help="older clients' name for sampler_name")
SCHEDULER = Field("scheduler", "choice", "automatic", choices=SCHEDULERS, rest="scheduler",
                  help="A1111 1.9's schedule type")
INIT_IMAGES = Field("init_images", "images", rest="init_images", help="one base64-encoded image (a data URL too)")
RESIZE_MODE = Field("resize_mode", "whole", 0, minimum=0, maximum=3, rest="resize_mode",
                    help="the init image to width x height: "
                         + ", ".join(f"{index} {mode}" for index, mode in enumerate(RESIZE_MODES)))
CHECKPOINT = Field("sd_model_checkpoint", "text", setting="sd_model_checkpoint",
                   help="a model by the title /sdapi/v1/sd-models lists, or by name: switches the model in use")
OVERRIDE_SETTINGS = Field("override_settings", "object", rest="override_settings",
                          help="settings for this request, by A1111's names")
ALWAYSON_SCRIPTS = Field("alwayson_scripts", "object", rest="alwayson_scripts",
                         help="extensions' arguments by script name, as A1111's extensions take them")
SEND_IMAGES = Field("send_images", "switch", True, rest="send_images", help="images are always sent")
RESTORE_FACES = Field("restore_faces", "switch", False, rest="restore_faces",
                      help="no face restorer is installed: a warning says so")
SAVE_IMAGES = Field("save_images", "switch", False, rest="save_images", help="images are always saved")
A1111_FIELDS = {
    "txt2img": (N_ITER, SAMPLER_NAME, SAMPLER_INDEX, SCHEDULER, CHECKPOINT, OVERRIDE_SETTINGS, ALWAYSON_SCRIPTS,
                SEND_IMAGES, SAVE_IMAGES, RESTORE_FACES),
    "img2img": (INIT_IMAGES, RESIZE_MODE, N_ITER, SAMPLER_NAME, SAMPLER_INDEX, SCHEDULER, CHECKPOINT,
                OVERRIDE_SETTINGS, ALWAYSON_SCRIPTS, SEND_IMAGES, SAVE_IMAGES, RESTORE_FACES),
}
CORE = {field.name: field for field in CORE_FIELDS}


@dataclass
class RestCall:
    """One REST request as calls of our endpoints: `n_iter` batches of `fields` (images decoded), the seed advancing
    by batch."""

    endpoint: str  # "txt2img", "img2img" or "inpaint"
    fields: dict
    n_iter: int = 1
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def body_fields(route: str, extensions: Sequence[Extension]) -> tuple[Field, ...]:
    """Every field a body of /sdapi/v1/<route> may carry, once by its A1111 name: the core's and the extensions' of
    the endpoints the route runs as (img2img: img2img and inpaint), then A1111's own."""
    endpoints = ("txt2img",) if route == "txt2img" else ("img2img", "inpaint")
    fields = [CORE[name] for name in dict.fromkeys(name for endpoint in endpoints for name in MODE_FIELDS[endpoint])]
    for extension in extensions:
        if any(endpoint in extension.modes for endpoint in endpoints):
            fields += [*extension.fields, *extension.rest_body]
    fields += A1111_FIELDS[route]
    named, seen = [], set()
    for declared in fields:
        for name in (declared.rest, declared.setting):
            if name and name not in seen:
                seen.add(name)
                named.append(declared)
                break
    return tuple(named)


def rest_call(payload: dict, route: str, extensions: Sequence[Extension] = ()) -> RestCall:
    if not isinstance(payload, dict):
        raise ValueError(f"the request body must be a JSON object, got {type(payload).__name__}")
    settings = payload.get("override_settings") or {}
    if not isinstance(settings, dict):
        raise ValueError(f"override_settings must be an object of settings by name, got "
                         f"{brief(payload['override_settings'])}")
    for name in ("prompt", "negative_prompt"):  # before anything else reads them, and before the queue
        check_text(name, payload.get(name))
    sampler = _sampler(payload)
    n_iter = N_ITER.check(payload.get("n_iter", 1))
    image = None
    if route == "img2img":
        images = payload.get("init_images")
        if not isinstance(images, list) or not images:
            raise ValueError("init_images must be a list with one base64-encoded image")
        image = decode_image(images[0], "init_images[0]")
        resize_mode = RESIZE_MODE.check(payload.get(RESIZE_MODE.rest, RESIZE_MODE.default))
    endpoint, converted = route, {}
    for extension in extensions:  # their fields in forms of their own; the endpoint may change ("inpaint")
        endpoint = extension.from_rest(payload, endpoint, converted)
    takes = [CORE[name] for name in MODE_FIELDS[endpoint]]
    takes += [declared for extension in extensions if endpoint in extension.modes for declared in extension.fields]
    fields = {"prompt": "", **from_rest(takes, payload, settings), **converted, "sampler": sampler}
    if image is not None:
        fields["image"] = _resized(image, resize_mode, fields) if endpoint == "img2img" else image
    call = RestCall(endpoint, fields, n_iter)
    if payload.get("restore_faces"):
        call.warnings.append("restore_faces: no face restorer is installed here; the faces are as generated")
    read = {name for declared in body_fields(route, extensions) for name in (declared.rest, declared.setting) if name}
    read |= {name.split(".")[0] for name in read}
    call.ignored = sorted(key for key in payload if key not in read)
    call.ignored += sorted(key for key in settings if key not in read)
    return call


def _resized(image: Image.Image, mode: int, fields: dict) -> Image.Image:
    """img2img's init image at width x height by A1111's resize_mode (0 stretch, 1 crop, 2 fill, 3 as 0)."""
    width, height = fields.get("width"), fields.get("height")
    if not all(isinstance(side, int) and side > 0 for side in (width, height)):
        return image  # no size: the image's own (the endpoint names a bad one)
    return fit(image, (width, height), FIT_MODES[mode], Image.Resampling.LANCZOS)


def _sampler(payload: dict) -> str:
    """Our sampler name from A1111's sampler_name and scheduler ("DPM++ 2M" + "karras" -> "DPM++ 2M Karras")."""
    name = payload.get("sampler_name") or payload.get("sampler_index") or DEFAULT_SAMPLER
    scheduler = payload.get("scheduler") or "automatic"
    if not isinstance(scheduler, str) or scheduler.lower() not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    name = check_sampler(name, "sampler_name")
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


def response(images: list[str], infotexts: list[str], seeds: list[int], payload: dict, call: RestCall,
             warnings: list[str]) -> dict:
    """A1111's response: images, the request's parameters, and `info` as a JSON string."""
    first = infotexts[0] if infotexts else ""
    subseeds = [int(parse_infotext(text)[2].get("Variation seed", -1)) for text in infotexts]
    info = {
        "prompt": payload.get("prompt", ""), "all_prompts": [payload.get("prompt", "")] * len(seeds),
        "negative_prompt": payload.get("negative_prompt", ""), "seed": seeds[0] if seeds else -1,
        "all_seeds": seeds, "subseed": subseeds[0] if subseeds else -1,
        "all_subseeds": subseeds,
        "width": call.fields.get("width"), "height": call.fields.get("height"),
        "sampler_name": call.fields.get("sampler"), "cfg_scale": call.fields.get("guidance_scale"),
        "steps": call.fields.get("steps"), "batch_size": call.fields.get("batch_size", 1),
        "infotexts": infotexts, "job_timestamp": "", "index_of_first_image": 0,
        "ignored_fields": call.ignored, "warnings": warnings, "info": first,
    }
    parameters = {**payload, **{key: None for key in ("init_images", "mask") if key in payload}}  # not echoed back
    return {"images": images, "parameters": parameters, "info": json.dumps(info)}
