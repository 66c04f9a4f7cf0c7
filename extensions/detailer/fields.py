"""The detailer's unit, by ADetailer's names: its API's `ad_*` keys (`alwayson_scripts.ADetailer.args`) and its
infotext's "ADetailer ..." entries (" 2nd", " 3rd", ... after the first unit's)."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.fields import Field

MERGE_MODES = ("None", "Merge", "Merge and Invert")
ORDINALS = ("", " 2nd", " 3rd", " 4th")  # ADetailer's infotext suffix of unit i
MAX_UNITS = len(ORDINALS)

AD_MODEL = Field("ad_model", "text", "face_haar", label="Detector", infotext="ADetailer model",
                 help="what to find (GET /adetailer/v1/ad_model lists them); None: the unit does nothing")
AD_PROMPT = Field("ad_prompt", "text", "", label="Detailer prompt", infotext="ADetailer prompt",
                  help="empty: the job's prompt; [PROMPT] is replaced by it; [SEP] gives each detection its own")
AD_NEGATIVE_PROMPT = Field("ad_negative_prompt", "text", "", label="Detailer negative prompt",
                           infotext="ADetailer negative prompt", help="empty: the job's negative prompt")
AD_CONFIDENCE = Field("ad_confidence", "number", 0.3, minimum=0.0, maximum=1.0, step=0.01,
                      label="Detection confidence", infotext="ADetailer confidence",
                      help="detections less sure than this are left out")
AD_MASK_K = Field("ad_mask_k", "whole", 0, minimum=0, maximum=10, step=1, label="Top k largest",
                  infotext="ADetailer mask only top k", help="0: every detection")
AD_MASK_MIN_RATIO = Field("ad_mask_min_ratio", "number", 0.0, minimum=0.0, maximum=1.0, step=0.001,
                          label="Mask min area ratio", infotext="ADetailer mask min ratio",
                          help="detections smaller than this fraction of the picture are left out")
AD_MASK_MAX_RATIO = Field("ad_mask_max_ratio", "number", 1.0, minimum=0.0, maximum=1.0, step=0.001,
                          label="Mask max area ratio", infotext="ADetailer mask max ratio",
                          help="detections larger than this fraction of the picture are left out")
AD_X_OFFSET = Field("ad_x_offset", "whole", 0, minimum=-200, maximum=200, step=1, label="Mask x offset",
                    infotext="ADetailer x offset", help="pixels the mask moves right")
AD_Y_OFFSET = Field("ad_y_offset", "whole", 0, minimum=-200, maximum=200, step=1, label="Mask y offset",
                    infotext="ADetailer y offset", help="pixels the mask moves up")
AD_DILATE_ERODE = Field("ad_dilate_erode", "whole", 4, minimum=-128, maximum=128, step=4,
                        label="Mask erosion (-) / dilation (+)", infotext="ADetailer dilate erode",
                        help="pixels the mask grows (or shrinks, below 0)")
AD_MASK_MERGE_INVERT = Field("ad_mask_merge_invert", "choice", "None", choices=MERGE_MODES,
                             label="Mask merge mode", infotext="ADetailer mask merge invert",
                             help="Merge: one pass over all detections; Merge and Invert: over everything else")
AD_MASK_BLUR = Field("ad_mask_blur", "whole", 4, minimum=0, maximum=64, step=1, label="Inpaint mask blur",
                     infotext="ADetailer mask blur", help="pixels of the seam blended")
AD_DENOISING_STRENGTH = Field("ad_denoising_strength", "number", 0.4, minimum=0.0, maximum=1.0, step=0.01,
                              label="Inpaint denoising strength", infotext="ADetailer denoising strength",
                              help="how much of each detection is repainted")
AD_INPAINT_ONLY_MASKED = Field("ad_inpaint_only_masked", "switch", True, label="Inpaint only masked",
                               infotext="ADetailer inpaint only masked",
                               help="each detection at the full generation size (off: the whole picture)")
AD_INPAINT_ONLY_MASKED_PADDING = Field("ad_inpaint_only_masked_padding", "whole", 32, minimum=0, maximum=256,
                                       step=4, label="Inpaint only masked padding, pixels",
                                       infotext="ADetailer inpaint padding", help="context kept around it")
AD_USE_INPAINT_WIDTH_HEIGHT = Field("ad_use_inpaint_width_height", "switch", False,
                                    label="Use separate width/height",
                                    infotext="ADetailer use inpaint width height",
                                    help="off: the job's own width and height, the model's native size")
AD_INPAINT_WIDTH = Field("ad_inpaint_width", "size", 512, minimum=64, maximum=2048, step=8, label="Inpaint width",
                         infotext="ADetailer inpaint width", help="with separate width/height")
AD_INPAINT_HEIGHT = Field("ad_inpaint_height", "size", 512, minimum=64, maximum=2048, step=8,
                          label="Inpaint height", infotext="ADetailer inpaint height",
                          help="with separate width/height")
AD_USE_STEPS = Field("ad_use_steps", "switch", False, label="Use separate steps",
                     infotext="ADetailer use separate steps", help="off: the job's steps")
AD_STEPS = Field("ad_steps", "whole", 28, minimum=1, maximum=150, step=1, label="Detailer steps",
                 infotext="ADetailer steps", help="with separate steps")
AD_USE_CFG_SCALE = Field("ad_use_cfg_scale", "switch", False, label="Use separate CFG scale",
                         infotext="ADetailer use separate CFG scale", help="off: the job's CFG scale")
AD_CFG_SCALE = Field("ad_cfg_scale", "number", 7.0, minimum=0.0, maximum=30.0, step=0.5, label="Detailer CFG scale",
                     infotext="ADetailer CFG scale", help="with separate CFG scale")
SKIP_IMG2IMG = Field("ad_skip_img2img", "switch", False, label="Skip img2img",
                     help="img2img: no img2img pass; the detailer works on the input picture itself")
UNIT_FIELDS = (AD_MODEL, AD_PROMPT, AD_NEGATIVE_PROMPT, AD_CONFIDENCE, AD_MASK_K, AD_MASK_MIN_RATIO,
               AD_MASK_MAX_RATIO, AD_X_OFFSET, AD_Y_OFFSET, AD_DILATE_ERODE, AD_MASK_MERGE_INVERT, AD_MASK_BLUR,
               AD_DENOISING_STRENGTH, AD_INPAINT_ONLY_MASKED, AD_INPAINT_ONLY_MASKED_PADDING,
               AD_USE_INPAINT_WIDTH_HEIGHT, AD_INPAINT_WIDTH, AD_INPAINT_HEIGHT, AD_USE_STEPS, AD_STEPS,
               AD_USE_CFG_SCALE, AD_CFG_SCALE)
ALIASES = {"ad_mask_k_largest": AD_MASK_K.name}  # ADetailer's older names
# ADetailer's keys read and not acted on here (a warning names them): separate sampler, checkpoint, VAE, ControlNet...
WRITTEN_ALWAYS = (AD_MODEL, AD_CONFIDENCE, AD_DILATE_ERODE, AD_MASK_BLUR, AD_DENOISING_STRENGTH,
                  AD_INPAINT_ONLY_MASKED, AD_INPAINT_ONLY_MASKED_PADDING)  # as ADetailer writes them


@dataclass(frozen=True)
class DetailerUnit:
    ad_model: str = AD_MODEL.default
    ad_prompt: str = AD_PROMPT.default
    ad_negative_prompt: str = AD_NEGATIVE_PROMPT.default
    ad_confidence: float = AD_CONFIDENCE.default
    ad_mask_k: int = AD_MASK_K.default
    ad_mask_min_ratio: float = AD_MASK_MIN_RATIO.default
    ad_mask_max_ratio: float = AD_MASK_MAX_RATIO.default
    ad_x_offset: int = AD_X_OFFSET.default
    ad_y_offset: int = AD_Y_OFFSET.default
    ad_dilate_erode: int = AD_DILATE_ERODE.default
    ad_mask_merge_invert: str = AD_MASK_MERGE_INVERT.default
    ad_mask_blur: int = AD_MASK_BLUR.default
    ad_denoising_strength: float = AD_DENOISING_STRENGTH.default
    ad_inpaint_only_masked: bool = AD_INPAINT_ONLY_MASKED.default
    ad_inpaint_only_masked_padding: int = AD_INPAINT_ONLY_MASKED_PADDING.default
    ad_use_inpaint_width_height: bool = AD_USE_INPAINT_WIDTH_HEIGHT.default
    ad_inpaint_width: int = AD_INPAINT_WIDTH.default
    ad_inpaint_height: int = AD_INPAINT_HEIGHT.default
    ad_use_steps: bool = AD_USE_STEPS.default
    ad_steps: int = AD_STEPS.default
    ad_use_cfg_scale: bool = AD_USE_CFG_SCALE.default
    ad_cfg_scale: float = AD_CFG_SCALE.default

    @classmethod
    def parse(cls, index: int, raw, warnings: list[str]) -> DetailerUnit:
        """A unit from ADetailer's dict of `ad_*` keys; errors name the unit and the key."""
        where = f"ADetailer unit {index}"
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be an object of ad_* settings, got {type(raw).__name__}")
        values = {ALIASES.get(key, key): value for key, value in raw.items()}
        known = {field.name for field in UNIT_FIELDS}
        ignored = sorted(set(values) - known)
        if ignored:
            warnings.append(f"{where}: not applied here: {', '.join(ignored)}")
        checked = {}
        for unit_field in UNIT_FIELDS:
            if values.get(unit_field.name) is not None:
                try:
                    checked[unit_field.name] = unit_field.check(values[unit_field.name])
                except ValueError as error:
                    raise ValueError(f"{where}: {error}") from None
        return cls(**checked)

    @property
    def active(self) -> bool:
        return self.ad_model != "None"

    def size(self, request) -> tuple[int, int]:
        """A detail pass's generation size: the unit's own, else the job's (the model's native one)."""
        return (self.ad_inpaint_width, self.ad_inpaint_height) if self.ad_use_inpaint_width_height else \
            (request.width, request.height)

    def steps(self, request) -> int:
        return self.ad_steps if self.ad_use_steps else request.steps

    def cfg_scale(self, request) -> float:
        return self.ad_cfg_scale if self.ad_use_cfg_scale else request.guidance_scale

    def pass_steps(self, request) -> int:
        """The steps a detail pass runs: its steps times its denoising strength."""
        return max(1, int(self.steps(request) * self.ad_denoising_strength))

    def infotext(self, index: int) -> dict:
        """ADetailer's entries for unit `index`: the ones it always writes, the others where they differ from
        their defaults (a switch's value only with the switch on)."""
        suffix = ORDINALS[index]
        used = {AD_INPAINT_WIDTH: self.ad_use_inpaint_width_height, AD_INPAINT_HEIGHT: self.ad_use_inpaint_width_height,
                AD_STEPS: self.ad_use_steps, AD_CFG_SCALE: self.ad_use_cfg_scale}  # a value its switch turns on
        entries = {}
        for unit_field in UNIT_FIELDS:
            value = getattr(self, unit_field.name)
            if unit_field in WRITTEN_ALWAYS or (value != unit_field.default and used.get(unit_field, True)):
                entries[unit_field.infotext + suffix] = value
        return entries


def detail_prompt(own: str, job: str, detection: int) -> str:
    """ADetailer's prompt: the detection's part of `own` ([SEP] between them; the last one for the rest), with
    [PROMPT] replaced by the job's prompt; the job's prompt where it is empty."""
    parts = [part.strip() for part in own.split("[SEP]")]
    chosen = parts[min(detection, len(parts) - 1)]
    return chosen.replace("[PROMPT]", job) if chosen else job


def detail_prompts(own: str, job: str) -> set[str]:
    """Every prompt `own` gives a detection."""
    return {detail_prompt(own, job, detection) for detection in range(own.count("[SEP]") + 1)}


@dataclass(frozen=True)
class DetailerPart:
    """The request's "detailer" part: its active units, whether the img2img pass is skipped (the input picture is
    detailed), and the notes its passes leave for the job (not compared: a place to write, given by `prepare`)."""

    units: tuple[DetailerUnit, ...]
    skip_pass: bool = False
    notes: list = field(default_factory=list, compare=False, hash=False)
