"""The slice's UI part: the Extras tab (a picture made larger by an upscaler), gradio_client's /upscale, and the
Hires. fix accordion of txt2img."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import gradio_errors
from extensions.upscale.extension import HIRES_FIELDS, SAME_SAMPLER, SCALE_RANGE
from extensions.upscale.hires import HiresPlan
from models.request import SIZE_RANGE, STEPS_RANGE
from models.sampler_names import SAMPLER_NAMES

HIRES_NAMES = tuple(HIRES_FIELDS)  # the accordion's inputs, in this order


def extras_tab(extension, image_file) -> gr.Image:
    """The tab (call inside the UI's Tabs); returns its input picture, which results may be sent to."""
    with gr.Tab("Extras", id="extras"):
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="Image", height=360, elem_id="extras-image",
                                 elem_classes=["studio-input"])
                with gr.Row():
                    upscaler = gr.Dropdown(extension.upscaler_names(), value="Lanczos", label="Upscaler",
                                           elem_id="extras-upscaler", scale=3)
                    refresh = gr.Button("Refresh", size="sm", scale=1, min_width=80)
                scale = gr.Slider(*SCALE_RANGE, value=2, step=0.5, label="Scale by", elem_id="extras-scale")
                run = gr.Button("Upscale", variant="primary", elem_id="extras-run")
            with gr.Column():
                result = gr.Image(type="pil", format="png", label="Result", interactive=False, height=360,
                                  elem_id="extras-result", elem_classes=["studio-input"])
                info = gr.Textbox(label="Result size", elem_id="extras-info")

    def run_upscale(picture, name, factor):
        if picture is None:
            raise gr.Error("Upscale: add an image first")
        with gradio_errors("upscale"):
            upscaled = extension.upscale(picture, name, factor)
        return upscaled, f"{picture.width}x{picture.height} -> {upscaled.width}x{upscaled.height} ({name})"

    run.click(run_upscale, [image, upscaler, scale], [result, info], api_visibility="private",
              concurrency_limit=1, concurrency_id="upscale")
    refresh.click(lambda: gr.Dropdown(choices=extension.upscaler_names()), None, upscaler, queue=False,
                  api_visibility="private")
    return image


def upscale_endpoint(extension, image_file) -> None:
    """/upscale(image, upscaler="Lanczos", scale=2) -> the upscaled picture."""
    def upscale(image, upscaler="Lanczos", scale=2.0):
        with gradio_errors("upscale"):
            return image_file(extension.upscale(image, upscaler, scale))

    inputs = [gr.File(label="image", file_types=["image"]), gr.Textbox(value="Lanczos", label="upscaler"),
              gr.Number(value=2, label="scale")]
    gr.Button(visible=False).click(upscale, inputs, gr.Image(type="pil", format="png", label="upscaled"),
                                   api_name="upscale", concurrency_limit=1, concurrency_id="upscale")


def hires_panel(extension, tab: TabContext) -> Panel:
    """A1111's Hires. fix: the accordion's title says whether it is on, and the sizes it goes from and to."""
    defaults = HIRES_FIELDS
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img-hires") as accordion:
        enable = gr.Checkbox(defaults["enable_hr"], label="Hires. fix: upscale, then refine with img2img",
                             elem_id="txt2img-enable-hr")
        with gr.Row():
            upscaler = gr.Dropdown(extension.hires_upscaler_names(), value=defaults["hr_upscaler"], label="Upscaler",
                                   elem_id="txt2img-hr-upscaler")
            sampler = gr.Dropdown([SAME_SAMPLER, *SAMPLER_NAMES], value=SAME_SAMPLER, label="Hires sampler")
        with gr.Row():
            steps = gr.Slider(0, STEPS_RANGE[1], value=defaults["hr_second_pass_steps"], step=1, label="Hires steps",
                              info="0: as many as Sampling steps")
            strength = gr.Slider(0.01, 1, value=defaults["hr_denoising_strength"], step=0.01,
                                 label="Denoising strength", elem_id="txt2img-hr-strength", info="of the second pass")
        scale = gr.Slider(*SCALE_RANGE, value=defaults["hr_scale"], step=0.05, label="Upscale by",
                          elem_id="txt2img-hr-scale")
        with gr.Row():
            resize_x = gr.Slider(0, SIZE_RANGE[1], value=0, step=8, label="Resize width to",
                                 info="0: by Upscale by (or the ratio)")
            resize_y = gr.Slider(0, SIZE_RANGE[1], value=0, step=8, label="Resize height to",
                                 info="both set: cover, then crop")
        with gr.Row():
            prompt = gr.Textbox(label="Hires prompt", lines=2, placeholder="Empty: the prompt above")
            negative = gr.Textbox(label="Hires negative prompt", lines=2,
                                  placeholder="Empty: the negative prompt above")
    inputs = [enable, scale, upscaler, steps, strength, resize_x, resize_y, prompt, negative, sampler]

    def title(on, factor, x, y, width, height) -> gr.Accordion:
        if not on:
            return gr.Accordion(label="Hires. fix")
        try:
            _, (to_width, to_height) = HiresPlan("Latent", float(factor), (int(x), int(y)), 0, 1.0).sizes(
                int(width), int(height))
        except (TypeError, ValueError, ZeroDivisionError):
            return gr.Accordion(label="Hires. fix: on")
        return gr.Accordion(label=f"Hires. fix: on, from {int(width)}x{int(height)} to {to_width}x{to_height}")

    watched = [enable, scale, resize_x, resize_y, *tab.size]
    for component in watched:
        component.change(title, watched, accordion, queue=False, api_visibility="private")
    upscaler.focus(lambda: gr.Dropdown(choices=extension.hires_upscaler_names()), None, upscaler, queue=False,
                   api_visibility="private")
    return Panel(inputs=inputs, collect=lambda values: dict(zip(HIRES_NAMES, values)),
                 # an image made without hires fix turns it off, as in A1111
                 send=lambda fields: [fields.get("enable_hr", False),
                                      *(fields.get(name, gr.update()) for name in HIRES_NAMES[1:])])
