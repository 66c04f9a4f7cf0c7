"""The PNG Info tab: drop an image (ours, A1111's, or a JPEG/WebP with the text in EXIF) to read its prompt and
parameters, and "Send to" a tab to fill that tab's fields with them (LoRA tags, seed and the extensions' settings,
such as ControlNet units, included) and the image itself. Only what the image says is changed."""

from __future__ import annotations

import gradio as gr

from extensions.base import Extension
from service.pnginfo import describe, fields_from_infotext, read_infotext
from ui.send import send_to


def png_info_tab(tabs: gr.Tabs, targets: dict[str, dict], extensions: list[Extension]) -> gr.Image:
    """The tab; returns its source image (others send pictures to it)."""
    with gr.Tab("PNG Info", id="pnginfo"):
        with gr.Row():
            with gr.Column():
                # image_mode=None hands over the upload as it came, its metadata included
                source = gr.Image(type="filepath", image_mode=None, label="Source", elem_id="pnginfo-image",
                                  elem_classes=["studio-input"])
            with gr.Column():
                text = gr.Textbox(label="Parameters", lines=10, elem_id="pnginfo-text")
                with gr.Row():
                    buttons = {mode: gr.Button(f"Send to {mode}", elem_id=f"pnginfo-to-{mode}") for mode in targets}
        fields = gr.State({})
    source.change(lambda path: _read(path, extensions), source, [text, fields], queue=False, api_visibility="private")
    for mode, target in targets.items():
        send_to(buttons[mode], tabs, mode, target, [fields, source], lambda fields, path: (fields, path))
    return source


def _read(path: str | None, extensions: list[Extension]):
    if not path:
        return "", {}
    try:
        infotext = read_infotext(path)
    except ValueError as error:
        raise gr.Error(str(error)) from None
    if not infotext:
        return "This image carries no generation parameters.", {}
    return describe(infotext), fields_from_infotext(infotext, extensions)
