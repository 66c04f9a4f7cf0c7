"""The ControlNet panel of a tab: one sub-tab per unit with sd-webui-controlnet's settings and a Preview of the
detected map. The generate event receives every unit's values after the tab's own inputs; the panel's `collect`
turns them back into the `controlnet_units` list the API takes, so the UI and the API send the same thing."""

from __future__ import annotations

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.controlnet import preprocessors
from extensions.controlnet.units import (
    CONTROL_MODE,
    ENABLED,
    GUIDANCE_END,
    GUIDANCE_START,
    IMAGE,
    MASK,
    MODEL,
    MODULE,
    PIXEL_PERFECT,
    PROCESSOR_RES,
    REGION,
    RESIZE_MODE,
    THRESHOLD_A,
    THRESHOLD_B,
    WEIGHT,
)
from extensions.panel import api_input, control, gradio_errors
from models.files import shown_path

# The order of each unit's components, as the event passes their values.
UNIT_FIELDS = tuple(field.name for field in (ENABLED, IMAGE, MASK, REGION, MODULE, MODEL, WEIGHT, GUIDANCE_START,
                                             GUIDANCE_END, CONTROL_MODE, RESIZE_MODE, PROCESSOR_RES, THRESHOLD_A,
                                             THRESHOLD_B, PIXEL_PERFECT))
PICTURES = (IMAGE.name, MASK.name, REGION.name)  # what sending an infotext to the panel leaves as it is
SLIDER_WIDTH = 240  # px: a slider's label, number box and reset button on one line


def controlnet_panel(extension, tab: TabContext) -> Panel:
    """One sub-tab per unit; the panel's inputs are every unit's components, unit after unit, in UNIT_FIELDS
    order."""
    components = []
    modules, names = preprocessors.available(), extension.library.list_names()  # once, not once per unit
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab.mode}-controlnet") as accordion:
        with gr.Tabs():
            for index in range(extension.max_units):
                with gr.Tab(f"Unit {index}", id=f"{tab.mode}-cn-unit-{index}"):
                    components += _unit(extension, tab, index, modules, names)
    # The header counts the units switched on, so a closed accordion still says that ControlNet is in use.
    switches = components[UNIT_FIELDS.index("enabled")::len(UNIT_FIELDS)]
    for switch in switches:
        switch.change(_header, switches, accordion, queue=False, api_visibility="private")
    return Panel(inputs=components, collect=_collect, send=lambda fields: _send(fields, extension.max_units))


def _header(*enabled: bool):
    on = sum(bool(value) for value in enabled)
    return gr.Accordion(label=f"ControlNet ({on} unit{'s' if on != 1 else ''} on)" if on else "ControlNet")


def _collect(values: list) -> dict:
    width = len(UNIT_FIELDS)
    units = [dict(zip(UNIT_FIELDS, values[i: i + width])) for i in range(0, len(values), width)]
    return {"controlnet_units": [unit for unit in units if unit["enabled"]]}


def _send(fields: dict, unit_count: int) -> list:
    """The image's units, the others switched off; control images and masks stay."""
    units, updates = fields.get("controlnet_units", []), []
    for index in range(unit_count):
        unit = units[index] if index < len(units) else {"enabled": False}
        updates += [gr.update() if name in PICTURES or name not in unit else unit[name]
                    for name in UNIT_FIELDS]
    return updates


def _unit(extension, tab: TabContext, index: int, modules: list[str], names: list[str]) -> list:
    mode, prefix = tab.mode, f"{tab.mode}-cn{index}"
    with gr.Row():
        image = gr.Image(type="pil", label=f"{IMAGE.label} (empty: the tab's image)" if mode != "txt2img"
                         else IMAGE.label, elem_id=f"{prefix}-image", height=220, elem_classes=["studio-input"])
        # an inpaint preprocessor's hole (in the inpaint tab, the tab's mask serves)
        mask = gr.Image(type="pil", image_mode="L", label=f"{MASK.label} (white = repaint)", elem_id=f"{prefix}-mask",
                        height=220, visible=False, elem_classes=["studio-input"])
        detected = gr.Image(type="pil", label="Detected map", interactive=False, elem_id=f"{prefix}-map",
                            height=220, format="png", elem_classes=["studio-input"])
    with gr.Row():
        enabled = control(ENABLED, value=False, elem_id=f"{prefix}-enabled")
        pixel_perfect = control(PIXEL_PERFECT, info=True, elem_id=f"{prefix}-pixel-perfect")
        show = gr.Button("Preview", size="sm", elem_id=f"{prefix}-preview")
    with gr.Row():
        module = control(MODULE, choices=modules, value="canny", elem_id=f"{prefix}-module")
        model = control(MODEL, widget="dropdown", choices=names, value=names[0] if names else None,
                        allow_custom_value=True, elem_id=f"{prefix}-model",
                        info=f"from {shown_path(extension.library.folder)}, or a Hub id")
        refresh = gr.Button("Refresh", size="sm", min_width=80)
    with gr.Row():  # wide enough for A1111's labels on one line: a row wraps its sliders rather than their labels
        weight, start, end = (control(field, min_width=SLIDER_WIDTH)
                              for field in (WEIGHT, GUIDANCE_START, GUIDANCE_END))
    with gr.Row():
        resolution = control(PROCESSOR_RES, visible=False, min_width=SLIDER_WIDTH, elem_id=f"{prefix}-resolution")
        threshold_a, threshold_b = (_slider(preprocessors.get("canny"), ab) for ab in "ab")
    control_mode = control(CONTROL_MODE, widget="radio")
    resize_mode = control(RESIZE_MODE, widget="radio")
    with gr.Accordion(REGION.label, open=False, elem_id=f"{prefix}-region-settings"):
        region = gr.Image(type="pil", image_mode="L", label=f"{REGION.label} (white = the unit acts; empty: "
                          "everywhere)", elem_id=f"{prefix}-region", height=180, elem_classes=["studio-input"])

    # a control image is meant to be used: its unit switches on (it can be switched off again)
    image.upload(lambda: True, None, enabled, queue=False, api_visibility="private")
    # sd-webui-controlnet hides the resolution while pixel perfect chooses it
    pixel_perfect.change(lambda on: gr.Slider(visible=not on), pixel_perfect, resolution, queue=False,
                         api_visibility="private")
    module.change(_threshold_sliders, module, [threshold_a, threshold_b], queue=False, api_visibility="private")
    module.change(_mask_shown, module, mask, queue=False, api_visibility="private")
    refresh.click(lambda: gr.Dropdown(choices=extension.library.list_names()), None, model, queue=False,
                  api_visibility="private")
    tab_image = tab.image if tab.image is not None else gr.State(None)
    show.click(make_preview(extension, tab.image_file, tab.editor_image, tab.editor_mask),
               [image, module, resolution, threshold_a, threshold_b, pixel_perfect, resize_mode, *tab.size, tab_image,
                mask], detected, api_visibility="private")
    return [enabled, image, mask, region, module, model, weight, start, end, control_mode, resize_mode, resolution,
            threshold_a, threshold_b, pixel_perfect]


def make_preview(extension, image_file, editor_image, editor_mask=lambda editor: None):
    """The Preview button's function; `image_file` hands a map to Gradio, `editor_image` and `editor_mask` give an
    editor's picture and its painted mask."""
    def preview(image, module, processor_res, threshold_a, threshold_b, pixel_perfect, resize_mode, width, height,
                tab_image=None, unit_mask=None):
        """A unit's Preview button: the map the generation will use, from the unit's image, else the tab's (an
        editor gives its background, and its painted mask to an inpaint preprocessor). It is fitted to the
        generation size, Width x Height; in inpaint, where the map is fitted to the picture and then cropped like
        it, to the picture's size."""
        picture, mask = None, unit_mask
        if isinstance(tab_image, dict):
            mask = editor_mask(tab_image) if image is None and unit_mask is None else unit_mask
            tab_image = picture = editor_image(tab_image)
        if image is None and tab_image is None:
            raise gr.Error("Preview: upload a control image first")
        size = picture.size if picture is not None else (width, height)
        with gradio_errors("preview"):
            return image_file(extension.control_map(image if image is not None else tab_image, module,
                                                    processor_res, threshold_a, threshold_b, pixel_perfect,
                                                    resize_mode, size, mask), "map.png")

    return preview


def _mask_shown(module: str) -> gr.Image:
    try:
        return gr.Image(visible=preprocessors.get(module).masked)
    except ValueError:
        return gr.Image(visible=False)


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
        return gr.Slider(visible=False, value=None, label=f"Threshold {ab.upper()}", min_width=SLIDER_WIDTH)
    return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=spec.step, label=spec.label, visible=True,
                     min_width=SLIDER_WIDTH)


def detect_endpoint(extension, image_file) -> None:
    """/controlnet_detect for gradio_client: the preprocessor's map of an image (pixel perfect: at the image's own
    resolution)."""
    def controlnet_detect(image, module, processor_res=PROCESSOR_RES.default, threshold_a=None, threshold_b=None,
                          pixel_perfect=PIXEL_PERFECT.default):
        """The map a ControlNet preprocessor makes of an image."""
        with gradio_errors("controlnet_detect"):
            return image_file(extension.control_map(image, module, processor_res, threshold_a, threshold_b,
                                                    pixel_perfect), "map.png")

    inputs = [api_input(IMAGE, required=True), api_input(MODULE, default="canny"), api_input(PROCESSOR_RES),
              api_input(THRESHOLD_A), api_input(THRESHOLD_B), api_input(PIXEL_PERFECT)]
    gr.Button(visible=False).click(controlnet_detect, inputs, gr.Image(type="pil", format="png", label="map"),
                                   api_name="controlnet_detect")
