"""Hires fix, as A1111's: a txt2img job made at its width x height, upscaled, then refined by an img2img pass at the
larger size. Both passes run in one call of the manager, over the pipelines the other hooks chose (LoRA set, prompt
embeddings, VAE, ControlNet units), so no weight is copied and the progress counts the steps of both.

- The plan (`HiresPlan`) is the request's "upscale" part, checked when the request is built.
- The upscale is in latent space for the `Latent` upscalers (A1111's interpolation modes), or in pixels: the first
  pass decoded, made larger by a pixel upscaler or an upscaler model (upscaling.py), encoded by the second pass.
- The second pass runs `steps` steps (0: the first pass's) of a schedule of steps / strength, as A1111 does, with
  noise from the same seeds, and its own sampler when one is named.
- With a 9-channel (inpainting) U-Net both passes run its inpaint pipeline with a full mask, and the masked-image
  condition of the second pass is the VAE's encoding of an empty picture, as in the first (A1111's
  `img2img_image_conditioning` for a full mask). diffusers' ControlNet inpaint pipeline takes no latents as its
  image, so there a Latent upscaler's latents are decoded for it to encode again (a VAE round trip A1111 skips).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import (
    StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionControlNetInpaintPipeline,
    StableDiffusionControlNetPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput
from PIL import Image

from extensions.upscale.fields import (
    HR_DENOISING_STRENGTH,
    HR_NEGATIVE_PROMPT,
    HR_PROMPT,
    HR_RESIZE_X,
    HR_SAMPLER_NAME,
    HR_SCALE,
    HR_SECOND_PASS_STEPS,
    HR_UPSCALER,
)
from models.manager import TEXT_ARGUMENTS, pipeline_view
from models.noise import again
from models.passes import Passes
from models.samplers import make_scheduler
from models.step_conditioning import SCHEDULE, StepConditioning, applying, scheduled
from models.vae_tiling import tile_for

# A1111's latent upscalers: name -> (torch's interpolation mode, antialias)
LATENT_UPSCALERS = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}

SECOND_PASS = {  # the first pass's pipeline -> the second's
    StableDiffusionPipeline: StableDiffusionImg2ImgPipeline,
    StableDiffusionControlNetPipeline: StableDiffusionControlNetImg2ImgPipeline,
    StableDiffusionInpaintPipeline: StableDiffusionInpaintPipeline,
    StableDiffusionControlNetInpaintPipeline: StableDiffusionControlNetInpaintPipeline,
    StableDiffusionXLPipeline: StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLControlNetPipeline: StableDiffusionXLControlNetImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline: StableDiffusionXLInpaintPipeline,
    StableDiffusionXLControlNetInpaintPipeline: StableDiffusionXLControlNetInpaintPipeline,
}
IMG2IMG = (StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline)  # they take their size from the image
CONTROLNET_TXT2IMG = (StableDiffusionControlNetPipeline, StableDiffusionXLControlNetPipeline)  # control: "image"
CONTROLNET_INPAINT = (StableDiffusionControlNetInpaintPipeline, StableDiffusionXLControlNetInpaintPipeline)
# The first pass's arguments the second pass sets anew (its picture, size, schedule and noise).
PER_PASS = frozenset({"image", "control_image", "mask_image", "masked_image_latents", "width", "height", "strength",
                      "num_inference_steps", "generator"})


@dataclass(frozen=True)
class HiresPlan:
    upscaler: str
    scale: float
    resize: tuple[int, int]  # hr_resize_x, hr_resize_y; (0, 0): by `scale`
    steps: int  # the second pass's; 0: the first pass's
    strength: float  # the second pass's denoising strength
    prompt: str | None = None  # None: the first pass's
    negative_prompt: str | None = None
    sampler: str | None = None

    def sizes(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """The upscaled size and the result's, each side a multiple of 8, for a first pass of width x height. A
        resize to both sides scales to cover them, then crops the centre (A1111 crops in the latent upscale only)."""
        resize_x, resize_y = self.resize
        if resize_x == 0 and resize_y == 0:
            upscaled = (int(width * self.scale), int(height * self.scale))
        elif resize_y == 0 or resize_x and width / height < resize_x / resize_y:
            upscaled = (resize_x, resize_x * height // width)
        else:
            upscaled = (resize_y * width // height, resize_y)
        result = upscaled if 0 in self.resize else self.resize
        return _eights(upscaled), _eights(result)

    def schedule_steps(self, first_steps: int) -> tuple[int, int]:
        """The second pass's denoising steps, and the length of the schedule they end (diffusers runs
        int(schedule * strength) steps of it)."""
        if not self.strength:  # no second pass: the upscale alone
            return 0, 0
        steps = self.steps or first_steps
        return steps, math.ceil(steps / self.strength - 1e-9)

    def infotext(self) -> dict[str, str]:
        """A1111's entries: Denoising strength, Hires upscale or Hires resize, Hires steps, Hires upscaler, ..."""
        entries = {HR_DENOISING_STRENGTH.infotext: f"{self.strength:g}"}
        if self.resize == (0, 0):
            entries[HR_SCALE.infotext] = f"{self.scale:g}"
        else:
            entries[HR_RESIZE_X.infotext] = "{}x{}".format(*self.resize)
        if self.steps:
            entries[HR_SECOND_PASS_STEPS.infotext] = str(self.steps)
        entries[HR_UPSCALER.infotext] = self.upscaler
        for field, value in ((HR_SAMPLER_NAME, self.sampler), (HR_PROMPT, self.prompt),
                             (HR_NEGATIVE_PROMPT, self.negative_prompt)):
            if value is not None:
                entries[field.infotext] = value
        return entries


def _eights(size: tuple[int, int]) -> tuple[int, int]:
    return size[0] // 8 * 8, size[1] // 8 * 8


class HiresFix(Passes):
    """Two passes as one pipeline to the manager, which calls it with the first pass's arguments and its step
    callback. Each pass tells the callback where it stands (`progress`: the steps before it and after it)."""

    def __init__(self, first, plan: HiresPlan, sampler: str, scheduler_config: dict,
                 upscale_pixels: Callable[[Image.Image, str, tuple[int, int]], Image.Image],
                 texts: dict | None = None, schedule: StepConditioning | None = None):
        """`first`: the pipeline the other hooks chose; `sampler`: the first pass's; `upscale_pixels(picture, name,
        size)`; `texts`: the second pass's text arguments when it has its own prompts; `schedule`: the first pass's
        prompt editing (the call's SCHEDULE argument, which each pass applies over its own steps)."""
        super().__init__(first)
        self.plan, self.sampler = plan, sampler
        self.scheduler_config, self.upscale_pixels, self.texts = scheduler_config, upscale_pixels, texts
        self.schedule = schedule
        # what runs the second pass in its place (the refiner, which takes over at its switch, as A1111's default
        # "second pass"): finish(pipe, arguments with their schedule, callback); None: the pass runs alone
        self.finish: Callable | None = None

    def __call__(self, callback_on_step_end=None, **arguments) -> StableDiffusionPipelineOutput:
        first = self.first
        steps, _ = self.plan.schedule_steps(arguments["num_inference_steps"])
        first.progress = (0, steps)
        callback = callback_on_step_end if self.schedule is None else applying(self.schedule, callback_on_step_end)
        latents = first(**arguments, output_type="latent", callback_on_step_end=callback).images
        if first.interrupt:  # stopped in the first pass: its picture, as A1111 returns it
            return StableDiffusionPipelineOutput(self.decode(latents), None)
        if not self.plan.strength:  # denoising strength 0, as A1111 takes it: the upscaled picture, not refined
            return StableDiffusionPipelineOutput(self.upscaled(latents), None)
        second, second_arguments = self.second_pass(arguments, latents)
        second.progress = (first.num_timesteps, 0)
        if self.finish is not None:  # it applies the pass's schedule to the steps it gives the model
            return self.finish(second, second_arguments, callback_on_step_end)
        second_arguments, second_callback = scheduled(second_arguments, callback_on_step_end)
        return second(**second_arguments, callback_on_step_end=second_callback)

    def upscaled(self, latents: torch.Tensor) -> list[Image.Image]:
        """The first pass's pictures at the hires size, by the plan's upscaler."""
        factor = self.first.vae_scale_factor
        upscaled, size = self.plan.sizes(latents.shape[-1] * factor, latents.shape[-2] * factor)
        if self.plan.upscaler in LATENT_UPSCALERS:
            tile_for(self.first.vae, *size)
            return self.decode(upscale_latents(latents, upscaled, size, self.plan.upscaler, factor))
        return [_crop(self.upscale_pixels(picture, self.plan.upscaler, upscaled), size)
                for picture in self.decode(latents)]

    def second_pass(self, arguments: dict, latents: torch.Tensor) -> tuple:
        """The second pass's pipeline (over the first's modules, a new scheduler) and arguments."""
        first, plan = self.first, self.plan
        factor = first.vae_scale_factor
        height, width = latents.shape[-2] * factor, latents.shape[-1] * factor
        upscaled, size = plan.sizes(width, height)
        second_class = SECOND_PASS[type(first)]
        if plan.upscaler in LATENT_UPSCALERS:
            init = upscale_latents(latents, upscaled, size, plan.upscaler, factor)
            if second_class in CONTROLNET_INPAINT:  # it takes no latents for its image
                init = self.decode(init)
        else:
            init = [_crop(self.upscale_pixels(picture, plan.upscaler, upscaled), size)
                    for picture in self.decode(latents)]
        tile_for(first.vae, *size)
        seeds = [generator.initial_seed() for generator in arguments["generator"]]
        steps, schedule = plan.schedule_steps(arguments["num_inference_steps"])
        scheduler = make_scheduler(plan.sampler or self.sampler, self.scheduler_config, seeds)
        second = pipeline_view(second_class, first, scheduler)
        kept = {key: value for key, value in arguments.items()
                if key not in PER_PASS and (self.texts is None or key not in TEXT_ARGUMENTS)}
        batch = len(seeds)
        pass_arguments = {
            **kept, **(self.texts or {}), "image": init, "strength": plan.strength, "num_inference_steps": schedule,
            "generator": [again(generator) for generator in arguments["generator"]],  # A1111: the seeds' noise again
        }
        first_schedule = self.schedule if self.texts is None else self.texts.get(SCHEDULE)
        if first_schedule is not None:  # prompt editing: the second pass's steps have texts of their own
            later = pass_arguments[SCHEDULE] = first_schedule.for_second_pass(steps)
            pass_arguments.update(later.at(0))
        controls = arguments.get("control_image", arguments["image"] if type(first) in CONTROLNET_TXT2IMG else None)
        if controls is not None:  # resized to the new size by the pipeline, as sd-webui-controlnet does
            pass_arguments["control_image"] = controls
        if second_class not in IMG2IMG:
            pass_arguments.update(width=size[0], height=size[1])
        if "mask_image" in arguments:
            pass_arguments["mask_image"] = [Image.new("L", size, 255)] * batch
            if isinstance(init, torch.Tensor):  # latents: the condition is made here, as the first pass made it
                pass_arguments["masked_image_latents"] = _empty_picture_latents(first.vae, size, batch)
        return second, pass_arguments


def upscale_latents(latents: torch.Tensor, upscaled: tuple[int, int], size: tuple[int, int], upscaler: str,
                    factor: int) -> torch.Tensor:
    """Latents interpolated to `upscaled` (in pixels), then the centre at `size`."""
    mode, antialias = LATENT_UPSCALERS[upscaler]
    larger = F.interpolate(latents, size=(upscaled[1] // factor, upscaled[0] // factor), mode=mode,
                           antialias=antialias)
    top, left = (larger.shape[-2] - size[1] // factor) // 2, (larger.shape[-1] - size[0] // factor) // 2
    return larger[..., top: top + size[1] // factor, left: left + size[0] // factor]


def _crop(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    if picture.size == size:
        return picture
    left, top = (picture.width - size[0]) // 2, (picture.height - size[1]) // 2
    return picture.crop((left, top, left + size[0], top + size[1]))


def _empty_picture_latents(vae, size: tuple[int, int], batch: int) -> torch.Tensor:
    """The VAE's encoding (its mean) of an empty picture (0 in [-1, 1]): what the masked-image condition of a
    9-channel U-Net is under a full mask."""
    parameter = next(vae.parameters())
    empty = torch.zeros(1, 3, size[1], size[0], device=parameter.device, dtype=parameter.dtype)
    with torch.no_grad():
        latents = vae.encode(empty).latent_dist.mode() * vae.config.scaling_factor
    return latents.expand(batch, -1, -1, -1)
