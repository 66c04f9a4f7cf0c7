"""The styles picker beside the prompt: choose styles for the job (their names go with it), apply them into the
prompt boxes, or save the prompts as a style."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import control, gradio_errors
from extensions.styles.fields import STYLES
from extensions.styles.library import StyleLibrary


def styles_panel(library: StyleLibrary, tab: TabContext) -> Panel:
    def names() -> list[str]:
        with gradio_errors("styles"):
            return list(library.styles())

    with gr.Accordion("Styles", open=False, elem_id=f"{tab.mode}-styles"):
        with gr.Row():
            chosen = control(STYLES, widget="dropdown", choices=names(), multiselect=True, scale=4,
                             elem_id=f"{tab.mode}-styles-choice")
            apply = gr.Button("Apply to the prompts", size="sm", scale=1, elem_id=f"{tab.mode}-styles-apply")
        with gr.Row():
            name = gr.Textbox(label="Save the prompts as the style", placeholder="a name", scale=4,
                              elem_id=f"{tab.mode}-styles-name")
            save = gr.Button("Save", size="sm", scale=1, elem_id=f"{tab.mode}-styles-save")

    def applied(styles, prompt, negative):
        with gradio_errors("styles"):
            prompt, negative = library.apply(styles or [], prompt or "", negative or "")
        return prompt, negative, []  # written out: the picker is cleared so they are not added twice

    def saved(style_name, prompt, negative):
        with gradio_errors("save style"):
            library.save(style_name, prompt, negative)
        return gr.Dropdown(choices=names()), ""

    chosen.focus(lambda: gr.Dropdown(choices=names()), None, chosen, queue=False, api_visibility="private")
    apply.click(applied, [chosen, tab.prompt, tab.negative], [tab.prompt, tab.negative, chosen], queue=False,
                api_visibility="private")
    save.click(saved, [name, tab.prompt, tab.negative], [chosen, name], queue=False, api_visibility="private")
    return Panel(inputs=[chosen], collect=lambda values: {STYLES.name: values[0] or []},
                 send=lambda fields: [gr.update()])
