"""Upscalers as a slice: the upscaler folder (library.py), tiled model runs (upscaling.py), hires fix for txt2img
(hires.py: the request's "upscale" part, a manager hook, A1111's REST fields and infotext), the Extras tab and the
Hires. fix accordion (panel.py), gradio_client's /upscale, and A1111's GET /sdapi/v1/upscalers and
POST /sdapi/v1/extra-single-image.

An upscale shares the device with generations: it is a job in the one queue, as a training run is."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from PIL import Image

from extensions.base import SOLO, Extension, Panel, PreparedRequest, Route, Settings, TabContext, rename_words
from extensions.upscale.defaults import hires_defaults
from extensions.upscale.fields import (
    ENABLE_HR,
    EXTRAS_BATCH_BODY,
    EXTRAS_BODY,
    HIRES_FIELDS,
    HR_DENOISING_STRENGTH,
    HR_NEGATIVE_PROMPT,
    HR_PROMPT,
    HR_RESIZE_X,
    HR_RESIZE_Y,
    HR_SAMPLER_NAME,
    HR_SCALE,
    HR_SCHEDULER,
    HR_SECOND_PASS_STEPS,
    HR_UPSCALER,
    SAME_SAMPLER,
    SCALE,
)
from extensions.upscale.hires import LATENT_UPSCALERS, HiresFix, HiresPlan
from extensions.upscale.library import UpscalerLibrary
from extensions.upscale.sd_upscale import SdUpscale
from extensions.upscale.upscaling import PIXEL_UPSCALERS, upscale
from models.fields import read_entries
from models.images import decode_image, load_image, png_base64
from models.request import SIZE_RANGE, Pass
from models.sampler_names import SAMPLER_NAMES, check_sampler, join_name
from models.step_conditioning import SCHEDULE
from models.validate import integer, whole_number

MAX_RESULT_SIDE = 4096  # px: an upscaled picture's longest side
MAX_BATCH_IMAGES = 16  # extra-batch-images' images at once
MAX_SCHEDULE = 1000  # a second pass's schedule (steps / strength) within the model's training timesteps


class Upscale(Extension):
    name = "upscale"
    fields = HIRES_FIELDS
    modes = ("txt2img",)
    rest_body = (HR_SCHEDULER,)
    placement = "size"  # the Hires. fix accordion, under the width and height
    tab_name = "extras"

    def __init__(self, folder: str | Path, max_script_jobs: int = 64):
        self.library = UpscalerLibrary(folder)
        self.manager = None
        self.max_script_jobs = max_script_jobs  # SD upscale's most tiles

    @classmethod
    def from_settings(cls, settings: Settings) -> Upscale:
        settings.upscaler_dir.mkdir(parents=True, exist_ok=True)  # so users see where to drop models
        return cls(settings.upscaler_dir, settings.max_script_jobs)

    def install(self, manager) -> None:
        self.manager = manager
        manager.pipeline_hooks.append(self._hook)

    def scripts(self) -> tuple:
        return (SdUpscale(self.upscaler_names, lambda picture, name, size: self.upscale(picture, name, size=size),
                          self.max_script_jobs),)

    def upscaler_names(self) -> list[str]:
        return [*PIXEL_UPSCALERS, *self.library.names()]

    def model_defaults(self) -> dict:
        return hires_defaults(self.manager)

    def hires_upscaler_names(self) -> list[str]:
        return [*LATENT_UPSCALERS, *self.upscaler_names()]

    def upscale(self, image, upscaler: str = "Lanczos", scale: float = SCALE.default,
                size: tuple[int, int] | None = None) -> Image.Image:
        """`image` larger by `scale`, or to `size` (width, height), with the upscaler of that name, as a job in the
        queue. Errors name the field and the value."""
        picture = load_image(image, "image")
        if picture is None:
            raise ValueError("image is required to upscale")
        names = self.upscaler_names()
        if not isinstance(upscaler, str) or upscaler not in names:
            raise ValueError(self.library.missing(str(upscaler), names))
        if size is None:
            scale = SCALE.check(scale)
            size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            field = "scale"
        else:
            size = tuple(whole_number(name, side, 1) for name, side in zip(("width", "height"), size))
            field = "width and height"
        if max(size) > MAX_RESULT_SIDE:
            raise ValueError(f"{field}: the result would be {size[0]}x{size[1]} pixels; at most {MAX_RESULT_SIDE} "
                             "a side")
        return self.services.run_task(
            1, lambda manager, stop, step: upscale(picture, upscaler, size, self.library.load, manager.runtime.device))

    # -- hires fix: the request ------------------------------------------------------------------------------

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> HiresPlan | None:
        if mode != "txt2img" or not ENABLE_HR.check(fields.get(ENABLE_HR.name, ENABLE_HR.default)):
            return None
        upscaler = fields.get(HR_UPSCALER.name) or HR_UPSCALER.default  # A1111: none named is Latent
        names = self.hires_upscaler_names()
        if not isinstance(upscaler, str) or upscaler not in names:
            raise ValueError(f"hr_upscaler: {self.library.missing(str(upscaler), names)}")
        sampler = fields.get(HR_SAMPLER_NAME.name) or SAME_SAMPLER
        texts = {field.name: field.check(fields.get(field.name) or "") or None
                 for field in (HR_PROMPT, HR_NEGATIVE_PROMPT)}

        defaults = self.model_defaults()

        def value(field):
            return field.check(fields.get(field.name, defaults.get(field.name, field.default)))

        plan = HiresPlan(
            upscaler=upscaler, scale=float(value(HR_SCALE)), resize=(value(HR_RESIZE_X), value(HR_RESIZE_Y)),
            steps=value(HR_SECOND_PASS_STEPS), strength=value(HR_DENOISING_STRENGTH),
            prompt=texts[HR_PROMPT.name], negative_prompt=texts[HR_NEGATIVE_PROMPT.name],
            sampler=None if sampler == SAME_SAMPLER else check_sampler(sampler, HR_SAMPLER_NAME.name),
        )
        try:
            width, height, steps = (integer(name, fields.get(name)) for name in ("width", "height", "steps"))
        except ValueError:
            return plan  # the core names what is wrong with them
        if min(width, height, steps) > 0:
            _check(plan, width, height, steps)
        return plan

    def passes(self, request) -> list[Pass]:
        plan = request.part(self.name)
        if plan is None:
            return []
        _, (width, height) = plan.sizes(request.width, request.height)
        return [Pass(width, height, plan.schedule_steps(request.steps)[0])]

    def batch_key(self, request):
        """A plan with prompts of its own runs alone: its second pass's text arguments are its own."""
        plan = request.part(self.name)
        return SOLO if plan is not None and (plan.prompt or plan.negative_prompt) else plan

    def prepare(self, job: PreparedRequest) -> None:
        plan = job.request.part(self.name)
        if plan is not None:
            job.infotext.update(plan.infotext())

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        plan = request.part(self.name)
        if plan is None:
            return pipe, arguments
        texts = None
        if plan.prompt is not None or plan.negative_prompt is not None:  # what the hooks make of the hires prompts
            own = request.replace(prompt=plan.prompt or request.prompt,
                                  negative_prompt=plan.negative_prompt or request.negative_prompt,
                                  parts={name: part for name, part in request.parts.items() if name != self.name})
            texts = self.manager.prompt_arguments(own)
        device = self.manager.runtime.device

        def upscale_pixels(picture, name: str, size: tuple[int, int]):
            return upscale(picture, name, size, self.library.load, device)

        config = self.manager.pipelines[request.mode].scheduler.config
        schedule = arguments.get(SCHEDULE)  # each pass applies it over its own steps
        arguments = {key: value for key, value in arguments.items() if key != SCHEDULE}
        return HiresFix(pipe, plan, request.sampler, config, upscale_pixels, texts, schedule), arguments

    # -- hires fix: infotext and REST ------------------------------------------------------------------------

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        """A1111's Hires entries (taken out of `entries`); "Denoising strength" is left for img2img's too."""
        if not any(key in entries for key in (HR_SCALE.infotext, HR_RESIZE_X.infotext, HR_UPSCALER.infotext)):
            return {}
        fields: dict = {ENABLE_HR.name: True, **{field.name: field.default for field in (
            HR_RESIZE_X, HR_RESIZE_Y, HR_SECOND_PASS_STEPS, HR_PROMPT, HR_NEGATIVE_PROMPT, HR_SAMPLER_NAME)}}
        fields.update(read_entries((HR_SCALE, HR_SECOND_PASS_STEPS, HR_PROMPT, HR_NEGATIVE_PROMPT), entries, warnings))
        fields.update(read_entries((HR_DENOISING_STRENGTH,), entries, warnings, keep=True))
        if HR_RESIZE_X.infotext in entries:
            value = entries.pop(HR_RESIZE_X.infotext)
            sides = value.split("x")
            if len(sides) == 2 and all(side.strip().isdigit() for side in sides):
                fields[HR_RESIZE_X.name], fields[HR_RESIZE_Y.name] = (int(side) for side in sides)
            else:
                warnings.append(f"{HR_RESIZE_X.infotext}: {value!r} is not WIDTHxHEIGHT; left out")
        for field, known in ((HR_UPSCALER, self.hires_upscaler_names), (HR_SAMPLER_NAME, lambda: SAMPLER_NAMES)):
            if field.infotext in entries:
                value = entries.pop(field.infotext)
                if value in known():
                    fields[field.name] = value
                else:
                    warnings.append(f"{field.infotext}: {value!r} is not available here; left out")
        return fields

    def from_rest(self, payload: dict, endpoint: str, fields: dict) -> str:
        """hr_sampler_name with hr_scheduler, as A1111 1.9's clients send them."""
        sampler, schedule = payload.get(HR_SAMPLER_NAME.rest), payload.get(HR_SCHEDULER.rest)
        if endpoint == "txt2img" and isinstance(sampler, str) and sampler and isinstance(schedule, str) \
                and schedule.lower() != "automatic":
            fields[HR_SAMPLER_NAME.name] = join_name(sampler, schedule.capitalize())
        return endpoint

    def in_rest_words(self, message: str) -> str:
        return rename_words(message, {"hr_denoising_strength": "denoising_strength"})

    # -- REST, as A1111 ------------------------------------------------------------------------------------

    def rest_routes(self) -> list[Route]:
        return [Route("GET", "/sdapi/v1/upscalers", self._listing),
                Route("GET", "/sdapi/v1/latent-upscale-modes", lambda: [{"name": name} for name in LATENT_UPSCALERS]),
                Route("GET", "/sdapi/v1/realesrgan-models", lambda: [
                    {"name": name, "path": None, "scale": None} for name in self.library.names()]),
                Route("GET", "/sdapi/v1/face-restorers", lambda: []),  # none installed (docs/upscalers.md)
                Route("POST", "/sdapi/v1/extra-single-image", self._extra_single_image, takes_body=True,
                      body=EXTRAS_BODY),
                Route("POST", "/sdapi/v1/extra-batch-images", self._extra_batch_images, takes_body=True,
                      body=EXTRAS_BATCH_BODY)]

    def _listing(self) -> list[dict]:
        """A1111's shape; a model's scale is known once it has been loaded (spandrel reads it from the weights)."""
        pixel = [{"name": name, "model_name": None, "model_path": None, "model_url": None,
                  "scale": None if name == "None" else 4} for name in PIXEL_UPSCALERS]
        return pixel + [{"name": name, "model_name": name, "model_path": None, "model_url": None, "scale": None}
                        for name in self.library.names()]

    def _extra_single_image(self, payload: dict) -> dict:
        """resize_mode 0: by upscaling_resize; 1: to upscaling_resize_w x upscaling_resize_h. Face restoration and
        a second upscaler are not here: said in html_info when asked for."""
        if not isinstance(payload, dict):
            raise ValueError(f"the request body must be a JSON object, got {type(payload).__name__}")
        result, info = self._extra(decode_image(payload.get("image"), "image"), payload)
        return {"html_info": f"<p>{info}</p>", "image": png_base64(result)}

    def _extra_batch_images(self, payload: dict) -> dict:
        """The same for each image of imageList ([{"data": base64, "name": ...}, ...]), in order."""
        images = payload.get("imageList")
        if not isinstance(images, list) or not images:
            raise ValueError("imageList must be a list of images ({\"data\": base64, \"name\": ...})")
        if len(images) > MAX_BATCH_IMAGES:
            raise ValueError(f"imageList: at most {MAX_BATCH_IMAGES} images at once, got {len(images)}")
        results, info = [], ""
        for index, item in enumerate(images):
            if not isinstance(item, dict):
                raise ValueError(f"imageList[{index}] must be an object with data and name")
            result, info = self._extra(decode_image(item.get("data"), f"imageList[{index}].data"), payload)
            results.append(png_base64(result))
        return {"html_info": f"<p>{info}</p>", "images": results}

    def _extra(self, picture, payload: dict) -> tuple:
        mode = whole_number("resize_mode", payload.get("resize_mode", 0), 0, 1)
        upscaler = payload.get("upscaler_1", "None")
        if mode == 0:
            result = self.upscale(picture, upscaler, payload.get("upscaling_resize", 2))
        else:
            size = (payload.get("upscaling_resize_w", 512), payload.get("upscaling_resize_h", 512))
            result = self.upscale(picture, upscaler, size=size)
        unused = [name for name in ("gfpgan_visibility", "codeformer_visibility", "extras_upscaler_2_visibility")
                  if payload.get(name)]
        info = f"Postprocess upscale to: {result.width}x{result.height}, upscaler: {upscaler}"
        if unused:
            info += f"; not available here, ignored: {', '.join(unused)}"
        return result, info

    # -- gradio_client and the UI --------------------------------------------------------------------------

    def panel(self, tab: TabContext) -> Panel | None:
        if tab.mode != "txt2img":
            return None
        from extensions.upscale.panel import hires_panel

        return hires_panel(self, tab)

    def register_endpoints(self, image_file) -> None:
        from extensions.upscale.panel import upscale_endpoint

        upscale_endpoint(self, image_file)

    def tab(self, image_file):
        from extensions.upscale.panel import extras_tab

        return extras_tab(self, image_file)


def _check(plan: HiresPlan, width: int, height: int, steps: int) -> None:
    """The plan's sizes and schedule for a first pass of width x height in `steps` steps."""
    _, schedule = plan.schedule_steps(steps)
    if schedule > MAX_SCHEDULE:
        raise ValueError(
            f"hr_denoising_strength {plan.strength:g} with {plan.steps or steps} hires steps needs a schedule of "
            f"{schedule} steps; at most {MAX_SCHEDULE}: raise hr_denoising_strength or lower hr_second_pass_steps")
    upscaled, size = plan.sizes(width, height)
    field = "hr_scale" if plan.resize == (0, 0) else "hr_resize_x and hr_resize_y"
    low, high = SIZE_RANGE
    if not all(low <= side <= high for side in size):
        raise ValueError(f"{field}: the hires size would be {size[0]}x{size[1]} from {width}x{height}; each side must "
                         f"be from {low} to {high}")
    if max(upscaled) > MAX_RESULT_SIDE:  # a resize to both sides covers them first
        raise ValueError(f"{field}: {size[0]}x{size[1]} from {width}x{height} means upscaling to "
                         f"{upscaled[0]}x{upscaled[1]} first; at most {MAX_RESULT_SIDE} a side")
