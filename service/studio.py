"""The studio service: the one place every interface (UI, gradio_client, REST) goes through.

It turns raw inputs into a validated GenerationRequest, runs it on the shared manager, and writes each image
as a PNG carrying A1111's infotext. Bad input raises ValueError naming the field and the value; the interfaces
turn that into gr.Error or an HTTP error.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from extensions.controlnet.pipeline import ControlNets
from extensions.controlnet.units import ControlUnit
from extensions.inpaint import InpaintOptions, InpaintPlan, extend_canvas, prepare_mask
from extensions.inpaint.options import whole_number
from extensions.lora import LoraAdapters, parse_tags
from models.limits import check_image, check_text, open_image
from models.manager import PipelineManager, StepCallback
from models.request import GenerationRequest
from models.samplers import split_name
from service.infotext import format_infotext, save_png

log = logging.getLogger(__name__)

INPAINT_FIELDS = tuple(field.name for field in dataclasses.fields(InpaintOptions))  # mask_blur, invert_mask, ...
OUTPAINT_FIELDS = ("left", "right", "up", "down", "overlap", "fill")


@dataclass
class JobState:
    """What runs now, for /sdapi/v1/progress: the job's step, its steps and when it started."""

    running: bool = False
    step: int = 0
    steps: int = 0
    started: float = 0.0
    job_count: int = 0  # jobs started since the app started
    interrupted: bool = False


@dataclass(frozen=True)
class Generation:
    files: list[Path]
    infotexts: list[str]
    seeds: list[int]
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False


class StudioService:
    def __init__(
        self, manager: PipelineManager, output_dir: str | Path, notice: str = "", loras: LoraAdapters | None = None,
        controlnets: ControlNets | None = None,
    ):
        self.manager = manager
        self.output_dir = Path(output_dir)
        self.notice = notice  # e.g. "fell back to the demo model because ..."
        self.loras = loras  # None: LoRA is off and <lora:...> tags are refused
        self.controlnets = controlnets  # None: ControlNet is off and units are refused
        self.state = JobState()
        self.model_loader = None  # name -> (manager, loras, controlnets); set by the app to allow switching
        self.checkpoints = lambda: []  # the checkpoint names a client may switch to; set by the app
        self._save_lock = threading.Lock()

    # -- facts for the interfaces -----------------------------------------------------------------------

    def system_line(self) -> str:
        return self.manager.describe()

    @property
    def default_size(self) -> int:
        return self.manager.default_size

    def interrupt(self) -> None:
        self.state.interrupted = self.state.running
        self.manager.interrupt()

    def switch_model(self, spec: str) -> None:
        """Load another base model and make it the one every request uses (A1111's sd_model_checkpoint). Waits
        for the running job; the current model stays in use if the new one fails to load."""
        if self.model_loader is None:
            raise ValueError("sd_model_checkpoint: switching models is not available in this app")
        with self.manager.lock:
            self.manager, self.loras, self.controlnets = self.model_loader(spec)

    # -- generation -------------------------------------------------------------------------------------

    def generate(self, mode: str, on_step: StepCallback | None = None, **raw) -> Generation:
        # 1. validate (the text's length first: nothing else reads a prompt over the limit); inpainting first
        #    decides what the model sees (whole picture or the masked crop)
        for name in ("prompt", "negative_prompt"):
            check_text(name, raw.get(name))
        options = InpaintOptions(**{name: raw.pop(name) for name in INPAINT_FIELDS if name in raw})
        units, unit_warnings = self._control_units(raw.pop("controlnet_units", None))
        if mode == "inpaint" and options.invert_mask and raw.get("mask") is not None:
            raw["mask"], _ = prepare_mask(load_mask(raw["mask"]), invert=True, blur=0)  # refuses a mask left empty
        request, warnings = self.build_request(mode, **raw)
        job, plan = request, None
        if mode == "inpaint":
            plan = InpaintPlan.make(request.image, request.mask, dataclasses.replace(options, invert_mask=False),
                                    request.width, request.height)
            job = dataclasses.replace(request, image=plan.image, mask=plan.mask, width=plan.size[0],
                                      height=plan.size[1], latent_fill=self._latent_fill(options, warnings))
        warnings += unit_warnings
        # ControlNet maps: detected, fitted to the generation size (for inpaint: to the picture, then cropped
        # exactly as the image is, so "only masked" sees the matching part of the map)
        target = (job.width, job.height)
        crop = (request.image.size, plan.box) if plan is not None else None
        controls = tuple(unit.control_input(request.image, target, index, crop) for index, unit in units)
        job = dataclasses.replace(job, controls=controls)
        # 2. run on the shared model (the manager holds its lock while configuring and running)
        result = self._run_tracked(job, on_step)
        if result.interrupted:
            warnings.append("interrupted: the image shows the state after the last finished step")
        # 3. inpainting: the generated area back into the picture, every pixel outside the blurred mask untouched
        images = plan.paste_all(result.images) if plan is not None else result.images
        # 4. attach metadata (the prompt as typed, <lora:...> tags included) and save
        typed_prompt = raw.get("prompt") or ""
        extra = {**(options.infotext() if plan is not None else {}), **result.parameters}
        for index, unit in units:
            source = unit.image if unit.image is not None else request.image
            label = self.controlnets.library.infotext_name(unit.model)
            extra[f"ControlNet {index}"] = unit.infotext(label, source.size if source is not None else None, target)
        infotexts = [self.infotext(request, seed, typed_prompt, extra) for seed in result.seeds]
        files = [self._save(mode, image, seed, text) for image, seed, text in zip(images, result.seeds, infotexts)]
        for warning in warnings:
            log.warning(warning)
        return Generation(files, infotexts, result.seeds, warnings, result.interrupted)

    def _run_tracked(self, job: GenerationRequest, on_step: StepCallback | None):
        def step(done: int, total: int) -> None:
            self.state.step, self.state.steps = done, total
            if on_step is not None:
                on_step(done, total)

        with self.manager.lock:  # re-entered by generate: the state describes the job that holds the model
            self.state = JobState(True, 0, job.steps, time.monotonic(), self.state.job_count + 1)
            try:
                return self.manager.generate(job, on_step=step)
            finally:
                self.state.running = False

    def outpaint(self, on_step: StepCallback | None = None, **raw) -> Generation:
        """Extend the canvas (left/right/up/down px), pre-fill the new area and inpaint it with a seam that
        reaches `overlap` px into the picture; the picture beyond the seam is kept exactly."""
        settings = {name: raw.pop(name) for name in OUTPAINT_FIELDS if name in raw}
        image = load_image(raw.pop("image", None), "image")
        if image is None:
            raise ValueError("image is required for outpaint")
        seed = raw.get("seed", -1)
        canvas, mask = extend_canvas(image, seed=seed if isinstance(seed, int) and seed >= 0 else 0, **settings)
        overlap = settings.get("overlap", 16)
        # A blur up to overlap / 8 softens the seam while the picture beyond the band stays 0 in the blurred mask.
        blur = min(4, int(overlap) // 8) if isinstance(overlap, (int, float)) else 0
        return self.generate("inpaint", on_step, image=canvas, mask=mask, mask_blur=blur, **raw)

    def _control_units(self, raw_units) -> tuple[list[tuple[int, ControlUnit]], list[str]]:
        """The enabled units with their indexes (as sd-webui-controlnet numbers them), and warnings."""
        if not raw_units:
            return [], []
        if self.controlnets is None:
            raise ValueError("controlnet_units: ControlNet support is off in this app")
        if not isinstance(raw_units, (list, tuple)):
            raise ValueError(f"controlnet_units must be a list of units, got {type(raw_units).__name__}")
        if len(raw_units) > self.controlnets.max_units:
            raise ValueError(f"controlnet_units: at most {self.controlnets.max_units} units, got {len(raw_units)}")
        units, warnings = [], []
        for index, raw in enumerate(raw_units):
            unit, ignored = ControlUnit.parse(index, raw)
            if ignored:
                warnings.append(f"controlnet unit {index}: ignored unknown fields {', '.join(ignored)}")
            if unit is not None:
                try:  # an unknown model is an error now, not mid-run
                    self.controlnets.library.resolve(unit.model)
                except ValueError as error:
                    raise ValueError(f"controlnet unit {index}: {error}") from None
                units.append((index, unit))
        return units, warnings

    def control_map(self, image, module: str, processor_res=512, threshold_a=None, threshold_b=None,
                    pixel_perfect=True, resize_mode="Crop and Resize", size=None) -> Image.Image:
        """The map a ControlNet unit with these settings gives a generation of `size` (width, height): detected
        and fitted exactly as `generate` does, so Preview shows what the ControlNet will see. Without `size`, the
        image's own size: /controlnet_detect's map (with pixel perfect, detected at the image's resolution)."""
        picture = load_image(image, "image")
        if picture is None:
            raise ValueError("image is required to detect a map")
        unit = ControlUnit.for_map(module, processor_res, threshold_a, threshold_b, pixel_perfect, resize_mode)
        width, height = size if size is not None else picture.size
        return unit.control_map(picture, (whole_number("width", width, 1), whole_number("height", height, 1)))

    def _latent_fill(self, options: InpaintOptions, warnings: list[str]) -> str | None:
        if options.masked_content not in ("latent noise", "latent nothing"):
            return None
        if self.manager.is_inpainting_model:
            warnings.append(
                f"masked content {options.masked_content!r} acts on 4-channel models; this inpainting model sees the "
                "masked image itself, so it was inpainted as with 'original'"
            )
            return None
        return options.masked_content

    def build_request(self, mode: str, **raw) -> tuple[GenerationRequest, list[str]]:
        warnings: list[str] = []
        if isinstance(raw.get("prompt"), str):
            raw["prompt"], raw["loras"] = self._lora_tags(raw["prompt"])
        for name in ("prompt", "negative_prompt"):
            text = raw.get(name)
            if text is None:
                raw[name] = ""
            elif isinstance(text, str) and self.manager.count_tokens(text) > self.manager.max_prompt_tokens:
                warnings.append(
                    f"{name} is {self.manager.count_tokens(text)} tokens long; only the first "
                    f"{self.manager.max_prompt_tokens} reach the text encoder, the rest is cut off"
                )
        if "image" in raw:
            raw["image"] = load_image(raw["image"], "image")
        if "mask" in raw:
            raw["mask"] = load_mask(raw["mask"])
            image = raw.get("image")
            if raw["mask"] is not None and image is not None and raw["mask"].size != image.size:
                warnings.append(
                    "mask was {}x{}, resized to the image's {}x{}".format(*raw["mask"].size, *image.size)
                )
                raw["mask"] = raw["mask"].resize(image.size, Image.NEAREST)
        for name in ("width", "height", "steps", "seed", "batch_size"):
            if isinstance(raw.get(name), float) and raw[name].is_integer():
                raw[name] = int(raw[name])  # JSON and sliders send 512.0
        return GenerationRequest(mode=mode, **raw), warnings

    def _lora_tags(self, prompt: str) -> tuple[str, tuple]:
        """The prompt without its <lora:name:weight> tags, and the tags; an unknown LoRA is an error now."""
        text, tags = parse_tags(prompt)
        if tags and self.loras is None:
            raise ValueError("prompt: <lora:...> tags need LoRA support, which is off in this app")
        for tag in tags:
            self.loras.library.resolve(tag.name)
        return text, tags

    def infotext(self, request: GenerationRequest, seed: int, typed_prompt: str, extra: dict[str, str]) -> str:
        sampler, schedule_type = split_name(request.sampler)
        parameters = {
            "Steps": request.steps,
            "Sampler": sampler,
            "Schedule type": schedule_type,
            "CFG scale": request.guidance_scale,
            "Seed": seed,
            "Size": f"{request.width}x{request.height}",
            "Model hash": self.manager.model_hash or None,
            "Model": self.manager.source.name,
            "Denoising strength": request.strength if request.mode != "txt2img" else None,
            **extra,
        }
        return format_infotext(typed_prompt, request.negative_prompt, parameters)

    def _save(self, mode: str, image: Image.Image, seed: int, infotext: str) -> Path:
        folder = self.output_dir / f"{mode}-images" / datetime.date.today().isoformat()
        with self._save_lock:  # A1111's numbering: 00000-seed.png, 00001-seed.png, ...
            number = len(list(folder.glob("*.png"))) if folder.is_dir() else 0
            return save_png(image, folder / f"{number:05d}-{seed}.png", infotext)


def load_image(value, field: str) -> Image.Image | None:
    """An image from what an interface hands over: a PIL image, an array, a file path or a gradio file dict, within
    models.limits' bounds (a file's size and dimensions are checked before it is decoded)."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return check_image(value, field)
    if isinstance(value, np.ndarray):
        return check_image(Image.fromarray(value), field)
    if isinstance(value, dict) and "path" in value:
        value = value["path"]
    if not isinstance(value, (str, Path)):
        raise ValueError(f"{field} must be an image file, got {type(value).__name__}")
    return open_image(value, field)


def load_mask(value) -> Image.Image | None:
    """A mask as grayscale, white = repaint. A mask with transparency counts its opaque (painted) pixels."""
    mask = load_image(value, "mask")
    if mask is None:
        return None
    if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema()[0] < 255:
        return mask.getchannel("A")
    return mask.convert("L")
