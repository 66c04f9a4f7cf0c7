"""The inpaint tab's settings, in A1111's words: Mask blur, Mask mode, Masked content, Inpaint area, padding."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel
from extensions.inpaint.options import (
    FIELDS,
    INPAINT_AREA,
    INVERT_MASK,
    MASK_BLUR,
    MASK_MODES,
    MASKED_CONTENT_FIELD,
    PADDING,
)
from extensions.panel import control


def inpaint_panel() -> Panel:
    with gr.Group(elem_id="inpaint-settings"):
        with gr.Row():
            blur = control(MASK_BLUR)
            mode = control(INVERT_MASK, choices=list(MASK_MODES), value=MASK_MODES[0], widget="radio")
        content = control(MASKED_CONTENT_FIELD, widget="radio", info=True)
        with gr.Row():
            area = control(INPAINT_AREA, widget="radio")
            padding = control(PADDING)
    # the inputs in FIELDS' order
    return Panel(inputs=[blur, mode, area, padding, content], collect=_collect, send=_send)


def _collect(values: list) -> dict:
    fields = {field.name: value for field, value in zip(FIELDS, values)}
    fields["invert_mask"] = fields["invert_mask"] == MASK_MODES[1]
    return fields


def _send(fields: dict) -> list:
    values = dict(fields)
    if "invert_mask" in values:
        values["invert_mask"] = MASK_MODES[bool(values["invert_mask"])]
    return [values[field.name] if field.name in values else gr.update() for field in FIELDS]
