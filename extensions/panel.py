"""The panels' shared part (gradio lives in panel modules only): a field's UI control built from its declaration, and
what an extension's gradio handler tells its client when it fails. A ValueError (bad input) by its message, which
names the field and the value; anything else by its kind only, since its message may hold server paths (the log has
it whole)."""

from __future__ import annotations

import contextlib
import logging

import gradio as gr

from models.fields import Field

log = logging.getLogger(__name__)
NUMBERS = ("int", "whole", "number", "fraction", "size")


def control(field: Field, widget: str = "", info: bool | str = False, **props) -> gr.components.Component:
    """The UI control of a field, from its declaration: a slider over its UI range (a number box when unbounded), a
    checkbox, a dropdown or radio (`widget`) of its choices, or a textbox; its label, default and (`info`) its help
    line (or this one). `props`: the layout (elem_id, scale, ...), and what the declaration cannot know (a
    library's choices)."""
    shown_info = info if isinstance(info, str) else field.help if info else None
    settings = {"label": field.label or field.name, "value": field.default, "info": shown_info, **props}
    span = field.control_range
    if field.kind in NUMBERS and span is not None and widget != "number":
        return gr.Slider(span[0], span[1], step=field.step or (1 if field.kind != "number" else 0.01), **settings)
    if field.kind in NUMBERS:
        return gr.Number(precision=None if field.kind in ("number", "fraction") else 0, **settings)
    if field.kind == "choice" or widget in ("radio", "dropdown"):  # a switch may show as two named choices
        settings.setdefault("choices", list(field.choices))
        return (gr.Radio if widget == "radio" else gr.Dropdown)(**settings)
    if field.kind == "switch":
        return gr.Checkbox(**settings)
    if field.kind == "text":
        return gr.Textbox(**settings)
    raise ValueError(f"field {field.name}: a {field.kind} has no control of its own")


def api_input(field: Field, default=..., required: bool = False) -> gr.components.Component:
    """A gradio_client endpoint's parameter for a field: a plain component (no slider bounds or choices applied
    before our own check, which names the field and the value) labelled by its name, with its default (`required`:
    none) and its description in the API's documentation."""
    value = None if required else field.default if default is ... else default
    if field.kind in ("image", "images"):
        component = gr.File(label=field.name, file_types=["image"], file_count="multiple" if field.kind == "images"
                            else "single")
    elif field.kind == "switch":
        component = gr.Checkbox(value=value, label=field.name)
    elif field.kind in NUMBERS:
        component = gr.Number(value=value, label=field.name)
    elif field.kind in ("list", "names", "object", "args"):
        component = gr.JSON(value=value, label=field.name)
    else:
        component = gr.Textbox(value=value, label=field.name)
    info = {**component.api_info(), "additional_description": field.describe()}
    component.api_info_as_input = lambda: info  # what gradio_client's view_api shows of the parameter
    return component


@contextlib.contextmanager
def gradio_errors(what: str):
    try:
        yield
    except gr.Error:
        raise
    except ValueError as error:
        raise gr.Error(str(error)) from None
    except Exception as error:
        log.exception("%s failed", what)
        raise gr.Error(f"{what} failed ({type(error).__name__}); the server's log has the details") from None
