"""The SD VAE dropdown in each tab: Automatic (the model's own) or one from the VAE folder."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import control
from extensions.vae.fields import VAE
from extensions.vae.library import AUTOMATIC
from models.files import shown_path


def vae_panel(extension, tab: TabContext) -> Panel:
    def choices() -> list[str]:
        return [AUTOMATIC, *extension.library.names()]

    vae = control(VAE, choices=choices(), elem_id=f"{tab.mode}-vae",
                  info=f"Automatic: the model's own; or one from {shown_path(extension.library.folder)}")
    vae.focus(lambda: gr.Dropdown(choices=choices()), None, vae, queue=False, api_visibility="private")
    return Panel(inputs=[vae], collect=lambda values: {"vae": values[0] or AUTOMATIC},
                 send=lambda fields: [fields.get("vae", gr.update())])
