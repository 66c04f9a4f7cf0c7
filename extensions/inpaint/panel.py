"""The inpaint tab's settings, in A1111's words: Mask blur, Mask mode, Masked content, Inpaint area, padding."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel
from extensions.inpaint.extension import DEFAULTS, MASK_MODES
from extensions.inpaint.options import INPAINT_AREAS, MASK_BLUR_RANGE, MASKED_CONTENT, PADDING_RANGE

FIELDS = ("mask_blur", "invert_mask", "inpaint_area", "padding", "masked_content")  # the inputs' order


def inpaint_panel() -> Panel:
    with gr.Group(elem_id="inpaint-settings"):
        with gr.Row():
            blur = gr.Slider(*MASK_BLUR_RANGE, value=DEFAULTS.mask_blur, step=1, label="Mask blur")
            mode = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], label="Mask mode")
        content = gr.Radio(list(MASKED_CONTENT), value=DEFAULTS.masked_content, label="Masked content",
                           info="fill / latent noise / latent nothing matter for 4-channel models")
        with gr.Row():
            area = gr.Radio(list(INPAINT_AREAS), value=DEFAULTS.inpaint_area, label="Inpaint area")
            padding = gr.Slider(*PADDING_RANGE, value=DEFAULTS.padding, step=4, label="Only masked padding, pixels")
    return Panel(inputs=[blur, mode, area, padding, content], collect=_collect, send=_send)


def _collect(values: list) -> dict:
    fields = dict(zip(FIELDS, values))
    fields["invert_mask"] = fields["invert_mask"] == MASK_MODES[1]
    return fields


def _send(fields: dict) -> list:
    values = dict(fields)
    if "invert_mask" in values:
        values["invert_mask"] = MASK_MODES[bool(values["invert_mask"])]
    return [values[name] if name in values else gr.update() for name in FIELDS]
