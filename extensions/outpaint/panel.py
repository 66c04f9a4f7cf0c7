"""The inpaint tab's Outpaint accordion: how far to extend each side, the seam and the pre-fill, and its button."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel
from extensions.outpaint.canvas import FILLS, OUTPAINT_MAX, OVERLAP_MAX


def outpaint_panel(fields: tuple[str, ...]) -> Panel:
    """`fields`: the extension's field names, in the order of the inputs (left, right, up, down, overlap, fill)."""
    with gr.Accordion("Outpaint", open=False, elem_id="outpaint"):
        with gr.Row():
            sides = [gr.Slider(0, OUTPAINT_MAX, value=0, step=8, label=side.capitalize()) for side in fields[:4]]
        with gr.Row():
            overlap = gr.Slider(0, OVERLAP_MAX, value=16, step=1, label="Seam overlap, pixels")
            fill = gr.Radio(list(FILLS), value="edge", label="Pre-fill new area")
        button = gr.Button("Outpaint", elem_id="outpaint-button")
    # Only its own button sends these values; the tab's Generate button leaves them out.
    return Panel(inputs=[*sides, overlap, fill], collect=lambda values: dict(zip(fields, values)),
                 actions={"outpaint": button})
