"""Soft inpainting in the inpaint tab, as A1111's: a checkbox, and its six settings in an accordion."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel
from extensions.panel import control
from extensions.soft_inpainting.fields import ENABLED, FIELDS, SETTINGS


def soft_inpainting_panel() -> Panel:
    with gr.Group(elem_id="soft-inpainting"):
        enabled = control(ENABLED, info=True, elem_id="soft-inpainting-enabled")
        with gr.Accordion("Soft inpainting settings", open=False, elem_id="soft-inpainting-settings"):
            with gr.Row():
                settings = [control(field, info=True) for field in SETTINGS[:3]]
            with gr.Row():
                settings += [control(field, info=True) for field in SETTINGS[3:]]
    return Panel(inputs=[enabled, *settings],
                 collect=lambda values: {field.name: value for field, value in zip(FIELDS, values)},
                 # an image made without soft inpainting turns it off
                 send=lambda fields: [fields.get(field.name, field.default) for field in FIELDS])
