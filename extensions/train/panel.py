"""The Train tab and gradio_client's /train_lora: the training slice's UI part."""

from __future__ import annotations

import inspect
import math
import threading

import gradio as gr

from extensions.panel import api_input, control, gradio_errors
from extensions.train.fields import (
    ALPHA,
    BATCH_SIZE,
    CLASS_PROMPT,
    DEFAULTS,
    GRADIENT_CHECKPOINTING,
    IMAGES,
    INSTANCE_PROMPT,
    LAYERS,
    LEARNING_RATE,
    MIN_SNR_GAMMA,
    NAME,
    NOISE_OFFSET,
    PRIOR_PRESERVATION,
    RANK,
    RESOLUTION,
    RESUME,
    SAMPLE_EVERY,
    SEED,
    SETTINGS,
    STEPS,
    TRAIN_TEXT_ENCODER,
)
from extensions.train.status import Status
from models.files import servable

TRAINING_FILES = ["image", ".txt", ".zip"]  # images, their captions, or a zip of both
# The device trains one LoRA at a time anyway; the others wait in gradio's queue before their files are read and
# decoded, not beside it holding them in memory.
ONE_TRAINING_AT_A_TIME = {"concurrency_limit": 1, "concurrency_id": "train"}



def train_tab(extension) -> None:
    with gr.Tab("Train", id="train"):
        gr.Markdown("Train a LoRA on your images over the model in use (DreamBooth-style). It waits its turn in "
                    "the queue and holds the device while it trains; the LoRA is then in the LoRA folder, ready as "
                    "`<lora:name:1>`. Interrupt keeps a checkpoint; tick **Resume** to continue it.")
        with gr.Row():
            with gr.Column():
                files = gr.File(label=IMAGES.label, file_count="multiple", file_types=TRAINING_FILES,
                                elem_id="train-images")
                with gr.Row():
                    name = control(NAME, elem_id="train-name")
                    instance = control(INSTANCE_PROMPT, placeholder="a photo of sks dog",
                                       info="for images without a caption file", elem_id="train-instance")
                with gr.Row():
                    class_prompt = control(CLASS_PROMPT, placeholder="a photo of a dog")
                    prior = control(PRIOR_PRESERVATION, info=True)
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        steps = control(STEPS, elem_id="train-steps")
                        batch = control(BATCH_SIZE)
                    with gr.Row():
                        rank = control(RANK)
                        alpha = control(ALPHA, widget="number", info=True)
                        learning_rate = control(LEARNING_RATE, widget="number", elem_id="train-lr")
                    with gr.Row():
                        resolution = control(RESOLUTION, info="0: the model's own")
                        seed = control(SEED, widget="number")
                        gamma = control(MIN_SNR_GAMMA, widget="number", info=True)
                        noise_offset = control(NOISE_OFFSET, widget="number", info=True)
                    layers = control(LAYERS, widget="radio", elem_id="train-layers",
                                     choices=[("Every attention layer (kohya's)", "attention"),
                                              ("Cross-attention keys and values (Custom Diffusion: a new word, least "
                                               "drift)", "cross_attention")])
                    with gr.Row():
                        text_encoder = control(TRAIN_TEXT_ENCODER)
                        checkpointing = control(GRADIENT_CHECKPOINTING, info=True)
                        sample_every = control(SAMPLE_EVERY, info="0: none", elem_id="train-sample-every")
                resume = control(RESUME, elem_id="train-resume")
                with gr.Row():
                    run = gr.Button("Train", variant="primary", elem_id="train-run")
                    stop = gr.Button("Interrupt", elem_id="train-interrupt")
            with gr.Column():
                status = gr.Textbox(label="Progress", elem_id="train-status")
                sample = gr.Image(type="pil", label="Sample", interactive=False, height=360, elem_id="train-sample",
                                  elem_classes=["studio-input"])
                result = gr.Textbox(label="Result", lines=2, elem_id="train-result")
    options = [steps, rank, alpha, learning_rate, batch, resolution, seed, layers, text_encoder, class_prompt, prior,
               gamma, noise_offset, checkpointing, sample_every, resume]  # the settings, in SETTINGS' order

    def train(files, lora_name, instance_prompt, *values):
        shown = Status()
        done: dict = {}

        def work() -> None:
            try:
                done["outcome"] = extension.train(_paths(files), instance_prompt, lora_name, status=shown,
                                                  **dict(zip(DEFAULTS, values)))
            except Exception as error:  # noqa: BLE001 - raised below, in the handler's thread
                done["error"] = error

        worker = threading.Thread(target=work, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
            yield _progress(shown), shown.sample, gr.update()
        if "error" in done:  # the progress box says so too, not "waiting" for a run that will not come
            try:
                with gradio_errors("training"):
                    raise done["error"]
            except gr.Error as error:
                yield f"not trained: {error.message}", shown.sample, gr.update()
                raise
        outcome = done["outcome"]
        ended = f"interrupted after {outcome.steps} steps (tick Resume to continue)" if outcome.interrupted else \
            f"trained {outcome.steps} steps"
        yield (_progress(shown), shown.sample,
               f"{ended}; final loss {outcome.loss:.4f}. Use it as <lora:{outcome.name}:1> ({outcome.file.name}).")

    run.click(train, [files, name, instance, *options], [status, sample, result], api_visibility="private",
              **ONE_TRAINING_AT_A_TIME)
    stop.click(lambda: extension.services.interrupt(), queue=False, api_visibility="private")


def _progress(status: Status) -> str:
    if not status.steps:
        return "waiting for the device (in the queue)"
    loss = "" if math.isnan(status.loss) else f", loss {status.loss:.4f}"
    sample = f", sample at step {status.sample_step}" if status.sample is not None else ""
    return f"step {status.step}/{status.steps}{loss}{sample}"


def _paths(files) -> list:
    return [item if isinstance(item, str) else getattr(item, "name", item) for item in files or []]


def train_endpoint(extension) -> None:
    """/train_lora(images, instance_prompt, name, steps=500, rank=8, ...) -> (name, the LoRA file, final loss)."""
    def train_lora(images, instance_prompt, name, *values):  # Gradio passes the inputs in order
        with gradio_errors("train_lora"):
            outcome = extension.train(_paths(images), instance_prompt, name, **dict(zip(DEFAULTS, values)))
        return outcome.name, str(servable(outcome.file)), outcome.loss

    # gradio_client's keywords come from the signature: the settings by name, with their defaults
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    train_lora.__signature__ = inspect.Signature(
        [inspect.Parameter(field.name, keyword) for field in (IMAGES, INSTANCE_PROMPT, NAME)]
        + [inspect.Parameter(field.name, keyword, default=field.default) for field in SETTINGS])

    inputs = [gr.File(label=IMAGES.name, file_count="multiple", file_types=TRAINING_FILES),
              api_input(INSTANCE_PROMPT, required=True), api_input(NAME, required=True),
              *(api_input(field) for field in SETTINGS)]
    outputs = [gr.Textbox(label="name"), gr.File(label="file"), gr.Number(label="loss")]
    gr.Button(visible=False).click(train_lora, inputs, outputs, api_name="train_lora", **ONE_TRAINING_AT_A_TIME)
