"""The named API endpoints /txt2img, /img2img and /inpaint for gradio_client.

They are separate from the UI's events so that their inputs are plain values and plain image files (no slider
bounds or editor layers applied before our own validation, which names the field and the value). Defaults
are the UI's defaults.
"""

from __future__ import annotations

import gradio as gr

from ui.handlers import Handlers


def register_api(handlers: Handlers, defaults: dict, event: dict) -> None:
    """Hidden components as API inputs; call inside the Blocks context."""
    with gr.Column(visible=False):
        prompt = gr.Textbox(label="prompt")
        settings = [
            gr.Textbox(value=defaults["negative_prompt"], label="negative_prompt"),
            gr.Number(value=defaults["seed"], label="seed"),
            gr.Number(value=defaults["steps"], label="steps"),
            gr.Number(value=defaults["guidance_scale"], label="guidance_scale"),
            gr.Number(value=defaults["width"], label="width"),
            gr.Number(value=defaults["height"], label="height"),
            gr.Textbox(value=defaults["sampler"], label="sampler"),
            gr.Number(value=defaults["batch_size"], label="batch_size"),
        ]
        strength = gr.Number(value=defaults["strength"], label="strength")
        image = gr.File(label="image", file_types=["image"])
        mask = gr.File(label="mask", file_types=["image"])
        outputs = [
            gr.Gallery(format="png", label="images"),
            gr.Textbox(label="infotext"),
            gr.Textbox(label="warnings"),
            gr.State([]),
        ]
        for name, fn, inputs in (
            ("txt2img", handlers.txt2img, [prompt, *settings]),
            ("img2img", handlers.img2img, [prompt, image, *settings, strength]),
            ("inpaint", handlers.inpaint, [prompt, image, mask, *settings, strength]),
        ):
            gr.Button(visible=False).click(fn, inputs, outputs, api_name=name, **event)
        gr.Button(visible=False).click(handlers.interrupt, api_name="interrupt", queue=False)
