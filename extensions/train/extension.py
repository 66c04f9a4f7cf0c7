"""LoRA training in the app, as a slice: the Train tab and gradio_client's /train_lora (panel.py), the checked
settings, and the run itself as a job in the generations' queue (it holds the device while it trains; Interrupt
stops it with a checkpoint kept, which `resume` continues). The LoRA lands in the LoRA folder in kohya's format,
usable at once as <lora:name:1>. Training runs in `<output folder>/training/<name>/`."""

from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import asdict
from pathlib import Path

import torch

from extensions.base import Extension, Settings
from extensions.train import kohya
from extensions.train.dataset import training_set
from extensions.train.fields import (
    ALPHA,
    BATCH_SIZE,
    CLASS_PROMPT,
    DEFAULTS,
    GRADIENT_CHECKPOINTING,
    INSTANCE_PROMPT,
    LAYERS,
    LEARNING_RATE,
    MAX_RANK,
    MIN_SNR_GAMMA,
    NOISE_OFFSET,
    PRIOR_PRESERVATION,
    RANK,
    RESOLUTION,
    RESUME,
    SAMPLE_EVERY,
    SEED,
    STEPS,
    TRAIN_TEXT_ENCODER,
)
from extensions.train.fields import NAME as NAME_FIELD
from extensions.train.status import Status
from extensions.train.trainer import UNET_LAYERS, Outcome, Trainer
from extensions.train.trainer import Settings as RunSettings
from models.manager import OutOfMemory, free_device_memory
from models.request import GenerationRequest
from models.validate import whole_number

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")
CLASS_IMAGES = (4, 50)  # prior preservation: as many class images as training images, within these bounds


class Train(Extension):
    name = "train"
    modes = ()
    tab_name = "train"
    tab_takes_pictures = False

    def __init__(self, lora_folder: str | Path, work_folder: str | Path):
        self.lora_folder = Path(lora_folder)  # the LoRA library's folder: where a trained LoRA goes
        self.work_folder = Path(work_folder)  # the runs' checkpoints, one folder per name

    @classmethod
    def from_settings(cls, settings: Settings) -> Train:
        return cls(settings.lora_dir, settings.output_dir / "training")

    # -- the settings ----------------------------------------------------------------------------------------

    def settings(self, name, instance_prompt, **options) -> tuple[RunSettings, bool]:
        """Checked settings (errors name the field and the value), and whether to resume."""
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"train_lora takes no field {', '.join(map(repr, unknown))}")
        values = {**DEFAULTS, **{key: value for key, value in options.items() if value is not None}}
        name = NAME_FIELD.check(name if name is not None else "").strip().removesuffix(".safetensors")
        if not NAME.fullmatch(name):
            raise ValueError(f"name must be 1 to 64 letters, digits, spaces, '_', '-' or '.', starting with a letter "
                             f"or digit (no folders), got {name!r}")
        resume = RESUME.check(values["resume"])
        if (self.lora_folder / f"{name}.safetensors").exists() and not resume:
            raise ValueError(f"name: a LoRA {name!r} exists in the LoRA folder; choose another name, or resume its run")
        if resume and not (self.work_folder / name / "state.json").exists():
            raise ValueError(f"resume: there is no run of {name!r} to resume")
        layers = LAYERS.check(values["layers"])
        rank = whole_number(RANK.name, values["rank"], RANK.minimum, self._max_rank(layers))
        alpha = float(ALPHA.check(values["alpha"])) or float(rank)
        resolution = RESOLUTION.check(values["resolution"]) or self.services.model().default_size
        if resolution % 8 or resolution < 64:
            raise ValueError(f"resolution must be 0 (the model's) or a multiple of 8 from 64 to 1024, got {resolution}")
        prior = PRIOR_PRESERVATION.check(values["prior_preservation"])
        class_prompt = CLASS_PROMPT.check(values["class_prompt"] or "").strip()
        if prior and not class_prompt:
            raise ValueError("class_prompt: prior preservation needs a class prompt (\"a photo of a dog\")")
        gamma = float(MIN_SNR_GAMMA.check(values["min_snr_gamma"]))
        steps = STEPS.check(values["steps"])
        settings = RunSettings(
            name=name, instance_prompt=INSTANCE_PROMPT.check(instance_prompt or "").strip(), steps=steps, rank=rank,
            alpha=alpha, learning_rate=float(LEARNING_RATE.check(values["learning_rate"])),
            batch_size=BATCH_SIZE.check(values["batch_size"]), resolution=resolution, seed=SEED.check(values["seed"]),
            layers=layers, train_text_encoder=TRAIN_TEXT_ENCODER.check(values["train_text_encoder"]),
            class_prompt=class_prompt, prior_preservation=prior, min_snr_gamma=gamma or None,
            noise_offset=float(NOISE_OFFSET.check(values["noise_offset"])),
            gradient_checkpointing=GRADIENT_CHECKPOINTING.check(values["gradient_checkpointing"]),
            sample_every=whole_number(SAMPLE_EVERY.name, values["sample_every"], SAMPLE_EVERY.minimum, steps),
        )
        return settings, resume

    def _max_rank(self, layers: str) -> int:
        """A rank above the narrowest trained layer's width adds nothing but cost: refused."""
        unet = self.services.model().pipelines["txt2img"].unet
        widths = [min(module.in_features, module.out_features) for name, module in unet.named_modules()
                  if any(name.endswith(target) for target in UNET_LAYERS[layers]) and hasattr(module, "in_features")]
        return min([MAX_RANK, *widths])

    # -- a run -------------------------------------------------------------------------------------------------

    def train(self, images, instance_prompt: str = "", name: str = "", on_step=None, status: Status | None = None,
              **options) -> Outcome:
        """Train a LoRA on `images` (files, captions, zips) in the queue; its name, file, final loss, steps done
        and whether it was interrupted. `status` follows the run (the step, the loss, the latest sample)."""
        settings, resume = self.settings(name, instance_prompt, **options)
        examples = training_set(images, settings.instance_prompt, settings.resolution)
        checkpoint = self.work_folder / settings.name
        if not resume and checkpoint.exists():  # an earlier run of a name whose LoRA was deleted since
            shutil.rmtree(checkpoint)
        status = status if status is not None else Status()
        if not self.services.models_here:
            raise ValueError("training runs on the app's own model, and the models are on Ray Serve replicas here")
        family = self.services.model().family
        if family.is_xl:  # one text encoder and no size conditioning in the trainer's objective
            raise ValueError(f"LoRA training takes SD 1.x and SD 2.x models; this model is {family.name}")
        return self.services.run_task(settings.steps, lambda manager, stop, step: self._run(
            manager, settings, examples, checkpoint, stop, step, status), on_step)

    def _run(self, manager, settings: RunSettings, examples, checkpoint: Path, stop: threading.Event, step,
             status: Status) -> Outcome:
        if manager.unet_compiled:
            raise ValueError("training needs an uncompiled U-Net: start the app without --compile")
        pipe = manager.pipelines["txt2img"]
        blank = GenerationRequest("txt2img", "")
        for configure in manager.configurers:  # every extension's state off (LoRA adapters, unfused)
            configure(pipe, blank)
        side = settings.resolution
        status.steps = settings.steps

        def progress(done: int, total: int, loss: float) -> None:
            status.step, status.loss = done, loss
            step(done, total)

        def sample(done: int) -> None:
            status.sample = manager.sample(GenerationRequest("txt2img", settings.instance_prompt or
                                                                  examples[0].caption, width=side, height=side,
                                                                  seed=settings.seed))
            status.sample_step = done

        started = time.time()
        with manager.offload.paused(on_device=True):  # offloading for small cards: training needs it all there
            class_images = []
            if settings.prior_preservation:  # made by the model itself, before the adapter exists
                count = min(max(len(examples), CLASS_IMAGES[0]), CLASS_IMAGES[1])
                class_images = [manager.sample(GenerationRequest("txt2img", settings.class_prompt, width=side,
                                                                 height=side, seed=settings.seed + index))
                                for index in range(count)]
            trainer = Trainer(pipe, settings, examples, checkpoint)
            try:
                done, loss, tensors = trainer.run(stop, progress, sample, class_images)
            except torch.OutOfMemoryError:
                done = None  # raised below, once the failed step's frames (and their tensors) are gone
        if done is None:
            free_device_memory(manager.runtime.device)
            raise OutOfMemory(
                f"out of memory training at {side}x{side} with batch size {settings.batch_size}: lower the batch "
                "size or the resolution, or turn on gradient checkpointing")
        meta = kohya.metadata(asdict(settings), [example.caption for example in examples], manager.source.name,
                              manager.model_hash, done, started, time.time())
        file = kohya.save(self.lora_folder / f"{settings.name}.safetensors", tensors, meta)
        interrupted = done < settings.steps
        if not interrupted:
            shutil.rmtree(checkpoint, ignore_errors=True)  # finished: nothing left to resume
        return Outcome(settings.name, file, loss, done, interrupted)

    # -- the UI ----------------------------------------------------------------------------------------------

    def register_endpoints(self, image_file) -> None:
        from extensions.train.panel import train_endpoint

        train_endpoint(self)

    def tab(self, image_file):
        from extensions.train.panel import train_tab

        train_tab(self)
        return None
