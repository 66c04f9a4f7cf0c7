"""The Train tab and gradio_client's /train_lora: the training slice's UI part."""

from __future__ import annotations

import inspect
import math
import threading

import gradio as gr

from extensions.panel import gradio_errors
from extensions.train.extension import DEFAULTS, MAX_RANK, Status
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
                files = gr.File(label="Images (with .txt captions of the same names), or a zip of them",
                                file_count="multiple", file_types=TRAINING_FILES, elem_id="train-images")
                with gr.Row():
                    name = gr.Textbox(label="LoRA name", elem_id="train-name")
                    instance = gr.Textbox(label="Instance prompt", placeholder="a photo of sks dog",
                                          info="for images without a caption file", elem_id="train-instance")
                with gr.Row():
                    class_prompt = gr.Textbox(label="Class prompt", placeholder="a photo of a dog")
                    prior = gr.Checkbox(False, label="Prior preservation",
                                        info="class images made by the model keep the class as it was")
                with gr.Accordion("Settings", open=True):
                    with gr.Row():
                        steps = gr.Slider(1, 2000, value=DEFAULTS["steps"], step=1, label="Steps",
                                          elem_id="train-steps")
                        batch = gr.Slider(1, 16, value=DEFAULTS["batch_size"], step=1, label="Batch size")
                    with gr.Row():
                        rank = gr.Slider(1, MAX_RANK, value=DEFAULTS["rank"], step=1, label="Rank")
                        alpha = gr.Number(DEFAULTS["alpha"], label="Alpha", info="0: the rank")
                        learning_rate = gr.Number(DEFAULTS["learning_rate"], label="Learning rate",
                                                  elem_id="train-lr")
                    with gr.Row():
                        resolution = gr.Slider(0, 1024, value=0, step=8, label="Resolution",
                                               info="0: the model's own")
                        seed = gr.Number(DEFAULTS["seed"], precision=0, label="Seed")
                        gamma = gr.Number(DEFAULTS["min_snr_gamma"], label="Min-SNR gamma", info="0: off")
                        noise_offset = gr.Number(DEFAULTS["noise_offset"], label="Noise offset",
                                                 info="as the model was trained: 0.5 for the shapes demo")
                    layers = gr.Radio([("Every attention layer (kohya's)", "attention"),
                                       ("Cross-attention keys and values (Custom Diffusion: a new word, least drift)",
                                        "cross_attention")], value=DEFAULTS["layers"], label="U-Net layers",
                                      elem_id="train-layers")
                    with gr.Row():
                        text_encoder = gr.Checkbox(False, label="Train the text encoder too")
                        checkpointing = gr.Checkbox(False, label="Gradient checkpointing",
                                                    info="less memory, slower steps")
                        sample_every = gr.Slider(0, 500, value=0, step=1, label="A sample every N steps",
                                                 info="0: none", elem_id="train-sample-every")
                resume = gr.Checkbox(False, label="Resume the interrupted run of this name", elem_id="train-resume")
                with gr.Row():
                    run = gr.Button("Train", variant="primary", elem_id="train-run")
                    stop = gr.Button("Interrupt", elem_id="train-interrupt")
            with gr.Column():
                status = gr.Textbox(label="Progress", elem_id="train-status")
                sample = gr.Image(type="pil", label="Sample", interactive=False, height=360, elem_id="train-sample",
                                  elem_classes=["studio-input"])
                result = gr.Textbox(label="Result", lines=2, elem_id="train-result")
    options = [steps, rank, alpha, learning_rate, batch, resolution, seed, layers, text_encoder, class_prompt, prior,
               gamma, noise_offset, checkpointing, sample_every, resume]  # the settings, in DEFAULTS' order

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
        if "error" in done:
            with gradio_errors("training"):
                raise done["error"]
        outcome = done["outcome"]
        ended = f"interrupted after {outcome.steps} steps (tick Resume to continue)" if outcome.interrupted else \
            f"trained {outcome.steps} steps"
        yield (_progress(shown), shown.sample,
               f"{ended}; final loss {outcome.loss:.4f}. Use it as <lora:{outcome.name}:1> ({outcome.file.name}).")

    run.click(train, [files, name, instance, *options], [status, sample, result], api_visibility="private",
              **ONE_TRAINING_AT_A_TIME)
    stop.click(lambda: extension.service.interrupt(), queue=False, api_visibility="private")


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
        [inspect.Parameter(name, keyword) for name in ("images", "instance_prompt", "name")]
        + [inspect.Parameter(name, keyword, default=default) for name, default in DEFAULTS.items()])

    inputs = [gr.File(label="images", file_count="multiple", file_types=TRAINING_FILES),
              gr.Textbox(label="instance_prompt"),
              gr.Textbox(label="name")]
    for option, default in DEFAULTS.items():
        if isinstance(default, bool):
            inputs.append(gr.Checkbox(value=default, label=option))
        elif isinstance(default, str):
            inputs.append(gr.Textbox(value=default, label=option))
        else:
            inputs.append(gr.Number(value=default, label=option))
    outputs = [gr.Textbox(label="name"), gr.File(label="file"), gr.Number(label="loss")]
    gr.Button(visible=False).click(train_lora, inputs, outputs, api_name="train_lora", **ONE_TRAINING_AT_A_TIME)
