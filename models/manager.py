"""The pipeline manager: one copy of the base model's weights, every pipeline derived from it.

txt2img, img2img and inpaint pipelines are derived with `from_pipe`, so they share the same tokenizer, text
encoder, U-Net and VAE objects. Each request runs on a throw-away pipeline view holding its own fresh
scheduler, under one lock, so no request sees or leaves behind another request's settings.
"""

from __future__ import annotations

import gc
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from diffusers.utils import logging as diffusers_logging
from PIL import Image
from transformers.utils import logging as transformers_logging

from models import families, loading
from models.cost import CostModel, Pass
from models.device import Runtime, resolve_runtime
from models.files import hub_unreachable, own_memory
from models.latents import pictures
from models.limits import TooLarge
from models.offload import Offload
from models.previews import LatentPreviewer, TinyVaePreviewer
from models.request import BATCH_RANGE, MAX_SEED, GenerationRequest
from models.samplers import make_scheduler
from models.step_conditioning import SCHEDULE, scheduled

log = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]  # (steps done, steps in total)
PreviewCallback = Callable[[int, Image.Image], None]  # (the request's index in the call, its first image's preview)
# The extensions' hooks (extensions/base.py), called under the lock with the request, its seed resolved:
# a configurer sets the shared model's state for the request (LoRA adapters) and returns infotext entries;
# a pipeline hook may change the call's arguments (prompt embeddings) or run it on another pipeline built over the
# same modules (ControlNet): given the request's view, its arguments and the infotext entries so far (which it may
# add to), it returns the pipeline to call and its arguments.
Configurer = Callable[[DiffusionPipeline, GenerationRequest], dict[str, str]]
PipelineHook = Callable[[DiffusionPipeline, GenerationRequest, dict, dict], tuple[DiffusionPipeline, dict]]


@dataclass(frozen=True)
class GenerationResult:
    images: list[Image.Image]
    seeds: list[int]
    interrupted: bool
    parameters: dict[str, str] = field(default_factory=dict)  # what extensions add to the infotext
    progress: tuple[int, int] = (0, 0)  # the steps done and the steps in all (fewer done when interrupted)


class PipelineManager:
    def __init__(self, base: DiffusionPipeline, source: loading.ModelSource, runtime: Runtime, model_hash: str = ""):
        self.family = families.of_pipeline(base)
        if self.family is families.SDXL_REFINER:
            raise ValueError(f"model {source.name!r} is an SDXL refiner: it refines an SDXL model's images and cannot "
                             "be the base model")
        self.source = source
        self.runtime = runtime
        self.model_hash = model_hash
        self.lock = threading.RLock()  # re-entered by the service, which tracks the job that holds it
        self._interrupt = threading.Event()
        self.configurers: list[Configurer] = []  # in the order the extensions were installed
        # what configurers set on the shared model for one call only (IP-Adapter processors), undone after it
        self.restorers: list[Callable[[], None]] = []
        self.pipeline_hooks: list[PipelineHook] = []
        self.unet_compiled = False
        self.previewer = LatentPreviewer.for_model(None, self.family)  # latent-to-RGB (load() finds a fitted one)
        self.tiny_vae: TinyVaePreviewer | None = None  # taesd, when previews use it
        self.preview_every = 5  # steps between live previews; 0: none
        if runtime.offload == "none":  # else they stay in CPU memory and visit the device (models/offload.py)
            base.to(runtime.device)
        if runtime.device.type == "cpu" or runtime.offload != "none":  # weights in CPU memory: out of their files
            own_memory(*(part for part in base.components.values() if isinstance(part, torch.nn.Module)))
        if runtime.device.type == "cuda":  # the convolutions' fast layout for fp16 kernels (diffusers' advice)
            base.unet.to(memory_format=torch.channels_last)
        if runtime.attention == "xformers":
            base.enable_xformers_memory_efficient_attention()
        base.set_progress_bar_config(disable=True)
        self.pipelines = self._derive_pipelines(base, self.family)
        self.cost = CostModel(base.unet, base.vae, runtime.device.type, self.pipelines["txt2img"].vae_scale_factor)
        self._stoppable = False  # a call runs: an interrupt stops it inside a step, not only after it
        self._interrupt_hooks = [module.register_forward_pre_hook(self._stop_here) for module in base.unet.modules()
                                 if isinstance(module, INTERRUPTIBLE)]
        self.offload = Offload(base, runtime)
        self._base = base
        self.unloaded = False  # A1111's unload-checkpoint: the weights wait in CPU memory until the next job

    @classmethod
    def load(cls, spec: str, device: str = "auto", single_file_config: str | None = None,
             local: bool = True, offload: str = "none") -> PipelineManager:
        """Load a model by name ('demo', Hub id, diffusers folder or .safetensors file) on the best device; with
        `local` False, only 'demo' or a Hub id. `offload`: models.device.OFFLOAD_MODES."""
        source = loading.identify(spec, local)
        runtime = resolve_runtime(device, offload)
        diffusers_logging.set_verbosity_error()  # the disabled-safety-checker notice on every derived pipeline
        transformers_logging.set_verbosity_error()  # a load report per LoRA adapter added to the text encoder
        path = loading.local_path(source)
        base = loading.load_pipeline(source, path, runtime.dtype, single_file_config)
        manager = cls(base, source, runtime, loading.model_hash(source, path))
        manager.previewer = LatentPreviewer.for_model(Path(path) if Path(path).is_dir() else None, manager.family)
        log.info("model %s (%s) on %s", source.name, source.kind, runtime.describe())
        return manager

    @staticmethod
    def _derive_pipelines(base: DiffusionPipeline, family: families.Family) -> dict[str, DiffusionPipeline]:
        """The family's pipelines over `base`'s modules. A 9-channel (inpainting) U-Net runs every mode through the
        inpaint pipeline with a full mask."""
        if base.unet.config.in_channels == 9:
            inpaint = family.inpaint.from_pipe(base, **family.options)
            return {"txt2img": inpaint, "img2img": inpaint, "inpaint": inpaint}
        return {mode: getattr(family, mode).from_pipe(base, **family.options)
                for mode in ("txt2img", "img2img", "inpaint")}

    # -- facts about the loaded model -------------------------------------------------------------------

    @property
    def is_inpainting_model(self) -> bool:
        return self.pipelines["inpaint"].unet.config.in_channels == 9

    @property
    def default_size(self) -> int:
        pipe = self.pipelines["txt2img"]
        return pipe.unet.config.sample_size * pipe.vae_scale_factor

    def describe(self) -> str:
        kind = "inpainting (9-channel U-Net)" if self.is_inpainting_model else "4-channel U-Net"
        native = self.default_size
        return (f"model: {self.source.name} [{self.model_hash}] · {self.family.name} · {kind} · native "
                f"{native}x{native} · {self.runtime.describe()}")

    def compile_unet(self, backend: str = "inductor", mode: str | None = None) -> None:
        """torch.compile the shared U-Net in place, so every derived pipeline runs the compiled one. Extensions
        that add layers to it (the LoRA slot) must be installed first: a structural change recompiles. `mode`:
        torch.compile's (bench/gpu.py measures the default against "reduce-overhead", CUDA graphs)."""
        for hook in self._interrupt_hooks:  # a compiled graph would break at each: interrupts wait for the step's end
            hook.remove()
        self._interrupt_hooks = []
        self.pipelines["txt2img"].unet.compile(backend=backend, mode=mode)
        self.unet_compiled = True

    def warm_up(self) -> None:
        """Short generations at the model's size, one for each batch a call can give the U-Net: each batch size with
        guidance (the U-Net gets twice the images), and one image without. A compiled U-Net compiles its graphs now,
        not in a user's job: dynamo makes one for the first batch, then one dynamic in the batch, and one for a
        single image. Largest first: on the CPU the convolutions' shape rules guard on 16 images, and a dynamic
        graph made from fewer covers 2 to 15 (3 graphs, not 4). Other sizes and ControlNet units compile on first
        use."""
        side, started = self.default_size, time.perf_counter()
        quick = GenerationRequest("txt2img", "", width=side, height=side, steps=2, seed=0)
        batches = [quick.replace(batch_size=batch) for batch in range(BATCH_RANGE[1], 0, -1)]
        for request in batches + [quick.replace(guidance_scale=1.0)]:
            self.generate(request)
        log.info("warmed up at %dx%d in %.1f s", side, side, time.perf_counter() - started)

    def set_previews(self, mode: str, every: int, taesd: str = "") -> None:
        """Live previews every `every` steps: `approx`, `taesd` (the tiny VAE from the folder or Hub id `taesd`, by
        default the family's;
        approx when it cannot be loaded, with a warning in the log), or `off` (the model's map stays for when they
        come back)."""
        self.preview_every = every if mode in ("approx", "taesd") else 0
        self.tiny_vae = None
        taesd = taesd or self.family.taesd
        if mode == "taesd":
            try:
                self.tiny_vae = TinyVaePreviewer.load(taesd)
            except Exception as error:  # noqa: BLE001 - previews are a convenience: never stop the app for them
                log.warning("live previews: taesd %r could not be loaded (%s: %s); using approx instead", taesd,
                            type(error).__name__, str(error).splitlines()[0] if str(error) else "")

    # -- running ----------------------------------------------------------------------------------------

    def unload(self) -> None:
        """Free the device of the model's weights (A1111's unload-checkpoint): they wait in CPU memory, and the next
        job, or `reload`, brings them back. Where they live in CPU memory anyway (a CPU device, --offload) nothing
        moves."""
        with self.lock:
            if self._moves_weights():
                self._base.to("cpu")
                free_device_memory(self.runtime.device)
            self.unloaded = True

    def reload(self) -> None:
        """The weights back on the device after `unload` (A1111's reload-checkpoint)."""
        with self.lock:
            if self.unloaded and self._moves_weights():
                self._base.to(self.runtime.device)
            self.unloaded = False

    def _moves_weights(self) -> bool:
        return self.runtime.device.type != "cpu" and not self.offload.active

    def interrupt(self) -> None:
        """Ask the running job to stop: within its current step (at the next block of the U-Net), or after it when
        the U-Net is compiled; it returns the images of its last finished step."""
        self._interrupt.set()

    def _stop_here(self, module, arguments) -> None:
        if self._stoppable and self._interrupt.is_set():
            raise Interrupted

    # -- what a job costs ---------------------------------------------------------------------------------

    def estimate(self, request: GenerationRequest, extra: Sequence[Pass] = ()) -> float:
        """The seconds `request` should take here (`extra`: passes the extensions add, hires fix's): its U-Net
        steps and VAE work in FLOPs at its size, times this device's measured seconds per FLOP."""
        steps = request.steps if request.mode == "txt2img" else max(1, int(request.steps * request.strength))
        passes = [Pass(request.width, request.height, steps), *extra]
        encodes = request.mode != "txt2img" or self.is_inpainting_model
        if not self.cost.counted:
            with self.lock:  # counting the model's FLOPs runs it, once: not beside a job
                self.cost.growth()
        return self.cost.seconds(passes, request.batch_size, request.guidance_scale > 1, encodes)

    def calibrate(self) -> float:
        """Measure this device's seconds per FLOP on a short generation (every call's steps are measured too): at
        the largest size whose steps are about CALIBRATION_FLOPS, or at the model's size when the U-Net is compiled
        (for which it is warmed up); returns them."""
        with self.lock:
            step = self.cost.growth()[0]  # counted first, so the steps' times are what they measure
            side = self.default_size
            if not self.unet_compiled:
                sides = range(64, 4 * self.default_size + 1, 64)
                side = max([side for side in sides if 2 * step.at(side * side) <= CALIBRATION_FLOPS] or [64])
            self.generate(GenerationRequest("txt2img", "calibration", width=side, height=side, steps=3, seed=0))
        log.info("calibrated: %.3g s per GFLOP on %s", self.cost.seconds_per_flop * 1e9, self.runtime.device.type)
        return self.cost.seconds_per_flop

    def sample(self, request: GenerationRequest) -> Image.Image:
        """The first image of `request` on the shared pipeline as it stands, with no extension's hooks (a training
        run's samples, with its adapter on, and its class images). Call under the lock."""
        request = request.replace(seed=_first_seed(request), batch_size=1)
        pipe = self.pipelines[request.mode]
        view = pipeline_view(type(pipe), pipe, make_scheduler(request.sampler, pipe.scheduler.config, [request.seed]))
        with torch.no_grad():
            return view(**self._call_arguments(request, [request.seed])).images[0]

    def generate(self, request: GenerationRequest, on_step: StepCallback | None = None) -> GenerationResult:
        return self.generate_together([request], on_step)[0]

    def generate_together(self, requests: Sequence[GenerationRequest], on_step: StepCallback | None = None,
                          on_preview: PreviewCallback | None = None) -> list[GenerationResult]:
        """Requests that agree on everything but their prompts, seeds, images and masks (the service's batch key
        says which do), run as one diffusers call: each image still draws its noise from its own seed's generator,
        so it equals its solo result up to the rounding of batched arithmetic. Requests whose extensions' arguments
        cannot be joined (`shared_calls`) run in separate calls."""
        with self.lock:
            try:
                return self._generate_together(requests, on_step, on_preview)
            finally:
                for restore in self.restorers:
                    restore()
                self.offload.after_job()

    def _generate_together(self, requests: Sequence[GenerationRequest], on_step: StepCallback | None,
                           on_preview: PreviewCallback | None) -> list[GenerationResult]:
        self._interrupt.clear()
        self.reload()  # after an unload
        # 1. seeds: image i of a request uses seed + i
        requests = [request.replace(seed=_first_seed(request)) for request in requests]
        seeds = [[request.seed + i for i in range(request.batch_size)] for request in requests]
        first = requests[0]
        # 2. extensions set the whole state these requests need on the shared model (adapters, ...)
        shared = self.pipelines[first.mode]
        parameters: dict[str, str] = {}
        for configure in self.configurers:
            parameters.update(configure(shared, first))
        # 3. a throw-away view of the shared pipeline with its own scheduler, and each request's arguments
        scheduler = make_scheduler(first.sampler, shared.scheduler.config, [s for some in seeds for s in some])
        view = pipeline_view(type(shared), shared, scheduler)
        calls = [self._hooked(view, request, request_seeds, dict(parameters))
                 for request, request_seeds in zip(requests, seeds)]
        # 4. run (one call for all unless their extensions' arguments differ), each request getting its images
        results: list[GenerationResult | None] = [None] * len(requests)
        groups = shared_calls(calls)
        if len(groups) > 1:
            log.info("%d requests need %d calls: their prompts are encoded differently", len(calls), len(groups))
        for group in groups:
            pipe, arguments = joined([calls[index] for index in group])
            if len(groups) > 1:  # the scheduler's own noise (DPM++ SDE) is seeded per image of the call
                pipe.scheduler = make_scheduler(first.sampler, shared.scheduler.config,
                                                [s for index in group for s in seeds[index]])
            firsts = dict(zip(group, itertools.accumulate((len(seeds[index]) for index in group), initial=0)))
            previews = self._previews(on_preview, firsts, (first.width, first.height))
            finished: dict = {}  # the latest step's latents, for a decode after an interrupt or out of memory
            self._stoppable = True
            try:
                call_arguments, callback = scheduled(arguments, self._step_end(on_step, previews, finished))
                images = pipe(**call_arguments, callback_on_step_end=callback).images
            except Interrupted:
                images = self._after_interrupt(pipe, finished, [requests[index] for index in group])
            except torch.OutOfMemoryError:
                images = None  # handled below, once the failed call's frames (and their tensors) are gone
            finally:
                self._stoppable = False
            if images is None:
                images = self._after_out_of_memory(pipe, finished, first, len(arguments["generator"]))
            for index in group:
                some, images = images[:len(seeds[index])], images[len(seeds[index]):]
                results[index] = GenerationResult(some, seeds[index], self._interrupt.is_set(), calls[index][2],
                                                  finished.get("progress", (0, 0)))
        return results

    def _hooked(self, view: DiffusionPipeline, request: GenerationRequest, seeds: list[int],
                parameters: dict) -> Call:
        """The pipeline to call for `request`, its arguments and its infotext entries, after the extensions' hooks."""
        pipe, arguments = view, self._call_arguments(request, seeds)
        for hook in self.pipeline_hooks:
            pipe, arguments = hook(pipe, request, arguments, parameters)
        pipe.set_progress_bar_config(disable=True)
        return pipe, arguments, parameters

    def call_for(self, request: GenerationRequest) -> tuple[DiffusionPipeline, dict]:
        """The pipeline (a view with its own scheduler, after the extensions' hooks) and the call arguments of
        `request`, for a pass an extension runs inside the current call (the detailer's inpaint passes), with the
        shared model set for it: what the call's configurers set is undone (its IP-Adapters would want their
        pictures) and `request`'s own state set (its LoRAs). Call under the lock."""
        request = request.replace(seed=_first_seed(request))
        seeds = [request.seed + index for index in range(request.batch_size)]
        shared = self.pipelines[request.mode]
        for restore in self.restorers:
            restore()
        for configure in self.configurers:
            configure(shared, request)
        view = pipeline_view(type(shared), shared, make_scheduler(request.sampler, shared.scheduler.config, seeds))
        pipe, arguments, _ = self._hooked(view, request, seeds, {})
        return pipe, arguments

    @property
    def stopping(self) -> bool:
        """Interrupt was asked for during the current call."""
        return self._interrupt.is_set()

    def prompt_arguments(self, request: GenerationRequest) -> dict:
        """What the extensions' hooks make of `request`'s prompts (the text, or its embeddings) for a call of its
        batch: the arguments a second pass with prompts of its own needs (hires fix). Call under the lock."""
        seeds = [request.seed + index for index in range(request.batch_size)]
        _, arguments, _ = self._hooked(self.pipelines[request.mode], request, seeds, {})
        return {key: arguments[key] for key in TEXT_ARGUMENTS if key in arguments}

    def _call_arguments(self, request: GenerationRequest, seeds: list[int]) -> dict:
        # Everything is given per image (prompt, image, mask, generator lists of the batch's length), so image
        # i draws all its randomness from its own generator and equals a single generation with seed + i.
        width, height, batch = int(request.width), int(request.height), len(seeds)
        arguments = {
            "prompt": [request.prompt] * batch,
            "negative_prompt": [request.negative_prompt] * batch,
            "num_inference_steps": int(request.steps),
            "guidance_scale": float(request.guidance_scale),
            # CPU generators: the same seed gives the same noise on every device.
            "generator": [torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        }
        if request.mode == "txt2img" and not self.is_inpainting_model:
            return {**arguments, "width": width, "height": height}
        image = request.image.convert("RGB") if request.image is not None else Image.new("RGB", (width, height))
        if request.mode == "img2img" and not self.is_inpainting_model:
            image = image.resize((width, height), Image.LANCZOS)
            return {**arguments, "image": [image] * batch, "strength": float(request.strength)}
        full_mask = Image.new("L", image.size, 255)
        mask = request.mask.convert("L") if request.mode == "inpaint" else full_mask
        strength = 1.0 if request.mode == "txt2img" else float(request.strength)
        return {**arguments, "mask_image": [mask] * batch, "width": width, "height": height, "strength": strength,
                "image": [image] * batch}

    def _previews(self, on_preview: PreviewCallback | None, firsts: dict[int, int], size: tuple[int, int]):
        """What the step callback calls with the latents when a preview is due: each request's first image as a
        preview (`firsts`: a request's index in the call -> its first image's in the batch)."""
        if on_preview is None or not self.preview_every:
            return None

        previewer = self.tiny_vae or self.previewer

        def preview(latents) -> None:
            shown = previewer.pictures(latents[list(firsts.values())], size)
            for index, picture in zip(firsts, shown):
                on_preview(index, picture)

        return preview

    def _after_interrupt(self, pipe: DiffusionPipeline, finished: dict,
                         requests: Sequence[GenerationRequest]) -> list[Image.Image]:
        """Interrupted inside a step: the images of the last finished step, decoded; before the first step ended,
        the job's own picture (img2img, inpaint) or a grey one."""
        latents = finished.get("latents")
        if latents is not None:
            return pictures(pipe, latents)
        own = []
        for request in requests:
            size = (request.width, request.height)
            picture = request.image.convert("RGB").resize(size) if request.image is not None else \
                Image.new("RGB", size, (128, 128, 128))
            own += [picture] * request.batch_size
        return own

    def _after_out_of_memory(self, pipe: DiffusionPipeline, finished: dict, request: GenerationRequest,
                             images: int) -> list[Image.Image]:
        """The device ran out of memory in a call. Its cache is freed; when the denoising had ended (or was
        interrupted), the latents are decoded again in tiles, which needs the memory of one tile. Otherwise a clear
        error says what to lower; either way the next request starts with the memory given back."""
        denoised = finished.pop("latents", None) if finished.get("done") else None
        finished.clear()
        free_device_memory(self.runtime.device)
        if denoised is not None:
            log.warning("out of memory decoding %dx%d: decoding again in tiles", request.width, request.height)
            vae, was_tiled = pipe.vae, pipe.vae.use_tiling
            try:
                vae.enable_tiling()
                return pictures(pipe, denoised)
            except torch.OutOfMemoryError:
                free_device_memory(self.runtime.device)
            finally:
                vae.use_tiling = was_tiled
        raise OutOfMemory(
            f"out of memory on {self.runtime.device.type} at {request.width}x{request.height} with {images} "
            f"image{'s' if images != 1 else ''} in one call: lower the width and height, the batch size or the "
            "number of ControlNet units")

    def _step_end(self, on_step: StepCallback | None, preview: Callable | None = None, finished: dict | None = None):
        last = {}  # the pass (its first step counted from 0 again) and when its previous step ended

        def callback(pipe, step: int, timestep, tensors: dict) -> dict:
            # A pass of a call in two (hires fix) says how many steps come before it and after it.
            before, after = getattr(pipe, "progress", (0, 0))
            done, total = before + step + 1, before + pipe.num_timesteps + after
            now = time.perf_counter()
            if step and last.get("pass") == before:
                self._measure(now - last["time"], tensors["latents"], pipe.do_classifier_free_guidance)
            last.update(time=now, **{"pass": before})
            if finished is not None:  # only the denoising's end is kept (a reference, no copy)
                finished["latents"] = tensors["latents"]
                finished["done"] = done == total or self._interrupt.is_set()
                finished["progress"] = (done, total)
            if on_step is not None:
                on_step(done, total)
            if preview is not None and done % self.preview_every == 0 and done < total:
                preview(tensors["latents"])
            if self._interrupt.is_set():
                pipe._interrupt = True  # the denoising loop skips the remaining steps, then decodes
            return tensors

        return callback

    def _measure(self, seconds: float, latents: torch.Tensor, guided: bool) -> None:
        """A step's time refines the seconds per FLOP, when the step was large enough for the per-step overhead not
        to count."""
        if not self.cost.counted:
            return
        factor = self.pipelines["txt2img"].vae_scale_factor
        height, width = latents.shape[-2] * factor, latents.shape[-1] * factor
        flops = self.cost.step_flops(width, height, latents.shape[0], guided)
        if flops >= MEASURED_FLOPS:
            self.cost.observe(seconds, flops)


class OutOfMemory(TooLarge):
    """A job that does not fit the device's memory (HTTP 413 at the REST edge), with what to lower."""


class Interrupted(Exception):
    """Raised inside the U-Net when a running call is interrupted: the call ends at once."""


INTERRUPTIBLE = (ResnetBlock2D, BasicTransformerBlock)  # the U-Net's blocks an interrupt is checked before
# A step of this many FLOPs or more measures the device's seconds per FLOP (a smaller one is mostly overhead); the
# calibration's steps are about CALIBRATION_FLOPS (a tenth of a second on a 2-core CPU)
MEASURED_FLOPS, CALIBRATION_FLOPS = 1e10, 3e10

def free_device_memory(device: torch.device) -> None:
    gc.collect()  # the failed call's tensors are unreachable once its frames are gone
    if device.type == "cuda":
        torch.cuda.empty_cache()


def pipeline_view(pipeline_class, pipe: DiffusionPipeline, scheduler) -> DiffusionPipeline:
    """A throw-away `pipeline_class` over `pipe`'s modules (no copy) with a scheduler of its own, progress bar off."""
    view = pipeline_class(**{**pipe.components, "scheduler": scheduler}, **families.options_of(pipeline_class))
    view.set_progress_bar_config(disable=True)
    return view


def _first_seed(request: GenerationRequest) -> int:
    return request.seed if request.seed != -1 else random.randint(0, MAX_SEED - request.batch_size + 1)


TEXT_ARGUMENTS = ("prompt", "negative_prompt", "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                  "negative_pooled_prompt_embeds", SCHEDULE)
# The call arguments that hold one entry per image (lists, or tensors along their first dimension).
PER_IMAGE = frozenset({"prompt", "negative_prompt", "prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                       "negative_pooled_prompt_embeds", "generator", "image",
                       "mask_image", "masked_image_latents", "ip_adapter_image_embeds"})
# Per-image tensors given per adapter (a list of them), each in the guidance layout when it holds twice the call's
# images: the negatives, then the prompts' (diffusers splits it in halves).
PER_ADAPTER = frozenset({"ip_adapter_image_embeds"})

Call = tuple[DiffusionPipeline, dict, dict]  # a request's pipeline, call arguments and infotext entries


def shared_calls(calls: Sequence[Call]) -> list[list[int]]:
    """The requests' calls grouped (by index, in order) into those that can be one call: the same pipeline class,
    the same arguments, equal except per image (a plain prompt and a weighted one, say, cannot)."""
    groups: list[list[int]] = []
    for index, call in enumerate(calls):
        group = next((group for group in groups if _joinable(calls[group[0]], call)), None)
        if group is None:
            groups.append([index])
        else:
            group.append(index)
    return groups


def joined(calls: Sequence[Call]) -> tuple[DiffusionPipeline, dict]:
    """One call's pipeline and arguments from joinable calls: the per-image arguments concatenated in order."""
    pipe, first, _ = calls[0]
    arguments = {}
    for key, value in first.items():
        values = [call[1][key] for call in calls]
        if key not in PER_IMAGE or len(calls) == 1:
            arguments[key] = value
        elif key in PER_ADAPTER:
            arguments[key] = [_join_halves([tensors[index] for tensors in values],
                                           [len(call[1]["generator"]) for call in calls])
                              for index in range(len(value))]
        elif isinstance(value, torch.Tensor):
            arguments[key] = torch.cat(values)
        else:
            arguments[key] = [item for some in values for item in some]
    return pipe, arguments


def _joinable(a: Call, b: Call) -> bool:
    (pipe_a, arguments_a, _), (pipe_b, arguments_b, _) = a, b
    if type(pipe_a) is not type(pipe_b) or arguments_a.keys() != arguments_b.keys():
        return False
    for key, value in arguments_a.items():
        other = arguments_b[key]
        if key in PER_ADAPTER:
            if len(value) != len(other) or any(a.shape[1:] != b.shape[1:] for a, b in zip(value, other)):
                return False
        elif key in PER_IMAGE:
            if isinstance(value, torch.Tensor) != isinstance(other, torch.Tensor) or \
                    isinstance(value, torch.Tensor) and value.shape[1:] != other.shape[1:] or \
                    not isinstance(value, (list, torch.Tensor)):
                return False
        elif not _same(value, other):
            return False
    return True


def _join_halves(tensors: list[torch.Tensor], images: list[int]) -> torch.Tensor:
    """One call's tensor from its parts: the negative halves of all, then the prompts' halves, where each part holds
    twice its images (the guidance layout); else one after the other."""
    if all(tensor.shape[0] == 2 * count for tensor, count in zip(tensors, images)):
        halves = [tensor.chunk(2) for tensor in tensors]
        return torch.cat([half[0] for half in halves] + [half[1] for half in halves])
    return torch.cat(tensors)


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return a is b
    try:
        return bool(a == b)
    except Exception:  # objects without a plain comparison: only themselves
        return a is b


def load_or_demo(spec: str, device: str = "auto", offload: str = "none") -> tuple[PipelineManager, str]:
    """Load `spec`; when it is a Hub model that cannot be had offline, load the demo model and say why."""
    try:
        return PipelineManager.load(spec, device, offload=offload), ""
    except OSError as error:
        if loading.identify(spec).kind != "hub" or not hub_unreachable():
            raise
        notice = (
            f"Could not load {spec!r}: the Hugging Face Hub is unreachable and the model is not in the local "
            "cache. Running the embedded demo model instead."
        )
        log.warning("%s (%s)", notice, str(error).splitlines()[0])
        return PipelineManager.load("demo", device, offload=offload), notice
