"""The Script dropdown at the bottom of each tab (A1111's), and each script's arguments under it, shown when it is
picked: a control per argument as the script declares it, a dropdown where it offers choices (the X/Y/Z plot's axis
types, SD upscale's upscalers). A1111's list-valued arguments (the X/Y/Z plot's dropdown lists) are sent empty: the
text beside them says the values."""

from __future__ import annotations

import contextlib

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import control

NONE = "None"


def scripts_panel(extension, tab: TabContext) -> Panel:
    scripts = extension.available(tab.mode)
    with gr.Group(elem_id=f"{tab.mode}-scripts"):
        chooser = gr.Dropdown([NONE, *(script.title for script in scripts)], value=NONE, label="Script",
                              elem_id=f"{tab.mode}-script")
        groups, inputs, counts = [], [], []
        for script in scripts:
            with gr.Column(visible=False) as group:
                controls = _controls(script, tab)
            groups.append(group)
            inputs += [each for each in controls if each is not None]
            counts.append(controls)
    chooser.change(lambda title: [gr.Column(visible=script.title == title) for script in scripts], chooser, groups,
                   queue=False, api_visibility="private")

    def collect(values) -> dict:
        title, rest = values[0], list(values[1:])
        for script, controls in zip(scripts, counts):
            given = rest[:sum(each is not None for each in controls)]
            rest = rest[len(given):]
            if script.title == title:
                given = iter(given)
                return {"script_name": title, "script_args": [next(given) if each is not None else field.default
                                                              for field, each in zip(script.arguments, controls)]}
        return {"script_name": "", "script_args": []}

    return Panel(inputs=[chooser, *inputs], collect=collect,
                 send=lambda fields: [NONE, *(gr.update() for _ in inputs)])  # a picture's parameters: no script


def _controls(script, tab: TabContext) -> list:
    """Each argument's control (or None), side by side where they belong together: an axis type and its values,
    a run of checkboxes."""
    controls, fields = [], list(script.arguments)
    while fields:
        field = fields.pop(0)
        together = [field]
        while fields and (field.name.endswith("_type") and fields[0].name.endswith("_values")
                          or field.kind == "switch" and fields[0].kind == "switch"):
            together.append(fields.pop(0))
        with gr.Row() if len(together) > 1 else contextlib.nullcontext():
            controls += [_control(script, each, tab) for each in together]
    return controls


def _control(script, field, tab: TabContext):
    """The argument's control (None: sent as its default, as A1111's hidden and list-valued ones are)."""
    if field.kind == "names" or not field.label:
        return None
    choices = script.choices(field.name, tab.mode)
    if choices is not None:
        return gr.Dropdown(choices, value=field.default if field.default in choices else choices[0],
                           label=field.label, elem_id=f"{tab.mode}-{field.name}")
    if field.name == "prompt_txt":
        return control(field, lines=4, elem_id=f"{tab.mode}-{field.name}")
    return control(field, elem_id=f"{tab.mode}-{field.name}")
