"""The Refiner accordion in each tab, as A1111's: the checkpoint (a checkpoint folder's names; a Hub id may be typed)
and the switch."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import control
from extensions.refiner.fields import REFINER_CHECKPOINT, REFINER_SWITCH_AT


def refiner_panel(tab: TabContext, names: list[str]) -> Panel:
    with gr.Accordion("Refiner", open=False, elem_id=f"{tab.mode}-refiner"):
        with gr.Row():
            checkpoint = gr.Dropdown(["", *names], value="", label=REFINER_CHECKPOINT.label, allow_custom_value=True,
                                     info=REFINER_CHECKPOINT.help, elem_id=f"{tab.mode}-refiner-checkpoint")
            switch_at = control(REFINER_SWITCH_AT, info=True, elem_id=f"{tab.mode}-refiner-switch-at")
    return Panel(inputs=[checkpoint, switch_at],
                 collect=lambda values: {REFINER_CHECKPOINT.name: values[0] or "",
                                         REFINER_SWITCH_AT.name: values[1]},
                 # an image made without the refiner turns it off
                 send=lambda fields: [fields.get(REFINER_CHECKPOINT.name, ""),
                                      fields.get(REFINER_SWITCH_AT.name, REFINER_SWITCH_AT.default)])
