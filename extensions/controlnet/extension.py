"""ControlNet as an extension: sd-webui-controlnet's units (its field names, `controlnet_units` in our endpoints,
`alwayson_scripts.controlnet.args` in REST bodies) are the request's "controlnet" part; before the run each unit's
map is detected and fitted to the generation size (for inpaint, to the picture and then cropped like it, so "only
masked" sees the matching part of the map); a manager hook runs the request on a ControlNet pipeline derived from
its own view; "ControlNet N" infotext entries are written and read back; a panel per tab; the /controlnet/* REST
routes. As in sd-webui-controlnet, a unit's model may also be an IP-Adapter (with an `ip-adapter_*` module: the
picture is the prompt, image_prompts.py) or a T2I-Adapter (its map goes through the adapter, t2i_adapters.py)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from extensions.base import SOLO, Extension, Panel, PreparedRequest, Route, Settings, TabContext, alwayson_args
from extensions.controlnet import detectors, inpaint_maps, preprocessors
from extensions.controlnet.cache import ControlNetCache
from extensions.controlnet.image_prompts import ImagePrompts
from extensions.controlnet.library import IP_ADAPTER, ControlNetLibrary
from extensions.controlnet.pipeline import ControlNets
from extensions.controlnet.t2i_adapters import T2IAdapters
from extensions.controlnet.units import (
    MODEL,
    MODULE,
    PROCESSOR_RES,
    THRESHOLD_A,
    THRESHOLD_B,
    UNIT_FIELDS,
    ControlNetPart,
    ControlUnit,
)
from models.fields import KINDS, Field
from models.images import decode_image, load_image, png_base64
from models.infotext import CONVERTERS, parameter_pairs, read_value
from models.validate import boolean, brief, whole_number

UNITS = Field("controlnet_units", "list", [], items=UNIT_FIELDS, rest="alwayson_scripts.controlnet.args",
              label="ControlNet units", help="sd-webui-controlnet's units (each an object of its settings)")
INFOTEXT = "ControlNet"  # "ControlNet 0: Module: canny, Model: name [hash], Weight: 1.0, ..." per unit
API_VERSION = 2  # sd-webui-controlnet's API version whose routes and unit fields these are
# sd-webui-controlnet's control types -> the beginnings of their preprocessors' (and words in their models') names
CONTROL_TYPES = {"Canny": ("canny",), "Depth": ("depth",), "NormalMap": ("normal",), "OpenPose": ("openpose",),
                 "MLSD": ("mlsd",), "Lineart": ("lineart",), "SoftEdge": ("softedge",), "Scribble": ("scribble",),
                 "Segmentation": ("seg",), "Shuffle": ("shuffle",), "Tile": ("tile",), "Recolor": ("recolor",),
                 "IP-Adapter": ("ip-adapter", "ip_adapter"), "T2I-Adapter": ("t2ia", "t2i-adapter")}

# /controlnet/detect's body (sd-webui-controlnet's names)
DETECT_BODY = (
    Field("controlnet_module", "choice", "none", rest="controlnet_module", help=MODULE.help),
    Field("controlnet_input_images", "images", rest="controlnet_input_images", help="base64-encoded images"),
    Field("controlnet_masks", "images", rest="controlnet_masks",
          help="base64 masks (white = repaint), one per image: the hole of an inpaint preprocessor"),
    Field("controlnet_processor_res", "whole", 512, minimum=PROCESSOR_RES.minimum, maximum=PROCESSOR_RES.maximum,
          rest="controlnet_processor_res", help=PROCESSOR_RES.help),
    Field("controlnet_threshold_a", "number", None, rest="controlnet_threshold_a", help=THRESHOLD_A.help),
    Field("controlnet_threshold_b", "number", None, rest="controlnet_threshold_b", help=THRESHOLD_B.help),
    Field("controlnet_pixel_perfect", "switch", True, rest="controlnet_pixel_perfect",
          help="each map at its image's own resolution, whatever controlnet_processor_res says"),
)


class ControlNet(Extension):
    name = "controlnet"
    fields = (UNITS,)
    script = "controlnet"

    def __init__(self, folder: str | Path, cap: int = 3, max_units: int = 3, annotator_dir: str | Path | None = None):
        """`annotator_dir`: where the preprocessors' weights are looked for first (None: models/annotators)."""
        if annotator_dir is not None:
            detectors.set_annotator_dir(annotator_dir)
        self.library = ControlNetLibrary(folder)
        self.cap, self.max_units = cap, max_units
        self.nets: ControlNets | None = None  # the installed manager's loaded ControlNets and hook
        self.image_prompts: ImagePrompts | None = None  # its IP-Adapter units' configurer, hook and restorer

    @classmethod
    def from_settings(cls, settings: Settings) -> ControlNet:
        settings.controlnet_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings.controlnet_dir, cap=settings.controlnet_cap, max_units=settings.controlnet_units,
                   annotator_dir=settings.annotator_dir)

    def install(self, manager) -> None:
        """ControlNets then load on first use on the manager's device and dtype."""
        cache = ControlNetCache(self.library, cap=self.cap, device=manager.runtime.device, dtype=manager.runtime.dtype)
        self.nets = ControlNets(self.library, cache, self.max_units, manager.family.name)
        kinds = self.library.model_kind
        self.image_prompts = ImagePrompts(cache, kinds, self.name, manager.runtime.device, manager.runtime.dtype,
                                          family=manager.family.name)
        adapters = T2IAdapters(cache, kinds, self.name)
        manager.configurers += [self.image_prompts.configure, adapters.configure]
        # the ControlNet pipeline first: the adapters' hooks only add arguments to whichever pipeline it is
        manager.pipeline_hooks += [self.nets.hook, self.image_prompts.hook, adapters.hook]
        manager.restorers += [self.image_prompts.restore, adapters.restore]

    # -- the request -----------------------------------------------------------------------------------------

    def rewrite(self, endpoint: str, fields: dict) -> str:
        """A txt2img or img2img job with an `inpaint_only` unit keeps what is outside the unit's hole: it runs as an
        inpaint job of the unit's picture (img2img: else the tab's) and mask, from nothing in txt2img."""
        raw_units = fields.get(UNITS.name)
        if endpoint not in ("txt2img", "img2img") or not isinstance(raw_units, (list, tuple)):
            return endpoint
        for index, raw in enumerate(raw_units):
            module = raw.get("module") if isinstance(raw, dict) and raw.get("enabled", True) else None
            if preprocessors.ALIASES.get(module, module) not in inpaint_maps.KEEPS_THE_REST:
                continue
            unit = dict(raw)  # its pictures decoded once, here: `parse` takes them as they are
            if raw.get("image"):
                unit["image"] = decode_image(raw["image"])
            picture = unit.get("image") or fields.get("image")
            if picture is None:
                raise ValueError(f"controlnet unit {index}: {module} needs an image (txt2img has none of its own)")
            mask_value = raw.get("mask") or raw.get("mask_image")
            if mask_value:
                mask = unit["mask"] = decode_image(mask_value, "mask").convert("L")
            elif picture.mode == "RGBA" and inpaint_maps.has_hole(picture):
                mask = inpaint_maps.hole(picture)
            else:
                raise ValueError(f"controlnet unit {index}: {module} needs a mask (white = repaint), or a picture "
                                 "whose hole is transparent")
            inpaint_maps.with_hole(picture, mask, f"controlnet unit {index}: mask")  # the sizes agree
            fields.update(image=picture.convert("RGB"), mask=mask)
            fields[UNITS.name] = [*raw_units[:index], unit, *raw_units[index + 1:]]
            if endpoint == "txt2img":
                fields["strength"] = 1.0
            return "inpaint"
        return endpoint

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> ControlNetPart | None:
        raw_units = fields.get(UNITS.name)
        if not raw_units:
            return None
        if not isinstance(raw_units, (list, tuple)):
            raise ValueError(f"controlnet_units must be a list of units, got {type(raw_units).__name__}")
        if len(raw_units) > self.max_units:
            raise ValueError(f"controlnet_units: at most {self.max_units} units, got {len(raw_units)}")
        units = []
        for index, raw in enumerate(raw_units):
            unit, ignored = ControlUnit.parse(index, raw)
            if ignored:
                warnings.append(f"controlnet unit {index}: ignored unknown fields {', '.join(ignored)}")
            if unit is not None:
                try:  # an unknown model is an error now, not mid-run
                    unit = self._matched(unit, warnings, index)
                except ValueError as error:
                    raise ValueError(f"controlnet unit {index}: {error}") from None
                units.append((index, unit))
        return ControlNetPart(tuple(units)) if units else None

    def _matched(self, unit: ControlUnit, warnings: list[str], index: int) -> ControlUnit:
        """The unit, its model found and its module fit for the model's kind: an IP-Adapter takes an `ip-adapter_*`
        module (with "none", the one its width calls for), nothing else does."""
        kind = self.library.model_kind(unit.model)
        image_prompt = preprocessors.get(unit.module).image_prompt
        if kind == IP_ADAPTER and not image_prompt:
            if unit.module != "none":
                raise ValueError(f"model {unit.model!r} is an IP-Adapter: its module must be an ip-adapter_* one "
                                 f"(ip-adapter-auto chooses by the model), got {unit.module!r}")
            warnings.append(f"controlnet unit {index}: IP-Adapter {unit.model!r} with module 'none' uses "
                            "ip-adapter-auto")
            return dataclasses.replace(unit, module="ip-adapter-auto")
        if image_prompt and kind != IP_ADAPTER:
            raise ValueError(f"module {unit.module!r} takes an IP-Adapter model; {unit.model!r} is a {kind}")
        return unit

    def batch_key(self, request):
        """A request with ControlNet or T2I-Adapter units runs alone (its hook builds a pipeline around its own
        maps), and one with an effective region (its masks are the call's); requests whose units are all
        IP-Adapters share a call when their adapters and settings agree (each keeps its pictures)."""
        part = request.part(self.name)
        if part is None:
            return None
        if any(self.library.model_kind(unit.model) != IP_ADAPTER or unit.effective_region_mask is not None
               for _, unit in part.units):
            return SOLO
        return tuple((unit.model, unit.module, float(unit.weight), float(unit.guidance_start),
                      float(unit.guidance_end), unit.control_mode) for _, unit in part.units)

    def prepare(self, job: PreparedRequest) -> None:
        part = job.request.part(self.name)
        if part is None:
            return
        picture, mask = job.source.image, job.source.mask if job.source.mode == "inpaint" else None
        target = (job.request.width, job.request.height)
        maps = tuple(unit.control_input(picture, target, index, job.crop, mask) for index, unit in part.units)
        job.request = job.request.with_part(self.name, ControlNetPart(part.units, maps))
        for (_, unit), control in zip(part.units, maps):
            if unit.module == inpaint_maps.ONLY_LAMA and job.request.image is not None:
                # the denoising starts from LaMa's fill too, not only the map
                filled = control.image.convert("RGB").resize(job.request.image.size, Image.BILINEAR)
                job.request = job.request.replace(image=Image.composite(
                    filled, job.request.image.convert("RGB"),
                    inpaint_maps.hole(control.image).resize(job.request.image.size, Image.NEAREST)))
        for index, unit in part.units:
            source = unit.image if unit.image is not None else picture
            job.infotext[f"{INFOTEXT} {index}"] = unit.infotext(
                self.library.infotext_name(unit.model), source.size if source is not None else None, target)

    def control_map(self, image, module: str, processor_res=512, threshold_a=None, threshold_b=None,
                    pixel_perfect=True, resize_mode="Crop and Resize", size=None, mask=None) -> Image.Image:
        """The map a unit with these settings gives a generation of `size` (width, height): detected and fitted
        exactly as a generation does, so Preview shows what the ControlNet will see. Without `size`, the image's
        own size: /controlnet/detect's map (with pixel perfect, detected at the image's resolution). `mask`: an
        inpaint preprocessor's hole (white)."""
        picture = load_image(image, "image")
        if picture is None:
            raise ValueError("image is required to detect a map")
        unit = ControlUnit.for_map(module, processor_res, threshold_a, threshold_b, pixel_perfect, resize_mode)
        if mask is not None:
            unit = dataclasses.replace(unit, mask=load_image(mask, "mask").convert("L"))
        width, height = size if size is not None else picture.size
        return unit.control_map(unit.source(picture),
                                (whole_number("width", width, 1), whole_number("height", height, 1)))

    # -- infotext and REST ----------------------------------------------------------------------------------

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        """`ControlNet 0`, `ControlNet 1`, ... entries (taken out of `entries`) as units, ordered by number."""
        prefix = f"{INFOTEXT} "
        numbered = sorted((int(key.removeprefix(prefix)), key) for key in entries
                          if key.startswith(prefix) and key.removeprefix(prefix).isdigit())
        units = [unit for _, key in numbered if (unit := _unit(key, entries.pop(key), warnings)) is not None]
        return {UNITS.name: units} if units else {}

    def from_rest(self, payload: dict, endpoint: str, fields: dict) -> str:
        """sd-webui-controlnet's units from `alwayson_scripts` ({"controlnet": {"args": [unit, ...]}}, any case);
        `parse` checks them (and decodes their images within bounds) when the request is built."""
        for args in alwayson_args(payload, self.script):
            if not isinstance(args, list):
                raise ValueError("alwayson_scripts.controlnet.args must be a list of units")
            for index, unit in enumerate(args):
                if not isinstance(unit, dict):
                    raise ValueError(f"alwayson_scripts.controlnet.args[{index}] must be a unit (an object), "
                                     f"got {brief(unit)}")
            units = [unit for unit in args if unit.get("enabled", True)]
            if units:
                fields[UNITS.name] = units
        return endpoint

    def in_rest_words(self, message: str) -> str:
        return re.sub(r"\bcontrolnet unit (\d+)\b", r"alwayson_scripts.controlnet.args[\1]", message)

    def rest_routes(self) -> list[Route]:
        return [Route("GET", "/controlnet/model_list", self._model_list),
                Route("GET", "/controlnet/module_list", lambda: {"module_list": preprocessors.available()}),
                Route("POST", "/controlnet/detect", self._detect, takes_body=True, body=DETECT_BODY),
                Route("GET", "/controlnet/version", lambda: {"version": API_VERSION}),
                Route("GET", "/controlnet/settings", lambda: {"control_net_unit_count": self.max_units}),
                Route("GET", "/controlnet/control_types", self._control_types)]

    def script_arguments(self) -> tuple:
        return UNIT_FIELDS  # each argument is a unit of these fields

    def _control_types(self) -> dict:
        """sd-webui-controlnet's control types: the preprocessors and models of each kind (by their names), and
        "All"."""
        modules, models = preprocessors.available(), self._model_list()["model_list"]
        types = {"All": {"module_list": modules, "model_list": ["None", *models], "default_option": "none",
                         "default_model": "None"}}
        for kind, words in CONTROL_TYPES.items():
            kind_modules = [name for name in modules if name.startswith(words)]
            kind_models = [name for name in models if any(word in name.lower() for word in words)]
            if kind_modules:
                types[kind] = {"module_list": ["none", *kind_modules], "model_list": ["None", *kind_models],
                               "default_option": kind_modules[0],
                               "default_model": kind_models[0] if kind_models else "None"}
        return {"control_types": types}

    def _model_list(self) -> dict:
        return {"model_list": [self.library.infotext_name(name) for name in self.library.list_names()]}

    def _detect(self, payload: dict) -> dict:
        # Pixel perfect unless the client turns it off: each map at its image's own resolution, whatever
        # controlnet_processor_res says (A1111 clients send 512 by default, which blanks small images' edges).
        pixel_perfect = boolean("controlnet_pixel_perfect", payload.get("controlnet_pixel_perfect", True))
        images = payload.get("controlnet_input_images") or payload.get("controlnet_images") or []
        masks = payload.get("controlnet_masks") or []
        if not isinstance(masks, list) or len(masks) > len(images):
            raise ValueError(f"controlnet_masks must be a list of at most one mask per image, got {brief(masks)}")
        masks = [*masks, *[None] * (len(images) - len(masks))]
        maps = [self.control_map(decode_image(image, f"controlnet_input_images[{index}]"),
                                 payload.get("controlnet_module", "none"), payload.get("controlnet_processor_res", 512),
                                 _threshold(payload.get("controlnet_threshold_a")),
                                 _threshold(payload.get("controlnet_threshold_b")), pixel_perfect=pixel_perfect,
                                 mask=decode_image(mask, f"controlnet_masks[{index}]") if mask else None)
                for index, (image, mask) in enumerate(zip(images, masks))]
        info = "Success"
        if pixel_perfect and "controlnet_processor_res" in payload:
            info += ("; pixel perfect: each map was detected at its image's own resolution, not at "
                     "controlnet_processor_res (send controlnet_pixel_perfect: false to use it)")
        return {"images": [png_base64(image) for image in maps], "info": info}

    def register_endpoints(self, image_file) -> None:
        from extensions.controlnet.panel import detect_endpoint

        detect_endpoint(self, image_file)

    def panel(self, tab: TabContext) -> Panel | None:
        from extensions.controlnet.panel import controlnet_panel

        return controlnet_panel(self, tab)


def install(manager, folder, cap: int = 3, max_units: int = 3, annotator_dir=None) -> ControlNets:
    """Add ControlNet to a PipelineManager without a service (tests, bench, training); returns its ControlNets."""
    extension = ControlNet(folder, cap, max_units, annotator_dir)
    extension.install(manager)
    return extension.nets


def _unit(key: str, value: str, warnings: list[str]) -> dict | None:
    unit: dict = {"enabled": True}
    by_key = {field.infotext: field for field in UNIT_FIELDS if field.infotext}
    for name, raw in parameter_pairs(value):  # A1111's key/value pairs, inside one ControlNet value
        name = name.strip()
        if raw.startswith('"') and raw.endswith('"'):
            raw = _unquote(raw)
        if name in by_key:
            field = by_key[name]
            kind = _CONVERTERS.get(field.name, KINDS[field.kind][2])
            read_value(unit, field.name, f"{key} {name}", raw.strip(), kind, warnings)
    if len(unit) == 1:
        warnings.append(f"{key}: {value!r} has no ControlNet settings; left out")
        return None
    return unit


def _unquote(raw: str) -> str:
    try:
        return json.loads(raw)
    except ValueError:  # not valid JSON after all: keep what is between the quotes
        return raw[1:-1]


def _default_threshold(value: str) -> float | None:
    """sd-webui-controlnet writes -1 for "the preprocessor's default", which units take as None."""
    number = CONVERTERS["number"][0](value)
    return None if number == -1 else number


_CONVERTERS = {  # the unit fields read otherwise than by their kind
    THRESHOLD_A.name: (_default_threshold, "a number"),
    THRESHOLD_B.name: (_default_threshold, "a number"),
    MODEL.name: (lambda value: value.split(" [")[0].strip(), "a model name"),  # "name [hash]", as the UI shows it
}


def _threshold(value):
    return None if value in (None, -1) else value
