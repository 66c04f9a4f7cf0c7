"""The Variation seed accordion in each tab (A1111's "Extra" beside the seed)."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import control
from extensions.seeds.fields import SEED_FIELDS, SEED_RESIZE_FROM_H, SEED_RESIZE_FROM_W, SUBSEED, SUBSEED_STRENGTH


def seeds_panel(tab: TabContext) -> Panel:
    with gr.Accordion("Variation seed", open=False, elem_id=f"{tab.mode}-variation"):
        with gr.Row():
            subseed = control(SUBSEED, widget="number", elem_id=f"{tab.mode}-subseed")
            strength = control(SUBSEED_STRENGTH, info=True, elem_id=f"{tab.mode}-subseed-strength")
        with gr.Row():
            width = control(SEED_RESIZE_FROM_W, value=0, info=True)
            height = control(SEED_RESIZE_FROM_H, value=0, info="as the width")
    names = [field.name for field in SEED_FIELDS]
    return Panel(inputs=[subseed, strength, width, height], collect=lambda values: dict(zip(names, values)),
                 # an image made without a variation turns it off
                 send=lambda fields: [fields.get(SUBSEED.name, gr.update()), fields.get(SUBSEED_STRENGTH.name, 0),
                                      fields.get(SEED_RESIZE_FROM_W.name, 0), fields.get(SEED_RESIZE_FROM_H.name, 0)])
