"""The slice's UI part: the Extras tab (a picture made larger by an upscaler), gradio_client's /upscale, and the
Hires. fix accordion of txt2img."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import api_input, control, gradio_errors
from extensions.upscale.fields import (
    ENABLE_HR,
    HIRES_FIELDS,
    HR_DENOISING_STRENGTH,
    HR_NEGATIVE_PROMPT,
    HR_PROMPT,
    HR_RESIZE_X,
    HR_RESIZE_Y,
    HR_SAMPLER_NAME,
    HR_SCALE,
    HR_SECOND_PASS_STEPS,
    HR_UPSCALER,
    SCALE,
    UPSCALER,
)
from extensions.upscale.hires import HiresPlan
from models.fields import Field

IMAGE = Field("image", "image", help="the picture to upscale")


def extras_tab(extension, image_file) -> gr.Image:
    """The tab (call inside the UI's Tabs); returns its input picture, which results may be sent to."""
    with gr.Tab("Extras", id="extras"):
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="Image", height=360, elem_id="extras-image",
                                 elem_classes=["studio-input"])
                with gr.Row():
                    upscaler = control(UPSCALER, choices=extension.upscaler_names(), elem_id="extras-upscaler",
                                       scale=3)
                    refresh = gr.Button("Refresh", size="sm", scale=1, min_width=80)
                scale = control(SCALE, elem_id="extras-scale")
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
    def upscale(image, upscaler=UPSCALER.default, scale=SCALE.default):
        """An image made larger by an upscaler (Lanczos, Nearest, None, or a model of the upscaler folder)."""
        with gradio_errors("upscale"):
            return image_file(extension.upscale(image, upscaler, scale), "upscaled.png")

    inputs = [api_input(IMAGE, required=True), api_input(UPSCALER), api_input(SCALE)]
    gr.Button(visible=False).click(upscale, inputs, gr.Image(type="pil", format="png", label="upscaled"),
                                   api_name="upscale", concurrency_limit=1, concurrency_id="upscale")


def hires_panel(extension, tab: TabContext) -> Panel:
    """A1111's Hires. fix: the accordion's title says whether it is on, and the sizes it goes from and to."""
    with gr.Accordion("Hires. fix", open=False, elem_id="txt2img-hires") as accordion:
        enable = control(ENABLE_HR, elem_id="txt2img-enable-hr")
        with gr.Row():
            upscaler = control(HR_UPSCALER, choices=extension.hires_upscaler_names(), elem_id="txt2img-hr-upscaler")
            sampler = control(HR_SAMPLER_NAME)
        with gr.Row():
            steps = control(HR_SECOND_PASS_STEPS, info=True)
            strength = control(HR_DENOISING_STRENGTH, info=True, elem_id="txt2img-hr-strength")
        scale = control(HR_SCALE, elem_id="txt2img-hr-scale",  # its default is the model's
                        value=extension.model_defaults().get(HR_SCALE.name, HR_SCALE.default))
        with gr.Row():
            resize_x = control(HR_RESIZE_X, info=True)
            resize_y = control(HR_RESIZE_Y, info=True)
        with gr.Row():
            prompt = control(HR_PROMPT, lines=2, placeholder="Empty: the prompt above")
            negative = control(HR_NEGATIVE_PROMPT, lines=2, placeholder="Empty: the negative prompt above")
    by_name = {"enable_hr": enable, "hr_scale": scale, "hr_upscaler": upscaler, "hr_second_pass_steps": steps,
               "hr_denoising_strength": strength, "hr_resize_x": resize_x, "hr_resize_y": resize_y,
               "hr_prompt": prompt, "hr_negative_prompt": negative, "hr_sampler_name": sampler}
    inputs = [by_name[field.name] for field in HIRES_FIELDS]

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
    names = [field.name for field in HIRES_FIELDS]
    return Panel(inputs=inputs, collect=lambda values: dict(zip(names, values)),
                 # an image made without hires fix turns it off, as in A1111
                 send=lambda fields: [fields.get("enable_hr", False),
                                      *(fields.get(name, gr.update()) for name in names[1:])])
