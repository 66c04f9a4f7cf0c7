"""A ControlNet unit as users and A1111 clients give it (sd-webui-controlnet's field names), and how its control
map is made: detected by the unit's preprocessor, fitted to the target size by its resize mode, and, for inpaint's
"only masked", cropped like the image.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image, ImageOps

from extensions.controlnet import preprocessors
from models.limits import TooLarge, check_image, decode_base64_image
from models.request import CONTROL_MODES, ControlInput

RESIZE_MODES = ("Just Resize", "Crop and Resize", "Resize and Fill")
# sd-webui-controlnet's API also takes the modes by index, and by the names of its internal enums.
_RESIZE_ALIASES = {"Inner Fit (Scale to Fit)": "Crop and Resize", "Outer Fit (Shrink to Fit)": "Resize and Fill",
                   "Envelope (Outer Fit)": "Resize and Fill", "Scale to Fit (Inner Fit)": "Crop and Resize"}
FIELDS = ("enabled", "module", "model", "image", "weight", "guidance_start", "guidance_end", "control_mode",
          "resize_mode", "processor_res", "threshold_a", "threshold_b", "pixel_perfect")


@dataclass(frozen=True)
class ControlUnit:
    module: str = "none"
    model: str = ""
    image: Image.Image | None = None  # None: the tab's own input image
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
        ignored = sorted(set(raw) - set(FIELDS) - {"input_image", "mask", "low_vram", "guessmode", "lowvram",
                                                   "hr_option"})
        if not raw.get("enabled", True):
            return None, ignored
        try:
            values = {name: raw[name] for name in FIELDS if name != "enabled" and raw.get(name) not in (None, "")}
            if "image" not in values and raw.get("input_image"):  # older clients' name
                values["image"] = raw["input_image"]
            if "image" in values:
                values["image"] = decode_image(values["image"])
            if "model" in values:
                values["model"] = str(values["model"]).split(" [")[0].strip()  # "name [hash]" as the UI shows it
            if "control_mode" in values:
                values["control_mode"] = _choice("control_mode", values["control_mode"], CONTROL_MODES)
            if "resize_mode" in values:
                mode = _RESIZE_ALIASES.get(values["resize_mode"], values["resize_mode"])
                values["resize_mode"] = _choice("resize_mode", mode, RESIZE_MODES)
            for name in ("threshold_a", "threshold_b") if values.get("module") != "none" else ():
                if values.get(name) == -1:  # A1111 clients send -1 for "the default"
                    del values[name]
            unit = cls(**values)
            if not unit.model:
                raise ValueError("model is required: choose a ControlNet")
            preprocessors.get(unit.module).settings(unit.processor_res, unit.threshold_a, unit.threshold_b)
            # the model-side ranges (weight 0 to 2, guidance window, mode) checked now, not after detection
            ControlInput(unit.model, Image.new("RGB", (8, 8)), unit.weight, unit.guidance_start, unit.guidance_end,
                         unit.control_mode)
            if not isinstance(unit.pixel_perfect, bool):
                raise ValueError(f"pixel_perfect must be true or false, got {unit.pixel_perfect!r}")
        except (TypeError, ValueError) as error:
            raise (TooLarge if isinstance(error, TooLarge) else ValueError)(f"controlnet unit {index}: {error}") from None
        return unit, ignored

    @classmethod
    def for_map(cls, module: str, processor_res=512, threshold_a=None, threshold_b=None, pixel_perfect=True,
                resize_mode="Crop and Resize") -> ControlUnit:
        """A unit that only makes maps (Preview, /controlnet_detect): its map settings checked, no model needed."""
        mode = _choice("resize_mode", _RESIZE_ALIASES.get(resize_mode, resize_mode), RESIZE_MODES)
        if not isinstance(pixel_perfect, bool):
            raise ValueError(f"pixel_perfect must be true or false, got {pixel_perfect!r}")
        _, threshold_a, threshold_b = preprocessors.get(module).settings(processor_res, threshold_a, threshold_b)
        return cls(module=module, processor_res=processor_res, threshold_a=threshold_a, threshold_b=threshold_b,
                   pixel_perfect=pixel_perfect, resize_mode=mode)

    def control_input(self, fallback: Image.Image | None, target: tuple[int, int], index: int,
                      crop: tuple[tuple[int, int], tuple[int, int, int, int]] | None = None) -> ControlInput:
        """The unit as the model runs it. `target`: the generation size. `crop`: (picture size, box) for inpaint,
        whose map is first fitted to the picture and then cropped to the box exactly as the image is."""
        source = self.image if self.image is not None else fallback
        if source is None:
            raise ValueError(f"controlnet unit {index}: give it an image (txt2img has no input image to use)")
        size = crop[0] if crop is not None else target
        fitted = self.control_map(source, size)
        if crop is not None:
            fitted = fitted.crop(crop[1]).resize(target, self.resample)
        return ControlInput(self.model, fitted, float(self.weight), float(self.guidance_start),
                            float(self.guidance_end), self.control_mode)

    def control_map(self, source: Image.Image, size: tuple[int, int]) -> Image.Image:
        """The map the ControlNet sees at `size`: detected, then fitted by the resize mode (what Preview shows)."""
        return fit(self.detected_map(source, size), size, self.resize_mode, self.resample)

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


def fit(image: Image.Image, size: tuple[int, int], resize_mode: str,
        resample: Image.Resampling = Image.Resampling.BILINEAR) -> Image.Image:
    """The image at `size`: stretched (Just Resize), scaled to cover and centre-cropped (Crop and Resize), or scaled
    to fit and padded with black, which reads as "no control" in edge and line maps (Resize and Fill). Also the
    REST API's img2img resize_mode."""
    image = image.convert("RGB")
    if resize_mode == "Just Resize" or image.size == size:
        return image.resize(size, resample)
    if resize_mode == "Crop and Resize":
        return ImageOps.fit(image, size, resample)
    return ImageOps.pad(image, size, resample, color="black")


def decode_image(value, field_name: str = "image") -> Image.Image:
    """An image from the API: a PIL image, or base64 / a data URL as A1111 clients send them (also used by the REST
    API), within models.limits' bounds. File paths are not accepted: a client must not make the server read its
    files."""
    if isinstance(value, Image.Image):
        return check_image(value, field_name)
    return decode_base64_image(value, field_name)


def _plain(number: float) -> float | int:
    """Thresholds as sd-webui-controlnet writes them: 100, not 100.0."""
    return int(number) if float(number).is_integer() else number


def _choice(field: str, value, choices: tuple[str, ...]) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(choices):
        return choices[value]
    if value not in choices:
        raise ValueError(f"{field} must be one of {', '.join(choices)}, got {value!r}")
    return value
