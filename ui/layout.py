"""The Gradio UI: txt2img, img2img and inpaint tabs over one StudioService, sharing one queue slot. Each tab has
the core settings; the extensions add their panels (extensions/base.py's Panel)."""

from __future__ import annotations

import contextlib

import gradio as gr

from extensions.base import Panel, TabContext
from extensions.panel import control
from models.files import servable
from models.request import (
    BATCH_SIZE,
    GUIDANCE,
    HEIGHT,
    NEGATIVE_PROMPT,
    PROMPT,
    SAMPLER,
    SEED,
    STEPS,
    STRENGTH,
    WIDTH,
    size_of_image,
)
from service.history import History
from service.pnginfo import fields_from_infotext
from service.studio import StudioService
from ui.endpoints import register_endpoints
from ui.handlers import Handlers, editor_image_and_mask, image_file, select_result, selected_result
from ui.history import history_tab
from ui.models import model_row
from ui.png_info import png_info_tab
from ui.send import send_to

GPU_SLOT = "gpu"  # every generation event shares this concurrency group
TITLE = "SD Studio"
INPUT_HEIGHT = 360  # px: input pictures at a size one can see and paint on (a 64 px image is enlarged to fit)
SETTINGS = ("negative_prompt", "seed", "steps", "guidance_scale", "width", "height", "sampler", "batch_size")


MASK_HEIGHT = 200  # px: an uploaded mask, enlarged enough to check against the picture
# The results box: beside the settings, within the window at any size, from the top of the page (the title, the model
# and the tabs above it: 362 px at 1280x800) as from its sticky place when the settings scroll
RESULTS_HEIGHT = "max(300px, calc(100vh - 390px))"

# Results are shown whole and enlarged with crisp pixels (the demo model makes 64 px images; smoothing blurs them to
# mush): the grid of results fills the box's height, and each fits its cell (Gradio's cells are square and as wide
# as the box: a single result would be taller than the box, and cropped). The results column stays in view while the
# settings scroll. A failed job's status and notes say what went wrong; Gradio's "Error" badge over the results
# would hide the last images. Toasts (of the other tabs' actions) go to the bottom right, off Generate. A picture to
# click on shows a crosshair, and a quick second click does not select it as text.
CSS = """
[id$="-gallery"] img { image-rendering: pixelated; }
[id$="-gallery"] .wrap:has(> .error) { display: none; }
.studio-input img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
.studio-clickable img { cursor: crosshair; user-select: none; }
[id$="-gallery"] .grid-container { height: 100%; box-sizing: border-box; grid-auto-rows: minmax(0, 1fr);
                                   grid-template-rows: repeat(var(--grid-rows), minmax(0, 1fr)); }
[id$="-gallery"] .thumbnail-item { aspect-ratio: auto; }
.studio-results { position: sticky; top: var(--size-2); align-self: flex-start; }
.studio-status { min-height: 2.2em; }
.studio-status .bar { display: flex; align-items: center; gap: var(--size-2); }
.studio-status progress { flex: 1; height: 0.9em; accent-color: var(--color-accent); }
.studio-status .refused { color: var(--error-text-color, #b91c1c); }
.toast-wrap { top: auto !important; bottom: var(--size-4); }
"""


def build_ui(service: StudioService, queue_size: int = 16) -> gr.Blocks:
    handlers = Handlers(service)
    # Generation events wait in the service's queue (one job on the model at a time), so Gradio lets as many in as
    # that queue holds; running each job in the event's own thread (ZeroGPU), Gradio's slot is the one queue.
    event = {"concurrency_limit": 1 if service.direct else queue_size + 1, "concurrency_id": GPU_SLOT}
    with gr.Blocks(title=TITLE) as blocks:
        gr.Markdown(f"# {TITLE}")
        if service.notice:
            gr.Markdown(f"⚠️ **{service.notice}**", elem_id="model-notice")
        system_line = gr.Markdown(f"`{service.system_line()}`", elem_id="system-line", render=False)
        if service.model_loader is not None:
            model_row(blocks, service, system_line)
        with gr.Tabs() as tabs:
            targets = {}
            for mode in ("txt2img", "img2img", "inpaint"):
                with gr.Tab(mode, id=mode):
                    targets[mode] = _tab(handlers, mode, event)
            own_tabs = {extension.tab_name: extension.tab(image_file) for extension in service.extensions
                        if extension.tab_name}  # Extras: a tab name -> its input picture (None: it takes none)
            own_tabs = {name: picture for name, picture in own_tabs.items() if picture is not None}
            png_info_source = png_info_tab(tabs, targets, service.extensions)
            history_tab(tabs, targets, png_info_source, History(service.output_dir), service.extensions)
        for target in targets.values():
            _wire_result_buttons(target, tabs, targets, own_tabs, service.extensions)
        system_line.render()
        register_endpoints(handlers, service.extensions, event)
    blocks.queue(max_size=queue_size, default_concurrency_limit=1, api_open=False)
    return blocks


def _tab(handlers: Handlers, mode: str, event: dict) -> dict:
    """Build one tab: the prompt and the settings on the left; on the right, beside them from the top, Generate and
    Interrupt, the job's status (its estimate before it runs; its bar, step and time left while it runs) and the
    results, which stay in view while the settings scroll. Returns its fields by API name, "image" and its panels,
    for PNG Info's Send to."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            prompt = control(PROMPT, lines=3, elem_id=f"{mode}-prompt")
            negative = control(NEGATIVE_PROMPT, lines=2, elem_id=f"{mode}-negative")
            prompt_row = gr.Column()  # the extensions' prompt-side panels (LoRA's picker) go here
            images = _image_inputs(mode)
            image_row = gr.Column()  # the extensions' panels about the picture (click to mask) go here
            sampler = control(SAMPLER)
            steps = control(STEPS)
            with gr.Row():
                size = handlers.service.default_size  # the model's; an uploaded image sets its own (below)
                width, height = control(WIDTH, value=size), control(HEIGHT, value=size)
            size_row = gr.Column()  # the extensions' panels about the size (hires fix) go here
            with gr.Row():
                batch_size = control(BATCH_SIZE)
                cfg = control(GUIDANCE)
            seed = control(SEED, widget="number")
            strength = control(STRENGTH, visible=mode != "txt2img")
            context = TabContext(mode, prompt, negative, images[0] if images else None, [width, height], image_file,
                                 lambda editor: editor_image_and_mask(editor)[0],
                                 handlers.service.requests.encoder_text,
                                 lambda editor: editor_image_and_mask(editor)[1])
            panels = _panels(handlers, context, {"prompt": prompt_row, "image": image_row, "size": size_row})
        with gr.Column(scale=2, elem_classes=["studio-results"]):
            with gr.Row():
                generate = gr.Button("Generate", variant="primary", elem_id=f"{mode}-generate", scale=3)
                interrupt = gr.Button("Interrupt", elem_id=f"{mode}-interrupt", scale=2)
            status = gr.HTML(elem_id=f"{mode}-status", elem_classes=["studio-status"])
            gallery = gr.Gallery(label="Results", format="png", columns=2, elem_id=f"{mode}-gallery",
                                 object_fit="contain", height=RESULTS_HEIGHT)
            infotext = gr.Textbox(label="Generation parameters", lines=4, elem_id=f"{mode}-infotext")
            with gr.Row(elem_id=f"{mode}-result-buttons"):
                reuse = gr.Button("♻ Reuse seed", size="sm", elem_id=f"{mode}-reuse-seed")
                own_tabs = [extension.tab_name for extension in handlers.service.extensions
                            if extension.tab_name and extension.tab_takes_pictures]
                sends = {to: gr.Button(f"Send to {to}", size="sm", elem_id=f"{mode}-to-{to}")
                         for to in ("img2img", "inpaint", *own_tabs)}
            notes = gr.Textbox(label="Notes", lines=1, elem_id=f"{mode}-notes")
            shown = gr.State({})  # the results on show (handlers._outputs), for the buttons under them

    fields = {"prompt": prompt, "negative_prompt": negative, "seed": seed, "steps": steps, "guidance_scale": cfg,
              "width": width, "height": height, "sampler": sampler, "batch_size": batch_size}
    image_names = {"txt2img": [], "img2img": ["image"], "inpaint": ["editor", "mask"]}[mode]
    names = ["prompt", *image_names, *SETTINGS] + (["strength"] if mode != "txt2img" else [])
    own = [prompt, *images, *(fields[name] for name in SETTINGS)] + ([strength] if mode != "txt2img" else [])
    outputs = [gallery, infotext, notes, shown, status]
    # The named API endpoints are registered separately (ui/endpoints.py); these events serve the browser only. The
    # status shows the progress (Gradio's own overlay would hide it behind the first preview).
    generating = [panel for panel in panels if not panel.actions]
    generate.click(handlers.tab_event(mode, names, generating),
                   [shown, *own, *(c for p in generating for c in p.inputs)],
                   outputs, api_name=f"{mode}_ui", api_visibility="private", show_progress="hidden", **event)
    for panel in panels:
        for action, button in panel.actions.items():  # e.g. Outpaint: the tab's picture, not its painted mask
            action_names = [name for name in names if name != "mask"]
            action_own = [component for name, component in zip(names, own) if name != "mask"]
            button.click(handlers.tab_event(action, action_names, [panel]), [shown, *action_own, *panel.inputs],
                         outputs, api_name=f"{action}_ui", api_visibility="private", show_progress="hidden",
                         **event)
    # Before Generate: what the job will cost, as its settings change (images are left out: their size is the
    # sliders')
    settings = [(name, component) for name, component in zip(names, own) if name not in ("editor", "image", "mask")]
    estimating = [component for _, component in settings] + [c for p in generating for c in p.inputs]
    gr.on([component.change for component in (width, height, steps, batch_size, cfg, strength, *(
        c for p in generating for c in p.inputs if not isinstance(c, (gr.Image, gr.ImageEditor))))],
          handlers.estimate_event(mode, [name for name, _ in settings], generating), estimating, status,
          queue=False, show_progress="hidden", api_visibility="private")
    # Not queued: it must get through while the generation holds the GPU slot.
    interrupt.click(handlers.interrupt, api_name=f"{mode}_interrupt", queue=False, api_visibility="private")
    gallery.select(select_result, [shown], [infotext, shown], api_name=f"{mode}_select", queue=False,
                   api_visibility="private")
    if mode != "txt2img":
        fields.update(image=images[0], strength=strength)
        images[0].upload(_size_of_upload, images[0], [width, height], queue=False, api_visibility="private")
    return {"fields": fields, "panels": [panel for panel in panels if panel.send is not None],
            "results": {"shown": shown, "reuse": reuse, "sends": sends}}


def _wire_result_buttons(target: dict, tabs: gr.Tabs, targets: dict, own_tabs: dict, extensions) -> None:
    """Under the results: the selected image's seed into this tab's Seed, or the image with its parameters to a
    tab (as PNG Info sends it), or the image alone to an extension's tab (Extras)."""
    results = target["results"]
    results["reuse"].click(lambda shown: selected_result(shown)[2] if shown else gr.update(), [results["shown"]],
                           [target["fields"]["seed"]], queue=False, api_visibility="private")

    def read(shown: dict) -> tuple[dict, str | None]:
        infotext, path, _ = selected_result(shown)
        return (fields_from_infotext(infotext, extensions) if infotext else {}), path

    for mode, button in results["sends"].items():
        if mode in targets:
            send_to(button, tabs, mode, targets[mode], [results["shown"]], read)
        else:
            button.click(lambda shown, mode=mode: (gr.Tabs(selected=mode), _picture(selected_result(shown)[1])),
                         [results["shown"]], [tabs, own_tabs[mode]], queue=False, api_visibility="private")


def _picture(path: str | None):
    return str(servable(path)) if path else gr.update()


def _panels(handlers: Handlers, context: TabContext, places: dict) -> list[Panel]:
    """Each extension's panel, in its place (`places`: a placement -> its container; else under the settings)."""
    panels = []
    for extension in handlers.service.extensions:
        with places.get(extension.placement, contextlib.nullcontext()):
            panel = extension.panel(context)
        if panel is not None:
            panels.append(panel)
    return panels


def _size_of_upload(image):
    """Width and height for an uploaded picture (an editor's value in inpaint): its own size, as the API's default."""
    picture = editor_image_and_mask(image)[0] if isinstance(image, dict) else image
    return size_of_image(picture) if picture is not None else (gr.update(), gr.update())


def _image_inputs(mode: str) -> list:
    if mode == "txt2img":
        return []
    if mode == "img2img":
        return [gr.Image(type="pil", label="Image", elem_id="img2img-image", height=INPUT_HEIGHT,
                         elem_classes=["studio-input"])]
    editor = gr.ImageEditor(
        type="pil",
        label="Image and mask: paint over the area to repaint",
        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
        layers=False,
        height=INPUT_HEIGHT,
        elem_id="inpaint-editor",
    )
    mask_upload = gr.Image(type="pil", image_mode="RGBA", label="Or upload a mask (white = repaint)",
                           elem_id="inpaint-mask", elem_classes=["studio-input"], height=MASK_HEIGHT)
    return [editor, mask_upload]
