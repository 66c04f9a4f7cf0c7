"""The PNG Info tab: drop an image (ours, A1111's, or a JPEG/WebP with the text in EXIF) to read its prompt and
parameters, and "Send to" a tab to fill that tab's fields with them (LoRA tags, seed and the extensions' settings,
such as ControlNet units, included) and the image itself. Only what the image says is changed."""

from __future__ import annotations

import gradio as gr

from extensions.base import Extension
from service.pnginfo import describe, fields_from_infotext, read_infotext

# The core tab fields PNG Info can fill, in the order the Send-to events write them
FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "sampler", "strength")


def png_info_tab(tabs: gr.Tabs, targets: dict[str, dict], extensions: list[Extension]) -> None:
    with gr.Tab("PNG Info", id="pnginfo"):
        with gr.Row():
            with gr.Column():
                # image_mode=None hands over the upload as it came, its metadata included
                source = gr.Image(type="filepath", image_mode=None, label="Source", elem_id="pnginfo-image")
            with gr.Column():
                text = gr.Textbox(label="Parameters", lines=10, elem_id="pnginfo-text")
                with gr.Row():
                    buttons = {mode: gr.Button(f"Send to {mode}", elem_id=f"pnginfo-to-{mode}") for mode in targets}
        fields = gr.State({})
    source.change(lambda path: _read(path, extensions), source, [text, fields], queue=False, api_visibility="private")
    for mode, target in targets.items():
        components = target["fields"]
        names = [name for name in FIELDS if name in components]
        outputs = [tabs, *(components[name] for name in names),
                   *(component for panel in target["panels"] for component in panel.inputs)]
        if "image" in components:
            outputs.append(components["image"])
        buttons[mode].click(_sender(mode, names, target["panels"], "image" in components), [fields, source], outputs,
                            queue=False, api_visibility="private")


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


def _sender(mode: str, names: list[str], panels: list, with_image: bool):
    def send(fields: dict, path: str | None):
        for warning in fields.get("warnings", []):
            gr.Warning(warning)
        updates = [gr.Tabs(selected=mode)]
        updates += [fields[name] if name in fields else gr.update() for name in names]
        for panel in panels:
            updates += panel.send(fields)
        if with_image:
            image = path if mode == "img2img" else {"background": path, "layers": [], "composite": path}
            updates.append(image if path else gr.update())
        return updates

    return send
