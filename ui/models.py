"""The model dropdown over the tabs: "demo", the model the app started with, the checkpoints in --ckpt-dir, or a Hub
id typed in. Choosing one switches every tab's model as REST's sd_model_checkpoint does (after the running job);
if it cannot be loaded, the model in use stays and the dropdown says so."""

from __future__ import annotations

import gradio as gr
from starlette.concurrency import run_in_threadpool

from service.studio import StudioService


def model_row(blocks: gr.Blocks, service: StudioService, system_line: gr.Markdown) -> None:
    """Call inside the Blocks; `system_line` shows the model in use and is updated after a switch (and when a page
    opens: another page may have switched since the Blocks were built)."""
    with gr.Row():
        choice = gr.Dropdown(service.model_choices(), value=service.model_name, label="Stable Diffusion checkpoint",
                             allow_custom_value=True, scale=4, elem_id="model-choice",
                             info="a checkpoint in the checkpoint folder, demo, or a Hub id (owner/name)")
        refresh = gr.Button("Refresh list", scale=1, size="sm", elem_id="model-refresh")

    async def switch(name: str):
        if not name or name == service.model_name:
            yield gr.update(), gr.update()
            return
        gr.Info(f"Loading {name}; the running job finishes first")
        try:
            await run_in_threadpool(service.switch_model, name)
        except ValueError as error:
            yield gr.Dropdown(value=service.model_name), gr.update()  # the model in use stays
            raise gr.Error(str(error)) from None
        yield gr.Dropdown(choices=service.model_choices(), value=service.model_name), f"`{service.system_line()}`"

    # .input: only a user's choice switches (not the refresh below writing the dropdown)
    choice.input(switch, choice, [choice, system_line], concurrency_limit=1, concurrency_id="model-switch",
                 api_visibility="private")
    refresh.click(lambda: gr.Dropdown(choices=service.model_choices(), value=service.model_name), None, choice,
                  queue=False, api_visibility="private")
    blocks.load(lambda: (gr.Dropdown(choices=service.model_choices(), value=service.model_name),
                         f"`{service.system_line()}`"), None, [choice, system_line], queue=False,
                api_visibility="private")
