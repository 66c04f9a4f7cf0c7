"""The ControlNet panel of a tab: one sub-tab per unit with sd-webui-controlnet's settings and a Preview of the
detected map. The generate event receives every unit's values after the tab's own inputs; `with_units` turns
them back into the `controlnet_units` list the API takes, so the UI and the API send the same thing."""

from __future__ import annotations

from collections.abc import Callable

import gradio as gr

from extensions.controlnet import preprocessors
from extensions.controlnet.pipeline import ControlNets
from extensions.controlnet.units import RESIZE_MODES
from models.files import shown_path
from models.request import CONTROL_MODES

# The order of each unit's components, as the event passes their values (the API's field names).
UNIT_FIELDS = ("enabled", "image", "module", "model", "weight", "guidance_start", "guidance_end", "control_mode",
               "resize_mode", "processor_res", "threshold_a", "threshold_b", "pixel_perfect")


def controlnet_panel(controlnets: ControlNets, mode: str, preview: Callable, tab_image, size: list) -> list:
    """Build the panel; returns every unit's components, unit after unit, in UNIT_FIELDS order. `size`: the tab's
    Width and Height sliders (Preview fits the map to them, as the generation does)."""
    components = []
    modules, names = preprocessors.available(), controlnets.library.list_names()  # once, not once per unit
    with gr.Accordion("ControlNet", open=False, elem_id=f"{mode}-controlnet"):
        with gr.Tabs():
            for index in range(controlnets.max_units):
                with gr.Tab(f"Unit {index}", id=f"{mode}-cn-unit-{index}"):
                    components += _unit(controlnets, mode, index, preview, tab_image, size, modules, names)
    return components


def _unit(controlnets: ControlNets, mode: str, index: int, preview: Callable, tab_image, size: list,
          modules: list[str], names: list[str]) -> list:
    prefix = f"{mode}-cn{index}"
    with gr.Row():
        image = gr.Image(type="pil", label="Control image (empty: the tab's image)" if mode != "txt2img"
                         else "Control image", elem_id=f"{prefix}-image", height=220)
        detected = gr.Image(type="pil", label="Detected map", interactive=False, elem_id=f"{prefix}-map",
                            height=220, format="png")
    with gr.Row():
        enabled = gr.Checkbox(label="Enable", elem_id=f"{prefix}-enabled")
        pixel_perfect = gr.Checkbox(value=True, label="Pixel Perfect", elem_id=f"{prefix}-pixel-perfect",
                                    info="the map at the generation's resolution")
        show = gr.Button("Preview", size="sm", elem_id=f"{prefix}-preview")
    with gr.Row():
        module = gr.Dropdown(modules, value="canny", label="Preprocessor", elem_id=f"{prefix}-module")
        model = gr.Dropdown(names, value=names[0] if names else None, label="Model", allow_custom_value=True,
                            elem_id=f"{prefix}-model", info=f"from {shown_path(controlnets.library.folder)}, or a Hub id")
        refresh = gr.Button("Refresh", size="sm", min_width=80)
    with gr.Row():
        weight = gr.Slider(0, 2, value=1.0, step=0.05, label="Control Weight")
        start = gr.Slider(0, 1, value=0.0, step=0.01, label="Starting Control Step")
        end = gr.Slider(0, 1, value=1.0, step=0.01, label="Ending Control Step")
    with gr.Row():
        resolution = gr.Slider(64, 2048, value=512, step=8, label="Preprocessor Resolution", visible=False,
                               elem_id=f"{prefix}-resolution")
        threshold_a, threshold_b = (_slider(preprocessors.get("canny"), ab) for ab in "ab")
    control_mode = gr.Radio(list(CONTROL_MODES), value=CONTROL_MODES[0], label="Control Mode")
    resize_mode = gr.Radio(list(RESIZE_MODES), value="Crop and Resize", label="Resize Mode")

    # sd-webui-controlnet hides the resolution while pixel perfect chooses it
    pixel_perfect.change(lambda on: gr.Slider(visible=not on), pixel_perfect, resolution, queue=False,
                         api_visibility="private")
    module.change(_threshold_sliders, module, [threshold_a, threshold_b], queue=False, api_visibility="private")
    refresh.click(lambda: gr.Dropdown(choices=controlnets.library.list_names()), None, model, queue=False,
                  api_visibility="private")
    tab = [tab_image] if tab_image is not None else []
    show.click(preview, [image, module, resolution, threshold_a, threshold_b, pixel_perfect, resize_mode, *size,
                         *tab], detected, api_visibility="private")
    return [enabled, image, module, model, weight, start, end, control_mode, resize_mode, resolution, threshold_a,
            threshold_b, pixel_perfect]


def with_units(fn: Callable, unit_count: int) -> Callable:
    """An event function for a tab: the tab's own inputs, then every unit's values; calls `fn` with them as
    `controlnet_units`."""
    width = unit_count * len(UNIT_FIELDS)

    def run(*values, progress=gr.Progress()):
        own, flat = values[: len(values) - width], values[len(values) - width:]
        units = [dict(zip(UNIT_FIELDS, flat[i: i + len(UNIT_FIELDS)])) for i in range(0, width, len(UNIT_FIELDS))]
        return fn(*own, controlnet_units=[unit for unit in units if unit["enabled"]], progress=progress)

    return run


def _threshold_sliders(module: str):
    try:
        preprocessor = preprocessors.get(module)
    except ValueError:
        return gr.Slider(visible=False), gr.Slider(visible=False)
    return tuple(_slider(preprocessor, ab) for ab in "ab")


def _slider(preprocessor, ab: str) -> gr.Slider:
    """The threshold slider a preprocessor uses (hidden if it uses none): built in the panel, an update in events."""
    spec = getattr(preprocessor, f"threshold_{ab}")
    if spec is None:
        return gr.Slider(visible=False, value=None, label=f"Threshold {ab.upper()}")
    return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=spec.step, label=spec.label, visible=True)
