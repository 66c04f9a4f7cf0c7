"""The ADetailer accordion in txt2img and img2img: one unit with every setting of ADetailer's tab (the API takes up
to four units), and img2img's "Skip img2img"."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.detailer.fields import AD_MODEL, AD_NEGATIVE_PROMPT, AD_PROMPT, SKIP_IMG2IMG, UNIT_FIELDS
from extensions.panel import control

# the settings' rows, as ADetailer groups them (detection, mask preprocessing, inpainting)
ROWS = ((3, 7), (7, 11), (11, 15), (15, 18), (18, 22))


def detailer_panel(tab: TabContext, detectors: list[str]) -> Panel:
    prefix = f"{tab.mode}-detailer"
    with gr.Accordion("ADetailer", open=False, elem_id=prefix):
        with gr.Row():
            enabled = gr.Checkbox(False, label="Enable ADetailer", elem_id=f"{prefix}-enabled",
                                  info="find faces and inpaint each at the full generation size, after hires fix")
            skip = gr.Checkbox(False, label=SKIP_IMG2IMG.label, info=SKIP_IMG2IMG.help, elem_id=f"{prefix}-skip",
                               visible=tab.mode == "img2img")
        model = gr.Dropdown(detectors, value=AD_MODEL.default if AD_MODEL.default in detectors else detectors[0],
                            label=AD_MODEL.label, info=AD_MODEL.help, elem_id=f"{prefix}-model")
        prompt = gr.Textbox(label=AD_PROMPT.label, info=AD_PROMPT.help, lines=2, elem_id=f"{prefix}-prompt")
        negative = gr.Textbox(label=AD_NEGATIVE_PROMPT.label, info=AD_NEGATIVE_PROMPT.help, lines=2,
                              elem_id=f"{prefix}-negative")
        settings = []
        with gr.Accordion("Detection, mask and inpainting settings", open=False):
            for start, end in ROWS:
                with gr.Row():
                    settings += [control(field) for field in UNIT_FIELDS[start:end]]
    inputs = [enabled, skip, model, prompt, negative, *settings]

    def collect(values: list) -> dict:
        if not values[0]:
            return {"detailer_units": []}
        fields = {"detailer_units": [{field.name: value for field, value in zip(UNIT_FIELDS, values[2:])}]}
        return {**fields, SKIP_IMG2IMG.name: bool(values[1])} if tab.mode == "img2img" else fields

    def send(fields: dict) -> list:
        """An image's first ADetailer unit into the accordion; an image made without one turns it off."""
        units = fields.get("detailer_units") or []
        unit = units[0] if units else {}
        return [bool(units), gr.update(), *(unit.get(field.name, field.default) for field in UNIT_FIELDS)]

    return Panel(inputs=inputs, collect=collect, send=send)
