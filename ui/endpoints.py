"""The named API endpoints for gradio_client: /txt2img, /img2img, /inpaint, the extensions' (/outpaint, ...) and
/interrupt.

They are separate from the UI's events so that their inputs are plain values and plain image files (no slider
bounds or editor layers applied before our own validation, which names the field and the value). Each endpoint's
parameters are its fields, with the UI's defaults.
"""

from __future__ import annotations

import gradio as gr

from extensions.base import Extension
from ui.handlers import Handlers, map_file


def register_endpoints(handlers: Handlers, extensions: list[Extension], event: dict) -> None:
    """Hidden components as API inputs; call inside the Blocks context."""
    with gr.Column(visible=False):
        components: dict[tuple, gr.components.Component] = {}  # one per field and default, shared by the endpoints
        outputs = [
            gr.Gallery(format="png", label="images"),
            gr.Textbox(label="infotext"),
            gr.Textbox(label="warnings"),
            gr.State([]),
        ]
        for mode, fields in handlers.fields.items():
            inputs = [_component(components, name, default) for name, default in fields.items()]
            gr.Button(visible=False).click(handlers.api[mode], inputs, outputs, api_name=mode, **event)
        gr.Button(visible=False).click(handlers.interrupt, api_name="interrupt", queue=False)
        for extension in extensions:
            extension.register_endpoints(map_file)


def _component(components: dict, name: str, default) -> gr.components.Component:
    key = (name, repr(default))
    if key not in components:
        if name in ("image", "mask"):
            components[key] = gr.File(label=name, file_types=["image"])
        elif name == "prompt":  # the one text a caller must give
            components[key] = gr.Textbox(label=name)
        elif isinstance(default, bool):
            components[key] = gr.Checkbox(value=default, label=name)
        elif isinstance(default, (int, float)):
            components[key] = gr.Number(value=default, label=name)
        elif isinstance(default, (list, dict)):
            components[key] = gr.JSON(value=default, label=name)
        else:
            components[key] = gr.Textbox(value=default, label=name)
    return components[key]
