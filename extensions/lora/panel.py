"""The LoRA picker: choose LoRAs from the library and set a weight each, kept in step with the
`<lora:name:weight>` tags in the prompt (the prompt is what is sent, so the API and the UI agree)."""

from __future__ import annotations

import gradio as gr

from extensions.lora.fields import WEIGHT
from extensions.lora.library import LoraLibrary
from extensions.lora.tags import LoraTag, parse_tags, replace_tags
from extensions.panel import control
from models.files import shown_path


def lora_picker(prompt: gr.Textbox, library: LoraLibrary, mode: str) -> None:
    with gr.Accordion("LoRA", open=False, elem_id=f"{mode}-lora"):
        with gr.Row():
            chosen = gr.Dropdown(
                library.names(), value=[], multiselect=True, allow_custom_value=True, label="LoRA", scale=5,
                elem_id=f"{mode}-lora-choice",
                info=f"from {shown_path(library.folder)}; or type <lora:name:weight> in the prompt",
            )
            refresh = gr.Button("Refresh", scale=1, min_width=80, elem_id=f"{mode}-lora-refresh")

        @gr.render(inputs=[chosen, prompt], triggers=[chosen.change, prompt.blur])
        def weights(names: list[str], text: str):
            current = _tags_or_empty(text)
            for name in names or []:
                slider = control(WEIGHT, value=current.get(name, WEIGHT.default), label=f"{name} weight",
                                 interactive=True, elem_id=f"{mode}-lora-weight-{name}")
                slider.input(
                    lambda weight, text, name=name: _set_weight(text, name, weight), [slider, prompt], [prompt],
                    queue=False,
                )

    refresh.click(lambda: gr.Dropdown(choices=library.refresh()), outputs=[chosen], queue=False)
    chosen.input(_choose, [chosen, prompt], [prompt], queue=False)
    prompt.change(_follow_prompt, [prompt, chosen], [chosen], queue=False)


def _tags_or_empty(text: str) -> dict[str, float]:
    try:
        return dict(parse_tags(text or "")[1])
    except ValueError:  # a tag being typed; the Generate button reports it if it stays wrong
        return {}


def _follow_prompt(text: str, names: list[str]):
    """The picker shows the prompt's tags; unchanged, it is left alone (no second render of the sliders)."""
    tagged = list(_tags_or_empty(text))
    return gr.skip() if tagged == list(names or []) else gr.Dropdown(value=tagged)


def _choose(names: list[str], text: str) -> str:
    current = _tags_or_empty(text)
    return replace_tags(text or "", [LoraTag(name, current.get(name, 1.0)) for name in names or []])


def _set_weight(text: str, name: str, weight: float) -> str:
    current = _tags_or_empty(text)
    current[name] = round(float(weight), 2)
    return replace_tags(text or "", [LoraTag(n, w) for n, w in current.items()])
