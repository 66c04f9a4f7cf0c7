"""The History tab: the saved outputs, newest first, a page at a time, filtered by their text. A click shows an
image's infotext (the gallery opens it at full size); it can be deleted, or sent to a tab or to PNG Info."""

from __future__ import annotations

import gradio as gr

from extensions.base import Extension
from models.files import servable
from service.history import History
from service.pnginfo import fields_from_infotext
from ui.send import send_to


def history_tab(tabs: gr.Tabs, targets: dict[str, dict], png_info_source: gr.Image, history: History,
                extensions: list[Extension]) -> None:
    with gr.Tab("History", id="history") as tab:
        with gr.Row():
            query = gr.Textbox(label="Filter", placeholder="words from the prompt or parameters", scale=4,
                               elem_id="history-filter")
            refresh = gr.Button("Refresh", scale=1, elem_id="history-refresh")
        with gr.Row():
            previous = gr.Button("◀ Newer", size="sm", elem_id="history-previous")
            where = gr.Markdown(elem_id="history-page")
            following = gr.Button("Older ▶", size="sm", elem_id="history-next")
        gallery = gr.Gallery(label="Saved images", columns=6, height="auto", format="png", elem_id="history-gallery")
        infotext = gr.Textbox(label="Generation parameters", lines=4, elem_id="history-infotext")
        with gr.Row():
            delete = gr.Button("Delete", variant="stop", size="sm", elem_id="history-delete")
            sends = {mode: gr.Button(f"Send to {mode}", size="sm", elem_id=f"history-to-{mode}") for mode in targets}
            to_png_info = gr.Button("Send to PNG Info", size="sm", elem_id="history-to-pnginfo")
        shown = gr.State({})  # {"query", "number", "files", "infotexts", "selected"}: the page on show

    def show(text: str, number: int, note: str = ""):
        page = history.page(text or "", number)
        state = {"query": text or "", "number": page.number, "files": [str(path) for path in page.files],
                 "infotexts": page.infotexts, "selected": None}
        images = [(str(servable(path)), text) for path, text in zip(page.files, page.captions)]
        found = f"{page.total} image{'s' if page.total != 1 else ''}" + (f" matching {text.strip()!r}" if text else "")
        summary = f"page {page.number} of {page.pages} · {found}" + (f" · {note}" if note else "")
        return images, summary, "", state

    def turn(state: dict, by: int):
        return show(state.get("query", ""), state.get("number", 1) + by)

    def remove(state: dict):
        path = _selected(state)[1]
        if path is None:
            raise gr.Error("Delete: click an image first")
        try:
            history.delete(path)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        return show(state["query"], state["number"], note=f"deleted {path.rsplit('/', 1)[-1]}")

    outputs = [gallery, where, infotext, shown]
    private = {"queue": False, "api_visibility": "private"}
    for event in (tab.select, refresh.click, query.submit):
        event(lambda text: show(text, 1), [query], outputs, **private)
    previous.click(lambda state: turn(state, -1), [shown], outputs, **private)
    following.click(lambda state: turn(state, +1), [shown], outputs, **private)
    delete.click(remove, [shown], outputs, **private)
    gallery.select(_select, [shown], [infotext, shown], **private)

    def read(state: dict) -> tuple[dict, str | None]:
        text, path = _selected(state)
        if path is None:
            raise gr.Error("Send to: click an image first")
        return (fields_from_infotext(text, extensions) if text else {}), path

    for mode, target in targets.items():
        send_to(sends[mode], tabs, mode, target, [shown], read)
    to_png_info.click(lambda state: (gr.Tabs(selected="pnginfo"), str(servable(read(state)[1]))), [shown],
                      [tabs, png_info_source], **private)


def _select(state: dict, event: gr.SelectData):
    if not state or not 0 <= event.index < len(state["files"]):
        return "", state
    return state["infotexts"][event.index], {**state, "selected": event.index}


def _selected(state: dict) -> tuple[str | None, str | None]:
    """(infotext, file) of the clicked image; Nones before a click."""
    if not state or state.get("selected") is None:
        return None, None
    return state["infotexts"][state["selected"]], state["files"][state["selected"]]

