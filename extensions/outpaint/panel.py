"""The inpaint tab's Outpaint accordion: how far to extend each side, the seam and the pre-fill, and its button."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel
from extensions.outpaint.canvas import FIELDS, FILL, OVERLAP, SIDES
from extensions.panel import control


def outpaint_panel() -> Panel:
    with gr.Accordion("Outpaint", open=False, elem_id="outpaint"):
        with gr.Row():
            sides = [control(side) for side in SIDES]
        with gr.Row():
            overlap = control(OVERLAP)
            fill = control(FILL, widget="radio")
        button = gr.Button("Outpaint", elem_id="outpaint-button")
    # Only its own button sends these values; the tab's Generate button leaves them out.
    return Panel(inputs=[*sides, overlap, fill], collect=lambda values: dict(zip((f.name for f in FIELDS), values)),
                 actions={"outpaint": button})
