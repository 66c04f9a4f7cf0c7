"""The inpaint tab's "Click to mask (SAM)" accordion, under the editor, and gradio_client's /segment.

The accordion shows the editor's picture; each click on it adds a point (Shift+click, or "Click adds: Exclude", an
exclude point), SAM's mask of all the points is painted into the editor as one white layer (what a brush paints
there, so the generation reads it as a painted mask, and one can paint over it or erase it), and the picture
shows the points and the mask."""

from __future__ import annotations

import html

import gradio as gr
from PIL import Image, ImageDraw

from extensions.base import TabContext
from extensions.panel import api_input, gradio_errors
from extensions.segment.fields import IMAGE, LABELS, POINTS
from models.images import load_image

INCLUDE, EXCLUDE = "Include", "Exclude"
PREFIX = "inpaint-segment"
HEIGHT = 360  # px: as the editor above it (ui/layout.py's INPUT_HEIGHT)
SHOWN_SIDE = 1024  # px: the most a picture to click on is sent at (clicks on it are scaled back to the picture's)
COLOURS = {1: (34, 197, 94), 0: (239, 68, 68)}  # a point's dot: include green, exclude red
TINT = (59, 130, 246)  # the mask, over the picture
HINT = ("Click on what to repaint: each click adds a point (<b>Shift+click</b> excludes) and SAM's mask of all the "
        "points replaces the mask painted in the editor, where you can paint over it or erase it.")
# Shift+click: whether Shift was held at each pointer press, recorded for the click's event to read (installed once,
# when the accordion's note is shown; a click event's own data does not carry the keys held).
SHIFT_LISTENER = """
if (!window.sdStudioShift) {
  window.sdStudioShift = {held: false};
  document.addEventListener("pointerdown", (event) => { window.sdStudioShift.held = event.shiftKey; }, true);
}
"""
# runs before the click's handler: Shift held turns "Click adds" into Exclude for this click
CLICK_JS = f"(adds, ...rest) => [window.sdStudioShift?.held ? {EXCLUDE!r} : adds, ...rest]"


def segment_panel(extension, tab: TabContext) -> None:
    with gr.Accordion("Click to mask (SAM)", open=False, elem_id=PREFIX) as accordion:
        note = gr.HTML(_note(extension), js_on_load=SHIFT_LISTENER, elem_id=f"{PREFIX}-note")
        with gr.Row(equal_height=False):
            adds = gr.Radio([INCLUDE, EXCLUDE], value=INCLUDE, label="Click adds", elem_id=f"{PREFIX}-adds",
                            scale=2)
            with gr.Column(scale=3):
                with gr.Row():
                    load = gr.Button("Load picture", size="sm", min_width=100, elem_id=f"{PREFIX}-load")
                    undo = gr.Button("Undo point", size="sm", min_width=100, elem_id=f"{PREFIX}-undo")
                    clear = gr.Button("Clear points", size="sm", min_width=100, elem_id=f"{PREFIX}-clear")
        # not enlarged by the page (Gradio reads a click's pixel only on a picture shown at most at its size): a
        # small picture is sent enlarged by a whole factor instead, and a large one reduced (`_scale`)
        clicks = gr.Image(type="pil", format="png", label="Click on the picture (Shift+click: exclude)",
                          interactive=False, height=HEIGHT, elem_id=f"{PREFIX}-image",
                          elem_classes=["studio-clickable"])
    picture, points = gr.State(None), gr.State([])  # the editor's picture as loaded, and [x, y, label] per point
    private = {"api_visibility": "private"}

    def loaded(editor):
        """The editor's picture to click on, with no points yet."""
        new = tab.editor_image(editor)
        return new, [], _shown(new, Image.new("L", new.size, 0), []) if new is not None else None, _note(extension)

    def opened(editor, shown):
        """The editor's picture, unless it is the one shown (whose points stay)."""
        new = tab.editor_image(editor)
        return (gr.skip(),) * 4 if _same(new, shown) else loaded(editor)

    def masked(editor, shown, kept: list) -> tuple:
        """(the picture, the points, the picture showing them and their mask, the editor with the mask painted); if
        the editor has another picture by now (an upload, Send to), that one to click on instead, the points gone."""
        if not _same(tab.editor_image(editor), shown):
            gr.Info("Click to mask: the editor has another picture; click on it here")
            return (*loaded(editor)[:3], gr.skip())
        mask = _mask(extension, shown, kept)
        return gr.skip(), kept, _shown(shown, mask, kept), _editor(shown, mask, tab.image_file)

    def clicked(mode, editor, shown, kept, event: gr.SelectData):
        if shown is None:
            return (gr.skip(),) * 4
        scale = _scale(shown.size)
        x, y = (min(side - 1, int(index / scale)) for side, index in zip(shown.size, event.index))
        return masked(editor, shown, [*kept, [x, y, 0 if mode == EXCLUDE else 1]])

    def undone(editor, shown, kept):
        return masked(editor, shown, kept[:-1]) if shown is not None and kept else (gr.skip(),) * 4

    def cleared(editor, shown):
        return masked(editor, shown, []) if shown is not None else (gr.skip(),) * 4

    # Progress shows on the note only: over the picture it would catch the next click, and over the editor it can
    # stay after the editor's own events (gradio 6.31). Clicks made while one runs each run, in order. The editor's
    # upload event is not followed: it also fires when the page resizes, and after each mask written into it.
    quiet = {"show_progress": "hidden", **private}
    load.click(loaded, tab.image, [picture, points, clicks, note], **quiet)
    accordion.expand(opened, [tab.image, picture], [picture, points, clicks, note], **quiet)
    changed, shown_on = [picture, points, clicks, tab.image], {"show_progress_on": note, **private}
    clicks.select(clicked, [adds, tab.image, picture, points], changed, js=CLICK_JS, trigger_mode="multiple",
                  **shown_on)
    undo.click(undone, [tab.image, picture, points], changed, **shown_on)
    clear.click(cleared, [tab.image, picture], changed, **shown_on)


def _same(picture: Image.Image | None, other: Image.Image | None) -> bool:
    """Whether two pictures are the same, pixel for pixel (the editor hands back the PNG written into it as it is)."""
    return picture is not None and other is not None and picture.size == other.size and \
        picture.tobytes() == other.tobytes()


def _mask(extension, picture: Image.Image, points: list) -> Image.Image:
    """SAM's mask of the points ([x, y, label] each); empty without an include point. Without SAM's weights, any
    point is refused (saying what to put where)."""
    with gradio_errors("Click to mask"):
        missing = extension.missing() if points else None
        if missing:
            raise ValueError(missing)
        if not any(label == 1 for _, _, label in points):  # exclude points alone select nothing
            return Image.new("L", picture.size, 0)
        return extension.mask(picture, [point[:2] for point in points], [point[2] for point in points])


def _editor(picture: Image.Image, mask: Image.Image, image_file) -> dict:
    """The editor's value with `mask` painted as one white layer (the brush's colour; the tab reads the layers'
    alpha), as PNG files: a picture the editor gets as such would reach it as lossy WebP, and the generation
    with it."""
    layer = Image.new("RGBA", picture.size, (255, 255, 255, 0))
    layer.putalpha(mask)
    composite = Image.composite(Image.new("RGB", picture.size, "white"), picture, mask)
    return {"background": image_file(picture, "picture.png"), "layers": [image_file(layer, "mask.png")],
            "composite": image_file(composite, "composite.png")}


def _scale(size: tuple[int, int]) -> float:
    """How many times larger a picture is shown to click on: a small one fills about the editor's height (a whole
    factor: crisp pixels), a large one is at most SHOWN_SIDE px (a lighter page on every click)."""
    width, height = size
    if max(size) > SHOWN_SIDE:
        return SHOWN_SIDE / max(size)
    return max(1, min(HEIGHT // height, HEIGHT * 3 // 2 // width))


def _shown(picture: Image.Image, mask: Image.Image, points: list) -> Image.Image:
    """The picture to click on (scaled by `_scale`) with the mask tinted and a dot on each point."""
    scale = _scale(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    resample = Image.NEAREST if scale >= 1 else Image.BILINEAR
    picture, mask = picture.resize(size, resample), mask.resize(size, Image.NEAREST)
    shown = Image.composite(Image.blend(picture, Image.new("RGB", size, TINT), 0.45), picture, mask)
    draw = ImageDraw.Draw(shown)
    radius = max(4, round(max(size) / 80))
    for x, y, label in points:
        x, y = (x + 0.5) * scale, (y + 0.5) * scale  # the pixel's centre
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=COLOURS[label], outline="white",
                     width=max(1, radius // 3))
    return shown


def _note(extension) -> str:
    missing = extension.missing()
    return f"<p>⚠️ {html.escape(missing)}</p>" if missing else f"<p>{HINT}</p>"


def segment_endpoint(extension, image_file) -> None:
    """/segment for gradio_client: the mask SAM makes of an image for clicked points."""
    def segment(image, points, labels=None):
        """The mask (white: selected) of what the points show in the image, at the image's size."""
        with gradio_errors("segment"):
            picture = load_image(image, IMAGE.name)
            if picture is None:
                raise ValueError("image is required: the picture to select in")
            return image_file(extension.mask(picture, points, labels), "mask.png")

    inputs = [api_input(IMAGE, required=True), api_input(POINTS, required=True), api_input(LABELS)]
    gr.Button(visible=False).click(segment, inputs, gr.Image(type="pil", format="png", label="mask"),
                                   api_name="segment")
