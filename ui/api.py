"""The named API endpoints /txt2img, /img2img, /inpaint and /outpaint for gradio_client.

They are separate from the UI's events so that their inputs are plain values and plain image files (no slider
bounds or editor layers applied before our own validation, which names the field and the value). Defaults
are the UI's defaults.
"""

from __future__ import annotations

import gradio as gr

from extensions.inpaint.options import InpaintOptions
from ui.handlers import Handlers

INPAINT_DEFAULTS = InpaintOptions()


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
        inpaint_options = [
            gr.Number(value=INPAINT_DEFAULTS.mask_blur, label="mask_blur"),
            gr.Checkbox(value=INPAINT_DEFAULTS.invert_mask, label="invert_mask"),
            gr.Textbox(value=INPAINT_DEFAULTS.inpaint_area, label="inpaint_area"),
            gr.Number(value=INPAINT_DEFAULTS.padding, label="padding"),
            gr.Textbox(value=INPAINT_DEFAULTS.masked_content, label="masked_content"),
        ]
        outpaint_options = [
            *(gr.Number(value=0, label=side) for side in ("left", "right", "up", "down")),
            gr.Number(value=16, label="overlap"),
            gr.Textbox(value="edge", label="fill"),
        ]
        outpaint_strength = gr.Number(value=1.0, label="strength")  # the new area has nothing worth keeping
        # [{"module": "canny", "model": "name", "weight": 1.0, "image": "<base64>", ...}], sd-webui-controlnet's fields
        units = gr.JSON(value=[], label="controlnet_units")
        outputs = [
            gr.Gallery(format="png", label="images"),
            gr.Textbox(label="infotext"),
            gr.Textbox(label="warnings"),
            gr.State([]),
        ]
        for name, fn, inputs in (
            ("txt2img", handlers.txt2img, [prompt, *settings, units]),
            ("img2img", handlers.img2img, [prompt, image, *settings, strength, units]),
            ("inpaint", handlers.inpaint, [prompt, image, mask, *settings, strength, *inpaint_options, units]),
            ("outpaint", handlers.outpaint, [prompt, image, *outpaint_options, *settings, outpaint_strength]),
        ):
            gr.Button(visible=False).click(fn, inputs, outputs, api_name=name, **event)
        gr.Button(visible=False).click(handlers.interrupt, api_name="interrupt", queue=False)
        detect_inputs = [image, gr.Textbox(value="canny", label="module"), gr.Number(value=512, label="processor_res"),
                         gr.Number(value=None, label="threshold_a"), gr.Number(value=None, label="threshold_b"),
                         gr.Checkbox(value=True, label="pixel_perfect")]
        gr.Button(visible=False).click(handlers.controlnet_detect, detect_inputs,
                                       gr.Image(type="pil", format="png", label="map"), api_name="controlnet_detect")
