"""The Extras tab (a picture made larger by an upscaler) and gradio_client's /upscale: the slice's UI part."""

from __future__ import annotations

import gradio as gr

from extensions.upscale.extension import SCALE_RANGE


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
        try:
            upscaled = extension.upscale(picture, name, factor)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return upscaled, f"{picture.width}x{picture.height} -> {upscaled.width}x{upscaled.height} ({name})"

    run.click(run_upscale, [image, upscaler, scale], [result, info], api_visibility="private",
              concurrency_limit=1, concurrency_id="upscale")
    refresh.click(lambda: gr.Dropdown(choices=extension.upscaler_names()), None, upscaler, queue=False,
                  api_visibility="private")
    return image


def upscale_endpoint(extension, image_file) -> None:
    """/upscale(image, upscaler="Lanczos", scale=2) -> the upscaled picture."""
    def upscale(image, upscaler="Lanczos", scale=2.0):
        try:
            return image_file(extension.upscale(image, upscaler, scale))
        except ValueError as error:
            raise gr.Error(str(error)) from None

    inputs = [gr.File(label="image", file_types=["image"]), gr.Textbox(value="Lanczos", label="upscaler"),
              gr.Number(value=2, label="scale")]
    gr.Button(visible=False).click(upscale, inputs, gr.Image(type="pil", format="png", label="upscaled"),
                                   api_name="upscale", concurrency_limit=1, concurrency_id="upscale")
