"""Send to: select a tab and fill its fields (and its image) from an image's infotext. PNG Info's buttons, the
buttons under every result and the History tab's all do it this way; only where the infotext and the image come
from differs. Only what the infotext says is changed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import gradio as gr

from models.files import servable

# The core tab fields an infotext can fill, in the order a Send-to event writes them
FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "sampler", "strength")

# read(*input values) -> (fields read from an infotext, the image's file or None)
Reader = Callable[..., tuple[dict, str | None]]


def send_to(button: gr.Button, tabs: gr.Tabs, mode: str, target: dict, inputs: Sequence, read: Reader) -> None:
    """On `button`, select the tab `mode` and fill its fields, panels and image from what `read` returns.
    `target`: the tab's {"fields": components by field name (and "image"), "panels": its Send-to panels}."""
    components = target["fields"]
    names = [name for name in FIELDS if name in components]
    with_image = "image" in components
    outputs = [tabs, *(components[name] for name in names),
               *(component for panel in target["panels"] for component in panel.inputs)]
    if with_image:
        outputs.append(components["image"])

    def send(*values):
        fields, path = read(*values)
        for warning in fields.get("warnings", []):
            gr.Warning(warning)
        updates = [gr.Tabs(selected=mode)]
        updates += [fields[name] if name in fields else gr.update() for name in names]
        for panel in target["panels"]:
            updates += panel.send(fields)
        if with_image:  # inpaint's image is an editor: the picture as its background
            path = str(servable(path)) if path else None
            image = path if mode == "img2img" else {"background": path, "layers": [], "composite": path}
            updates.append(image if path else gr.update())
        return updates

    button.click(send, list(inputs), outputs, queue=False, api_visibility="private")

