"""The named API endpoints for gradio_client: /txt2img, /img2img, /inpaint, the extensions' (/outpaint, ...) and
/interrupt.

They are separate from the UI's events so that their inputs are plain values and plain image files (no slider
bounds or editor layers applied before our own validation, which names the field and the value). Each endpoint's
parameters are its fields, with their defaults there and their descriptions (models/fields.py).
"""

from __future__ import annotations

import gradio as gr

from extensions.base import Extension
from extensions.panel import api_input
from ui.handlers import Handlers, image_file

REQUIRED = ("prompt", "image", "mask")  # what a caller must give (the prompt too: the one text every job needs)


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
            inputs = []
            for field in fields:
                key = (field.name, repr(field.default))
                if key not in components:
                    components[key] = api_input(field, required=field.name in REQUIRED)
                inputs.append(components[key])
            gr.Button(visible=False).click(handlers.api[mode], inputs, outputs, api_name=mode, **event)
        gr.Button(visible=False).click(handlers.interrupt, api_name="interrupt", queue=False)
        for extension in extensions:
            extension.register_endpoints(image_file)
