"""A ControlNet unit as users and A1111 clients give it (sd-webui-controlnet's field names), and how its control
map is made: detected by the unit's preprocessor, fitted to the target size by its resize mode, and, for inpaint's
"only masked", cropped like the image.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from extensions.controlnet import inpaint_maps, preprocessors
from models.fields import Field
from models.images import decode_image, fit
from models.limits import TooLarge
from models.validate import boolean, choice, in_range

BALANCED, PROMPT_FIRST, CONTROL_FIRST = "Balanced", "My prompt is more important", "ControlNet is more important"
CONTROL_MODES = (BALANCED, PROMPT_FIRST, CONTROL_FIRST)
RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
# sd-webui-controlnet's API also takes the modes by index, and by the names of its internal enums.
_RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Outer Fit (Shrink to Fit)": "Resize and Fill",
                   "Envelope (Outer Fit)": "Resize and Fill", "Scale to Fit (Inner Fit)": "Crop and Resize"}

# A unit's fields, by sd-webui-controlnet's names (its API's, ours) and infotext keys ("ControlNet 0: Module: ...")
ENABLED = Field("enabled", "switch", True, label="Enable", help="a unit that is not enabled is left out")
IMAGE = Field("image", "image", label="Control image", help="base64; none: the tab's own image (img2img, inpaint)")
MASK = Field("mask", "image", label="Mask",
             help="base64, white = repaint, the image's size: the hole of an inpaint preprocessor (none: the inpaint "
                  "tab's mask, or the image's transparent pixels)")
REGION = Field("effective_region_mask", "image", label="Effective region",
               help="base64, white = where the unit acts (its ControlNet's or T2I-Adapter's residuals, its "
                    "IP-Adapter's picture), over the generated picture (resized to it); none: everywhere")
MODULE = Field("module", "choice", "none", label="Preprocessor", infotext="Module",
               help="the map's preprocessor (GET /controlnet/module_list); none: the image is the map")
MODEL = Field("model", "text", "", label="Model", infotext="Model",
              help="a ControlNet from the ControlNet folder (GET /controlnet/model_list), or a Hub id")
WEIGHT = Field("weight", "number", 1.0, minimum=0.0, maximum=2.0, step=0.05, label="Control Weight",
               infotext="Weight", help="how strongly the map steers")
GUIDANCE_START = Field("guidance_start", "number", 0.0, minimum=0.0, maximum=1.0, step=0.01,
                       label="Starting Control Step", infotext="Guidance Start",
                       help="the fraction of the steps where the unit starts acting")
GUIDANCE_END = Field("guidance_end", "number", 1.0, minimum=0.0, maximum=1.0, step=0.01, label="Ending Control Step",
                     infotext="Guidance End", help="the fraction of the steps where it stops")
CONTROL_MODE = Field("control_mode", "choice", "Balanced", choices=CONTROL_MODES, label="Control Mode",
                     infotext="Control Mode", help="also by index")
RESIZE_MODE = Field("resize_mode", "choice", "Crop and Resize", choices=RESIZE_MODES, label="Resize Mode",
                    infotext="Resize Mode", help="how the map is fitted to the generation size; also by index")
PROCESSOR_RES = Field("processor_res", "whole", 512, minimum=64, maximum=2048, step=8,
                      label="Preprocessor Resolution", infotext="Processor Res",
                      help="the detection's resolution, without pixel perfect")
THRESHOLD_A = Field("threshold_a", "number", None, label="Threshold A", infotext="Threshold A",
                    help="the preprocessor's first setting (-1 or none: its default)")
THRESHOLD_B = Field("threshold_b", "number", None, label="Threshold B", infotext="Threshold B",
                    help="the preprocessor's second setting (-1 or none: its default)")
PIXEL_PERFECT = Field("pixel_perfect", "switch", True, label="Pixel Perfect", infotext="Pixel Perfect",
                      help="the map at the generation's resolution")
UNIT_FIELDS = (ENABLED, MODULE, MODEL, IMAGE, MASK, REGION, WEIGHT, GUIDANCE_START, GUIDANCE_END, CONTROL_MODE,
               RESIZE_MODE, PROCESSOR_RES, THRESHOLD_A, THRESHOLD_B, PIXEL_PERFECT)
FIELDS = tuple(field.name for field in UNIT_FIELDS)


@dataclass(frozen=True)
class ControlInput:
    """One ControlNet unit as the model runs it: the control map is already detected, resized and cropped to
    the generation size (an IP-Adapter unit's picture is as given). `model` is a name the library resolves."""

    model: str
    image: Image.Image
    weight: float = 1.0
    guidance_start: float = 0.0  # the fraction of the steps where the unit starts and stops acting
    guidance_end: float = 1.0
    control_mode: str = "Balanced"
    module: str = "none"  # the preprocessor that made the map (an IP-Adapter's: its image encoder)
    region: Image.Image | None = None  # where it acts (white), at the generation size; None: everywhere

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"ControlNet model must be a name, got {self.model!r}")
        if not isinstance(self.image, Image.Image):
            raise ValueError(f"ControlNet image must be an image, got {type(self.image).__name__}")
        check_model_settings(self.weight, self.guidance_start, self.guidance_end, self.control_mode)


class AdapterUnits:
    """What the IP-Adapter and T2I-Adapter hooks share: a request's units of their `kind` that act (some weight,
    some steps), `kinds(model)` telling the kinds apart; `cache` loads the models; `part`: the request's part."""

    kind = ""

    def __init__(self, cache, kinds, part: str):
        self.cache, self.kinds, self.part = cache, kinds, part

    def units(self, request) -> list[ControlInput]:
        part = request.part(self.part)
        return [unit for unit in part.maps if self.kinds(unit.model) == self.kind and unit.weight > 0
                and unit.guidance_end > unit.guidance_start] if part is not None else []

    @staticmethod
    def guided(request, unet) -> bool:
        """The call runs classifier-free guidance: its batch is the negative half, then the positive one."""
        return request.guidance_scale > 1 and unet.config.time_cond_proj_dim is None


def check_model_settings(weight, guidance_start, guidance_end, control_mode) -> None:
    """The model-side ranges of a unit: weight 0 to 2, a guidance window within the steps, a control mode."""
    for field, value in ((WEIGHT, weight), (GUIDANCE_START, guidance_start), (GUIDANCE_END, guidance_end)):
        in_range(f"ControlNet {field.name}", value, (field.minimum, field.maximum))
    if guidance_start > guidance_end:
        raise ValueError(f"ControlNet guidance_start {guidance_start} must not be after guidance_end {guidance_end}")
    if control_mode not in CONTROL_MODES:
        raise ValueError(f"ControlNet control_mode must be one of {', '.join(CONTROL_MODES)}, got {control_mode!r}")


@dataclass(frozen=True)
class ControlNetPart:
    """The request's "controlnet" part: the enabled units with their indexes (as sd-webui-controlnet numbers them),
    and, once the job is prepared, each unit's map at the generation size."""

    units: tuple[tuple[int, ControlUnit], ...] = ()
    maps: tuple[ControlInput, ...] = ()


@dataclass(frozen=True)
class ControlUnit:
    module: str = "none"
    model: str = ""
    image: Image.Image | None = None  # None: the tab's own input image
    mask: Image.Image | None = None  # an inpaint preprocessor's hole (white); None: the tab's mask, or the alpha
    effective_region_mask: Image.Image | None = None  # where the unit acts (white); None: everywhere
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    control_mode: str = "Balanced"
    resize_mode: str = "Crop and Resize"
    processor_res: int = 512
    threshold_a: float | None = None  # None: the preprocessor's default
    threshold_b: float | None = None
    pixel_perfect: bool = True  # processor_res from the target size instead, so any image size works

    @classmethod
    def parse(cls, index: int, raw: dict) -> tuple[ControlUnit | None, list[str]]:
        """(unit, ignored field names) from an API or UI dict; None when the unit is not enabled. Errors name
        the unit and the field."""
        if not isinstance(raw, dict):
            raise ValueError(f"controlnet unit {index}: must be an object of settings, got {type(raw).__name__}")
        ignored = sorted(set(raw) - set(FIELDS) - {"input_image", "mask_image", "low_vram", "guessmode", "lowvram",
                                                   "hr_option"})
        if not raw.get("enabled", True):
            return None, ignored
        try:
            values = {name: raw[name] for name in FIELDS if name != "enabled" and raw.get(name) not in (None, "")}
            if "image" not in values and raw.get("input_image"):  # older clients' name
                values["image"] = raw["input_image"]
            if "image" in values:
                values["image"] = decode_image(values["image"])
            if "mask" not in values and raw.get("mask_image"):  # sd-webui-controlnet's newer name
                values["mask"] = raw["mask_image"]
            for name in ("mask", REGION.name):
                if name in values:
                    values[name] = decode_image(values[name], name).convert("L")
            if "model" in values:
                values["model"] = str(values["model"]).split(" [")[0].strip()  # "name [hash]" as the UI shows it
            if "control_mode" in values:
                values["control_mode"] = choice("control_mode", values["control_mode"], CONTROL_MODES)
            if "resize_mode" in values:
                mode = _RESIZE_ALIASES.get(values["resize_mode"], values["resize_mode"])
                values["resize_mode"] = choice("resize_mode", mode, RESIZE_MODES)
            for name in ("threshold_a", "threshold_b") if values.get("module") != "none" else ():
                if values.get(name) == -1:  # A1111 clients send -1 for "the default"
                    del values[name]
            unit = cls(**values)
            if not unit.model:
                raise ValueError("model is required: choose a ControlNet")
            preprocessors.get(unit.module).settings(unit.processor_res, unit.threshold_a, unit.threshold_b)
            # checked now, not after detection
            check_model_settings(unit.weight, unit.guidance_start, unit.guidance_end, unit.control_mode)
            boolean("pixel_perfect", unit.pixel_perfect)
        except (TypeError, ValueError) as error:
            kind = TooLarge if isinstance(error, TooLarge) else ValueError
            raise kind(f"controlnet unit {index}: {error}") from None
        return unit, ignored

    @classmethod
    def for_map(cls, module: str, processor_res=512, threshold_a=None, threshold_b=None, pixel_perfect=True,
                resize_mode="Crop and Resize") -> ControlUnit:
        """A unit that only makes maps (Preview, /controlnet_detect): its map settings checked, no model needed."""
        mode = choice("resize_mode", _RESIZE_ALIASES.get(resize_mode, resize_mode), RESIZE_MODES)
        boolean("pixel_perfect", pixel_perfect)
        _, threshold_a, threshold_b = preprocessors.get(module).settings(processor_res, threshold_a, threshold_b)
        return cls(module=module, processor_res=processor_res, threshold_a=threshold_a, threshold_b=threshold_b,
                   pixel_perfect=pixel_perfect, resize_mode=mode)

    def control_input(self, fallback: Image.Image | None, target: tuple[int, int], index: int,
                      crop: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None,
                      fallback_mask: Image.Image | None = None) -> ControlInput:
        """The unit as the model runs it. `target`: the generation size. `crop`: (picture size, box) for inpaint,
        whose map is first fitted to the picture and then cropped to the box exactly as the image is.
        `fallback_mask`: the inpaint tab's mask, the hole of an inpaint preprocessor whose unit has no image."""
        source = self.source(fallback, fallback_mask)
        if source is None:
            raise ValueError(f"controlnet unit {index}: give it an image (txt2img has no input image to use)")
        region = self.region(target, crop)
        if preprocessors.get(self.module).image_prompt:  # the whole picture is the prompt, whatever the crop
            return ControlInput(self.model, source.convert("RGB"), float(self.weight), float(self.guidance_start),
                                float(self.guidance_end), self.control_mode, self.module, region)
        size = crop[0] if crop is not None else target
        fitted = self.control_map(source, size)
        if crop is not None:
            fitted = fitted.crop(crop[1]).resize(target, self.resample)
        return ControlInput(self.model, fitted, float(self.weight), float(self.guidance_start),
                            float(self.guidance_end), self.control_mode, self.module, region)

    def region(self, target: tuple[int, int], crop=None) -> Image.Image | None:
        """The effective region at the generation size: stretched over the picture (in inpaint's "only masked",
        the whole picture's, then cropped as the image is)."""
        region = self.effective_region_mask
        if region is None:
            return None
        if crop is None:
            return region.resize(target, Image.Resampling.BILINEAR)
        return region.resize(crop[0], Image.Resampling.BILINEAR).crop(crop[1]).resize(target, Image.Resampling.BILINEAR)

    def source(self, fallback: Image.Image | None, fallback_mask: Image.Image | None = None) -> Image.Image | None:
        """The picture its map is detected from: its image (else the tab's), with the hole of its mask (else the
        tab's, where the picture is the tab's) for an inpaint preprocessor."""
        picture = self.image if self.image is not None else fallback
        mask = self.mask if self.mask is not None else fallback_mask if self.image is None else None
        if picture is None or not preprocessors.get(self.module).masked or mask is None:
            return picture
        return inpaint_maps.with_hole(picture, mask)

    def control_map(self, source: Image.Image, size: tuple[int, int]) -> Image.Image:
        """The map the ControlNet sees at `size`: detected, then fitted by the resize mode (what Preview shows)."""
        return fit(self.detected_map(source, size), size, self.resize_mode, self.resample, keep_alpha=True)

    @property
    def resample(self) -> Image.Resampling:
        """Segmentation maps are resized by nearest neighbour: a blend of two class colours is a third class."""
        return Image.Resampling.NEAREST if preprocessors.get(self.module).class_map else Image.Resampling.BILINEAR

    def detected_map(self, source: Image.Image, target: tuple[int, int]) -> Image.Image:
        return preprocessors.detect(source, self.module, self.resolution(source, target), self.threshold_a,
                                    self.threshold_b)

    def resolution(self, source: Image.Image, target: tuple[int, int]) -> int:
        """Processor Res, or with pixel perfect the one that matches the target (sd-webui-controlnet's formula)."""
        if not self.pixel_perfect:
            return self.processor_res
        scale_h, scale_w = target[1] / source.height, target[0] / source.width
        scale = min(scale_h, scale_w) if self.resize_mode == "Resize and Fill" else max(scale_h, scale_w)
        return max(64, min(2048, round(scale * min(source.size))))

    def infotext(self, model_label: str, source_size: tuple[int, int] | None, target: tuple[int, int]) -> str:
        """sd-webui-controlnet's entry: "Module: canny, Model: name [hash], Weight: 1.0, ..."."""
        preprocessor = preprocessors.get(self.module)
        resolution = self.processor_res
        if self.pixel_perfect and source_size is not None:
            resolution = self.resolution(Image.new("L", source_size), target)
        _, threshold_a, threshold_b = preprocessor.settings(resolution, self.threshold_a, self.threshold_b)
        parts = {
            "Module": preprocessor.name, "Model": model_label, "Weight": float(self.weight),
            "Resize Mode": self.resize_mode, "Processor Res": resolution,
            "Threshold A": _plain(threshold_a if threshold_a is not None else -1),
            "Threshold B": _plain(threshold_b if threshold_b is not None else -1),
            "Guidance Start": float(self.guidance_start), "Guidance End": float(self.guidance_end),
            "Pixel Perfect": self.pixel_perfect, "Control Mode": self.control_mode,
        }
        return ", ".join(f"{key}: {value}" for key, value in parts.items())


def _plain(number: float) -> float | int:
    """Thresholds as sd-webui-controlnet writes them: 100, not 100.0."""
    return int(number) if float(number).is_integer() else number
