"""The Gradio UI: txt2img, img2img and inpaint tabs over one StudioService, sharing one queue slot."""

from __future__ import annotations

import gradio as gr

from extensions.inpaint.options import INPAINT_AREAS, MASK_BLUR_RANGE, MASKED_CONTENT, PADDING_RANGE, InpaintOptions
from extensions.inpaint.outpaint import FILLS, OUTPAINT_MAX, OVERLAP_MAX
from models.request import BATCH_RANGE, CFG_RANGE, SIZE_RANGE, STEPS_RANGE
from models.samplers import DEFAULT_SAMPLER, SAMPLER_NAMES
from service.studio import StudioService
from ui.api import register_api
from ui.controlnet_panel import controlnet_panel, with_units
from ui.handlers import MASK_MODES, Handlers, select_infotext
from ui.lora_picker import lora_picker
from ui.png_info import png_info_tab

GPU_SLOT = "gpu"  # every generation event shares this concurrency slot
TITLE = "SD Studio"
GENERATION_EVENT = {"concurrency_limit": 1, "concurrency_id": GPU_SLOT}


def ui_defaults(size: int) -> dict:
    return {
        "negative_prompt": "", "seed": -1, "steps": 20, "guidance_scale": 7.0, "width": size, "height": size,
        "sampler": DEFAULT_SAMPLER, "batch_size": 1, "strength": 0.75,
    }


def build_ui(service: StudioService, queue_size: int = 16) -> gr.Blocks:
    handlers = Handlers(service)
    defaults = ui_defaults(service.default_size)
    with gr.Blocks(title=TITLE) as blocks:
        gr.Markdown(f"# {TITLE}")
        if service.notice:
            gr.Markdown(f"⚠️ **{service.notice}**", elem_id="model-notice")
        with gr.Tabs() as tabs:
            targets = {}
            for mode in ("txt2img", "img2img", "inpaint"):
                with gr.Tab(mode, id=mode):
                    targets[mode] = _tab(handlers, mode, defaults)
            png_info_tab(tabs, targets)
        gr.Markdown(f"`{service.system_line()}`", elem_id="system-line")
        register_api(handlers, defaults, GENERATION_EVENT)
    blocks.queue(max_size=queue_size, default_concurrency_limit=1, api_open=False)
    return blocks


def _tab(handlers: Handlers, mode: str, defaults: dict) -> dict:
    """Build one tab; returns its fields by API name (and "image", "mask_mode", "units") for PNG Info's Send to."""
    with gr.Row():
        with gr.Column(scale=4):
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id=f"{mode}-prompt")
            negative = gr.Textbox(value=defaults["negative_prompt"], label="Negative prompt", lines=2, elem_id=f"{mode}-negative")
            if handlers.service.loras is not None:
                lora_picker(prompt, handlers.service.loras.library, mode)
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{mode}-generate")
            interrupt = gr.Button("Interrupt", elem_id=f"{mode}-interrupt")
    with gr.Row():
        with gr.Column():
            images = _image_inputs(mode)
            sampler = gr.Dropdown(list(SAMPLER_NAMES), value=defaults["sampler"], label="Sampling method")
            steps = gr.Slider(*STEPS_RANGE, value=defaults["steps"], step=1, label="Sampling steps")
            with gr.Row():
                width = gr.Slider(*SIZE_RANGE, value=defaults["width"], step=8, label="Width")
                height = gr.Slider(*SIZE_RANGE, value=defaults["height"], step=8, label="Height")
            with gr.Row():
                batch_size = gr.Slider(*BATCH_RANGE, value=defaults["batch_size"], step=1, label="Batch size")
                cfg = gr.Slider(*CFG_RANGE, value=defaults["guidance_scale"], step=0.5, label="CFG scale")
            seed = gr.Number(value=defaults["seed"], precision=0, label="Seed (-1: random)")
            strength = gr.Slider(
                0.01, 1.0, value=defaults["strength"], step=0.01, label="Denoising strength", visible=mode != "txt2img"
            )
            inpaint_settings: list = []
            if mode == "inpaint":
                inpaint_settings = _inpaint_settings()
                outpaint_settings, outpaint = _outpaint_settings()
            units: list = []
            controlnets = handlers.service.controlnets
            if controlnets is not None:
                units = controlnet_panel(controlnets, mode, handlers.preview, images[0] if images else None,
                                         [width, height])
        with gr.Column():
            gallery = gr.Gallery(label="Results", format="png", columns=2, elem_id=f"{mode}-gallery")
            infotext = gr.Textbox(label="Generation parameters", lines=4, elem_id=f"{mode}-infotext")
            notes = gr.Textbox(label="Notes", lines=1, elem_id=f"{mode}-notes")
            infotexts = gr.State([])

    settings = [negative, seed, steps, cfg, width, height, sampler, batch_size]
    outputs = [gallery, infotext, notes, infotexts]
    # The named API endpoints are registered separately (ui/api.py); these events serve the browser only.
    fn, inputs = {
        "txt2img": (handlers.txt2img, [prompt, *settings]),
        "img2img": (handlers.img2img, [prompt, *images, *settings, strength]),
        "inpaint": (handlers.inpaint_editor, [prompt, *images, *settings, strength, *inpaint_settings]),
    }[mode]
    if units:
        fn, inputs = with_units(fn, controlnets.max_units), [*inputs, *units]
    generate.click(
        fn, inputs, outputs, api_name=f"{mode}_ui", api_visibility="private", show_progress_on=[gallery],
        **GENERATION_EVENT,
    )
    if mode == "inpaint":
        outpaint.click(
            handlers.outpaint_editor, [prompt, images[0], *outpaint_settings, *settings, strength], outputs,
            api_name="outpaint_ui", api_visibility="private", show_progress_on=[gallery], **GENERATION_EVENT,
        )
    # Not queued: it must get through while the generation holds the GPU slot.
    interrupt.click(handlers.interrupt, api_name=f"{mode}_interrupt", queue=False, api_visibility="private")
    gallery.select(
        select_infotext, [infotexts], [infotext], api_name=f"{mode}_select", queue=False, api_visibility="private"
    )
    fields = {"prompt": prompt, "negative_prompt": negative, "seed": seed, "steps": steps, "guidance_scale": cfg,
              "width": width, "height": height, "sampler": sampler, "units": units}
    if mode != "txt2img":
        fields.update(image=images[0], strength=strength)
    if mode == "inpaint":
        fields.update(zip(("mask_blur", "mask_mode", "inpaint_area", "padding", "masked_content"), inpaint_settings))
    return fields


def _inpaint_settings() -> list:
    """A1111's inpaint settings, in its words: [mask_blur, mask_mode, inpaint_area, padding, masked_content]."""
    default = InpaintOptions()
    with gr.Group(elem_id="inpaint-settings"):
        with gr.Row():
            blur = gr.Slider(*MASK_BLUR_RANGE, value=default.mask_blur, step=1, label="Mask blur")
            mode = gr.Radio(list(MASK_MODES), value=MASK_MODES[0], label="Mask mode")
        content = gr.Radio(list(MASKED_CONTENT), value=default.masked_content, label="Masked content",
                           info="fill / latent noise / latent nothing matter for 4-channel models")
        with gr.Row():
            area = gr.Radio(list(INPAINT_AREAS), value=default.inpaint_area, label="Inpaint area")
            padding = gr.Slider(*PADDING_RANGE, value=default.padding, step=4, label="Only masked padding, pixels")
    return [blur, mode, area, padding, content]


def _outpaint_settings() -> tuple[list, gr.Button]:
    """Extend the editor's picture: [left, right, up, down, overlap, fill] and the Outpaint button."""
    with gr.Accordion("Outpaint", open=False, elem_id="outpaint"):
        with gr.Row():
            sides = [gr.Slider(0, OUTPAINT_MAX, value=0, step=8, label=side.capitalize())
                     for side in ("left", "right", "up", "down")]
        with gr.Row():
            overlap = gr.Slider(0, OVERLAP_MAX, value=16, step=1, label="Seam overlap, pixels")
            fill = gr.Radio(list(FILLS), value="edge", label="Pre-fill new area")
        button = gr.Button("Outpaint", elem_id="outpaint-button")
    return [*sides, overlap, fill], button


def _image_inputs(mode: str) -> list:
    if mode == "txt2img":
        return []
    if mode == "img2img":
        return [gr.Image(type="pil", label="Image", elem_id="img2img-image")]
    editor = gr.ImageEditor(
        type="pil",
        label="Image and mask: paint over the area to repaint",
        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
        layers=False,
        elem_id="inpaint-editor",
    )
    mask_upload = gr.Image(type="pil", image_mode="RGBA", label="Or upload a mask (white = repaint)", elem_id="inpaint-mask")
    return [editor, mask_upload]
