"""Beside the prompts: A1111's token counters ("N/75", "N/150", ...), the clip skip slider, and the embeddings one
can name in a prompt."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import control
from extensions.prompts.fields import CLIP_SKIP
from models.files import shown_path


def prompts_panel(extension, tab: TabContext) -> Panel:
    def count(text: str) -> str:
        return extension.token_count(text or "", tab.encoder_text)

    with gr.Row():
        counters = [gr.Textbox(value=count(""), label=label, interactive=False, lines=1, max_lines=1,
                               elem_id=f"{tab.mode}-{name}-tokens", min_width=90, scale=1)
                    for name, label in (("prompt", "Prompt tokens"), ("negative", "Negative tokens"))]
        clip_skip = control(CLIP_SKIP, elem_id=f"{tab.mode}-clip-skip", scale=3)
        names = gr.Dropdown(_names(extension), value=None, label="Embeddings", scale=3,
                            elem_id=f"{tab.mode}-embeddings",
                            info=f"from {shown_path(extension.library.folder)}: pick one to add it to the prompt")
    for box, counter in zip((tab.prompt, tab.negative), counters):
        box.change(count, box, counter, queue=False, api_visibility="private", show_progress="hidden")
    names.focus(lambda: gr.Dropdown(choices=_names(extension)), None, names, queue=False, api_visibility="private")
    names.input(lambda name, text: (f"{text}, {name}" if text else name, None) if name else (gr.skip(), None),
                [names, tab.prompt], [tab.prompt, names], queue=False, api_visibility="private")
    return Panel(inputs=[clip_skip], collect=lambda values: {"clip_skip": values[0]},
                 send=lambda fields: [fields.get(CLIP_SKIP.name, CLIP_SKIP.default)])


def _names(extension) -> list[str]:
    extension.library.refresh()
    return sorted(extension.library.loaded(extension.width))
