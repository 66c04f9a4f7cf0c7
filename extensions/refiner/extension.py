"""A1111's refiner (`refiner_checkpoint`, `refiner_switch_at`; infotext `Refiner: name [hash]`, `Refiner switch at:
0.8`): an SDXL refiner, or another SDXL model, takes over the denoising after that fraction of the steps.

As diffusers' "ensemble of expert denoisers": the request's own pipeline denoises until the switch (`denoising_end`),
its latents go to an SDXL img2img pipeline built over the refiner's U-Net and text encoder(s), the same VAE (the
shared one, or the request's chosen one) and a fresh scheduler of the request's sampler, which denoises the rest
(`denoising_start`) with noise from the same seeds. The refiner conditions on the prompt as A1111 does for it: its
own text encoder(s), emphasis, chunks, prompt editing (its steps are the schedule's last) and AND included, the LoRA
tags taken out; the refiner's aesthetic score is diffusers' and A1111's default (6 and 2.5). One refiner stays loaded
(its VAE is dropped), next to the model.

The switch is a fraction of the steps a pass runs, as A1111 counts it: with a denoising strength below 1 (img2img,
inpaint) the base model runs that fraction of the steps its strength leaves. With hires fix the refiner takes over
hires fix's second pass at the switch, the first pass the model's alone (A1111's default "Hires refiner: second
pass"). ControlNet units act on the model's steps, not the refiner's.

A refiner needs an SDXL model (its pipelines take `denoising_end`). diffusers' SDXL ControlNet img2img pipeline takes
none, so ControlNet units in img2img, or with hires fix, do not combine with the refiner and are refused by name.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    StableDiffusionXLControlNetInpaintPipeline,
    StableDiffusionXLControlNetPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

from extensions.base import SOLO, Extension, Settings
from extensions.prompts.composable import ComposedUNet
from extensions.prompts.editing import EditedPrompts, composed
from extensions.prompts.encoder import XLPromptEncoder, text_arguments
from extensions.prompts.schedule import edits
from extensions.refiner.fields import REFINER_CHECKPOINT, REFINER_SWITCH_AT
from extensions.upscale.hires import SECOND_PASS, HiresFix
from models import families, loading
from models.checkpoints import checkpoint_names, resolve_checkpoint
from models.fields import read_entries
from models.files import own_memory
from models.noise import again
from models.passes import Passes, innermost
from models.samplers import make_scheduler
from models.step_conditioning import SCHEDULE, STEP_WINDOWS, scheduled

log = logging.getLogger(__name__)

# The pipelines that stop at a switch (`denoising_end`), which the refiner takes over from
BASES = (StableDiffusionXLPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLInpaintPipeline,
         StableDiffusionXLControlNetPipeline, StableDiffusionXLControlNetInpaintPipeline)
EXTRA_NETWORKS = re.compile(r"<[^<>:]+:[^<>]*>")  # <lora:name:weight> and the like: not for a text encoder


@dataclass(frozen=True)
class RefinerPart:
    name: str  # as the request named it
    location: str  # what to load: a checkpoint in the folder, or a Hub id
    local: bool
    switch_at: float


@dataclass
class RefinerModel:
    """A loaded refiner: its U-Net, text encoder(s) and their encoder, the scheduler's config, its name and hash."""

    location: str
    name: str
    hash: str
    parts: dict  # unet, text_encoder, text_encoder_2, tokenizer, tokenizer_2
    scheduler_config: dict
    is_refiner: bool  # an SDXL refiner (its aesthetic-score conditioning), not an SDXL base model
    encoder: XLPromptEncoder


class Refiner(Extension):
    name = "refiner"
    fields = (REFINER_CHECKPOINT, REFINER_SWITCH_AT)
    modes = ("txt2img", "img2img", "inpaint", "outpaint")

    def __init__(self, checkpoint_dir: str | Path | None = None):
        self.folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.family = families.SD1  # the installed manager's
        self.runtime = None
        self._loaded: RefinerModel | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Refiner:
        return cls(settings.checkpoint_dir)

    def install(self, manager) -> None:
        self.family, self.runtime = manager.family, manager.runtime
        manager.pipeline_hooks.append(self._hook)

    # -- the request ------------------------------------------------------------------------------------------

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> RefinerPart | None:
        name = REFINER_CHECKPOINT.check(fields.get(REFINER_CHECKPOINT.name) or "").strip()
        switch_at = float(REFINER_SWITCH_AT.check(fields.get(REFINER_SWITCH_AT.name, REFINER_SWITCH_AT.default)))
        if not name or name.lower() == "none":
            return None
        if not self.family.is_xl:
            raise ValueError(f"refiner_checkpoint: a refiner takes over from an SDXL model; this model is "
                             f"{self.family.name}")
        if self.folder is None:
            raise ValueError("refiner_checkpoint: this app has no checkpoint folder to take a refiner from")
        try:
            location, local = resolve_checkpoint(name, self.folder, startup="")
        except ValueError as error:
            message = str(error).replace("sd_model_checkpoint", "refiner_checkpoint", 1).replace(" 'demo',", "")
            raise ValueError(message) from None
        if location == "demo":
            raise ValueError("refiner_checkpoint: the demo model is SD 1.x; a refiner must be an SDXL model")
        if local:
            found = families.of_location(Path(location))
            if found is not None and not found.is_xl:
                raise ValueError(f"refiner_checkpoint: {name!r} is {found.name}; a refiner must be an SDXL model")
        return RefinerPart(name, location, local, switch_at)

    def batch_key(self, request):
        """A refined request runs alone: the refiner's pass encodes the request's own prompts."""
        return SOLO if request.part(self.name) is not None else None

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        fields = read_entries(self.fields, entries, warnings)
        if REFINER_CHECKPOINT.name in fields:  # "name [hash]", as A1111 writes it
            fields[REFINER_CHECKPOINT.name] = re.sub(r"\s*\[[0-9a-f]*\]$", "", fields[REFINER_CHECKPOINT.name])
        return fields

    def panel(self, tab):
        from extensions.refiner.panel import refiner_panel

        return refiner_panel(tab, checkpoint_names(self.folder) if self.folder is not None else [])

    # -- the run ----------------------------------------------------------------------------------------------

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        part = request.part(self.name)
        if part is None or part.switch_at >= 1:  # the model runs every step: nothing for a refiner to do
            return pipe, arguments
        hires = pipe if isinstance(pipe, HiresFix) else None
        # the pass it ends (inside soft inpainting's blending, the inpaint pipeline)
        taken = SECOND_PASS.get(type(hires.first)) if hires is not None else type(innermost(pipe))
        if taken not in BASES:
            where = " (hires fix's second pass)" if hires is not None else ""
            raise ValueError(f"refiner_checkpoint: the refiner cannot take over from {taken.__name__}{where}: it "
                             "stops at no switch (ControlNet units in img2img or with hires fix do not combine with "
                             "a refiner)")
        model = self._load(part)
        parameters[REFINER_CHECKPOINT.infotext] = f"{model.name} [{model.hash}]" if model.hash else model.name
        parameters[REFINER_SWITCH_AT.infotext] = f"{part.switch_at:g}"
        if hires is None:  # its prompt schedule and step windows act on the model's steps only: it applies them
            held = {key: arguments[key] for key in (SCHEDULE, STEP_WINDOWS) if key in arguments}
            arguments = {key: value for key, value in arguments.items() if key not in held}
            return RefinedPipeline(pipe, model, part.switch_at, request, held=held), arguments
        # the second pass conditions on hires fix's own prompts, where it has them
        own = request.replace(prompt=hires.plan.prompt or request.prompt,
                              negative_prompt=hires.plan.negative_prompt or request.negative_prompt)
        hires_steps, _ = hires.plan.schedule_steps(request.steps)
        hires.finish = lambda second, pass_arguments, callback: RefinedPipeline(
            second, model, part.switch_at, own, hires_steps)(callback_on_step_end=callback, **pass_arguments)
        return hires, arguments

    def _load(self, part: RefinerPart) -> RefinerModel:
        with self._lock:
            if self._loaded is not None and self._loaded.location == part.location:
                return self._loaded
            self._loaded = None  # the previous one goes before the next comes
            try:
                source = loading.identify(part.location, part.local)
                path = loading.local_path(source)
                pipe = loading.load_pipeline(source, path, self.runtime.dtype)
            except ValueError as error:
                raise ValueError(f"refiner_checkpoint: {error}") from None
            except Exception as error:  # a truncated file, the Hub unreachable, ...: the request's fault
                raise ValueError(f"refiner_checkpoint: could not load {part.name!r} ({type(error).__name__}: "
                                 f"{str(error).splitlines()[0] if str(error) else ''})") from None
            family = families.of_pipeline(pipe)
            if not family.is_xl:
                raise ValueError(f"refiner_checkpoint: {part.name!r} is {family.name}; a refiner must be an SDXL "
                                 "model")
            names = ("unet", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
            parts = {name: getattr(pipe, name, None) for name in names}
            modules = [module for module in parts.values() if isinstance(module, torch.nn.Module)]
            for module in modules:
                module.to(self.runtime.device).eval().requires_grad_(False)
            if self.runtime.device.type == "cpu":
                own_memory(*modules)
            encoder = XLPromptEncoder(parts["tokenizer"], parts["text_encoder"], parts["tokenizer_2"],
                                      parts["text_encoder_2"])
            self._loaded = RefinerModel(part.location, source.name, loading.model_hash(source, path), parts,
                                        dict(pipe.scheduler.config), family is families.SDXL_REFINER, encoder)
            log.info("refiner %s (%s) loaded", source.name, family.name)
            return self._loaded


class RefinedPipeline(Passes):
    """The request's pipeline until the switch, then the refiner's, as one pipeline to the manager. Each pass tells
    the step callback where it stands (`progress`: the steps before it and after it)."""

    def __init__(self, first, model: RefinerModel, switch_at: float, request, hires_steps: int | None = None,
                 held: dict | None = None):
        """`hires_steps`: the pass is hires fix's second, of that many steps (its prompt editing's schedule); `held`:
        the call's prompt schedule and step windows, which act on the model's steps (the refiner's have their
        own)."""
        super().__init__(first)
        self.model, self.switch_at, self.request, self.hires_steps = model, switch_at, request, hires_steps
        self.held = held or {}

    def __call__(self, callback_on_step_end=None, **arguments):
        arguments, first_callback = scheduled({**arguments, **self.held}, callback_on_step_end)
        first, steps = self.first, arguments["num_inference_steps"]
        # A1111 switches after that fraction of the steps the pass runs; diffusers' switch is a fraction of the whole
        # schedule, of which a strength below 1 runs only the end
        strength = float(arguments.get("strength", 1.0))
        switch = 1 - strength * (1 - self.switch_at)
        runs = int(steps * strength)
        inner = innermost(first)  # the pipeline that runs the model's steps
        before, _ = getattr(inner, "progress", (0, 0))  # hires fix's second pass: after its first
        inner.progress = (before, runs - round(runs * self.switch_at))
        latents = first(**arguments, denoising_end=switch, output_type="latent",
                        callback_on_step_end=first_callback).images
        if inner.interrupt:  # stopped before the switch: its picture
            from diffusers.pipelines.stable_diffusion_xl import StableDiffusionXLPipelineOutput

            return StableDiffusionXLPipelineOutput(self.decode(latents))
        conditioning, weights = self._conditioning(len(arguments["generator"]), inner.num_timesteps)
        second = self._refiner(arguments, weights)
        second.progress = (before + inner.num_timesteps, 0)
        conditioning, callback = scheduled(conditioning, callback_on_step_end)
        return second(image=latents, num_inference_steps=steps, denoising_start=switch,
                      guidance_scale=arguments["guidance_scale"],
                      generator=[again(generator) for generator in arguments["generator"]],
                      callback_on_step_end=callback, **conditioning)

    def _refiner(self, arguments: dict, weights: list[float]):
        """Its img2img pipeline; AND's parts composed by its U-Net as by the model's (extensions/prompts)."""
        model, request = self.model, self.request
        seeds = [generator.initial_seed() for generator in arguments["generator"]]
        scheduler = make_scheduler(request.sampler, model.scheduler_config, seeds)
        parts = dict(model.parts)
        if len(weights) > 1:
            parts["unet"] = ComposedUNet(parts["unet"], weights, request.guidance_scale > 1)
        pipe = StableDiffusionXLImg2ImgPipeline(
            vae=self.first.vae, scheduler=scheduler, requires_aesthetics_score=model.is_refiner,
            force_zeros_for_empty_prompt=False, add_watermarker=False, **parts)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _conditioning(self, batch: int, done: int) -> tuple[dict, list[float]]:
        """The prompts as the refiner's text encoder(s) take them, A1111's way, for the call's batch, and AND's
        weights: prompt editing's texts from step `done` of the pass on (the steps the model ran), AND's parts."""
        encoder, request = self.model.encoder, self.request
        prompt, negative = (EXTRA_NETWORKS.sub("", text) for text in (request.prompt, request.negative_prompt))
        clip_skip = request.part("prompts").clip_skip if request.part("prompts") else 1
        parts, weights = composed(prompt)
        if len(parts) == 1 and not edits(prompt) and not edits(negative):
            tokens = (encoder.tokenize(text) for text in (prompt, negative))
            return text_arguments(encoder, *tokens, clip_skip, batch), weights
        later = Later(EditedPrompts(encoder, parts, negative, request.steps, clip_skip, batch, self.hires_steps), done)
        return {**later.at(0), SCHEDULE: later}, weights


class Later:
    """A pass's prompt schedule from step `start` on: the refiner's steps are the last of the pass."""

    def __init__(self, schedule, start: int):
        self.schedule, self.start = schedule, start

    def at(self, step: int) -> dict:
        return self.schedule.at(self.start + step)
