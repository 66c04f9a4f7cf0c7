"""Gradio-facing handlers: component values become plain fields by their API names (`gradio_client` calls
`/txt2img` with `prompt=`, `seed=`, ...), the service builds the typed request from them, and its errors become
gr.Error."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import logging
from collections.abc import Callable

import gradio as gr
from PIL import Image
from starlette.concurrency import run_in_threadpool

from extensions.base import Panel
from extensions.panel import gradio_errors
from models.files import content_file, servable
from models.limits import TooLarge
from models.zerogpu import MODES as ZEROGPU_MODES
from models.zerogpu import duration_from_call, gpu
from service.queue import polled, queue_message
from service.requests import IMAGE_SIZED
from service.studio import Generation, StudioService
from ui.status import JobStatus, error_line, estimate_line

log = logging.getLogger(__name__)

class Handlers:
    def __init__(self, service: StudioService):
        self.service = service
        # each endpoint's fields with their defaults there: the core's, then each extension's; the size is the
        # model's, or for img2img and inpaint 0 (the input image's own)
        self.fields = {mode: tuple(dataclasses.replace(field, default=0 if mode in IMAGE_SIZED else
                                                       service.default_size)
                                   if field.name in ("width", "height") else field for field in fields)
                       for mode, fields in service.requests.endpoints().items()}
        # The functions behind the named endpoints, whose parameters are the fields. On a ZeroGPU Space each holds a
        # GPU for a duration estimated from its own arguments; elsewhere gpu() returns the function itself.
        # Elsewhere they wait for the queue asynchronously, so a cancelled event (a gradio_client job.cancel(), a
        # closed tab) cancels its job.
        self.api = {}
        for mode, fields in self.fields.items():
            fields = [field.name for field in fields]
            if service.direct:
                function = _with_parameters(lambda progress=None, mode=mode, **values: self.run(mode, values, progress),
                                            fields, mode)
                on_gpu = mode in ZEROGPU_MODES
                duration = duration_from_call(function, mode, lambda: service.manager.family.key)
                self.api[mode] = gpu(function, duration) if on_gpu else function
            else:
                self.api[mode] = _with_parameters(self._queued(mode), fields, mode)

    def run(self, mode: str, fields: dict, progress: gr.Progress | None = None):
        """Build the typed request from the fields, run it; errors become gr.Error naming the field and value."""
        with _as_gradio_errors(mode):
            result = self.service.run(mode, fields, _progress_reporter(progress))
        return _outputs(result)

    def _queued(self, mode: str) -> Callable:
        async def queued(progress=None, **values):
            async for outputs in self.run_queued(mode, values, progress):
                yield outputs

        return queued

    async def run_queued(self, mode: str, fields: dict, progress: gr.Progress | None = None, ui: bool = False):
        """`run` through the queue, waited for without holding a thread: yields the job's live previews as they come
        (gradio_client's `job.outputs()`), then its result. While it waits, the progress says its place in the
        queue. When Gradio cancels the event, the job leaves the queue (or stops inside its current step).
        For the UI (`ui`), every change of the job's status (ui/status.py) and every preview is yielded, with the
        status as a fifth output; the infotext, notes and results' state stay as they are until the end."""
        with _as_gradio_errors(mode):
            request, warnings = await run_in_threadpool(self.service.build, mode, fields)
            job = self.service.submit(request, warnings)
            report, reported, shown = _progress_reporter(progress), 0, None
            status = JobStatus(self.service.total_estimate(request))
            async with contextlib.aclosing(polled(job, self.service.queue)) as polls:
                async for _ in polls:
                    line = ""
                    if job.state == "waiting":
                        ahead = self.service.queue.position(job)
                        line = status.waiting(ahead)
                        if progress is not None:
                            progress(0, desc=f"waiting in the queue: {ahead} ahead" if ahead else "starting")
                    elif job.steps:
                        line = status.running(job.step, job.steps)
                    if job.step != reported:
                        reported = job.step
                        report(job.step, job.steps)
                    preview = job.preview if job.preview is not None and job.preview is not shown else None
                    if preview is not None:
                        shown = preview
                    if ui and (status.changed(line) or preview is not None):
                        gallery = [(preview, f"step {job.step}/{job.steps}")] if preview is not None else gr.update()
                        yield gallery, gr.update(), gr.update(), gr.update(), line
                    elif not ui and preview is not None:
                        yield [(preview, f"step {job.step}/{job.steps}")], "", "", []
            result = job.outcome()
        if ui:  # the warnings are in the notes and the status says so: no toast over the controls
            yield (*_outputs(result, toasts=False), status.finished(job.step, job.steps, result.interrupted,
                                                                   len(result.warnings)))
        else:
            yield _outputs(result)

    def tab_event(self, mode: str, names: list[str], panels: list[Panel]) -> Callable:
        """A tab's generate event: the results shown now, its own components (by field name; "editor" for
        inpaint's image editor, whose painted mask is used unless a mask image was uploaded), then each panel's
        inputs. When it fails, the results shown before come back (not a live preview of the failed job) and the
        status keeps the error after its toast has gone."""
        async def event(shown, *values, progress=gr.Progress()):
            try:
                async for output in self._tab_outputs(mode, names, panels, values, progress):
                    yield output
            except gr.Error as error:  # shown beside Generate and in the notes: a toast would cover the controls
                yield ((shown or {}).get("gallery", []), gr.update(), f"error: {error.message}", shown or {},
                       error_line(error.message))
                raise gr.Error(error.message, visible=False) from None

        return event

    def estimate_event(self, mode: str, names: list[str], panels: list[Panel]) -> Callable:
        """What a tab's job would cost with its settings as they are: the status line before Generate (nothing for
        a short job; the refusal, saying what to lower, for one over the budget)."""
        def event(*values) -> str:
            fields = self._fields(names, panels, values)
            fields.pop("mask", None)
            if mode != "txt2img":  # its image is not sent: the same job's cost as txt2img over its denoised steps
                steps, strength = fields.pop("steps", 20), fields.pop("strength", 1)
                try:
                    fields["steps"] = max(1, int(float(steps) * float(strength)))
                except (TypeError, ValueError):
                    return ""
            takes = {field.name for field in self.fields["txt2img"]}
            try:
                request, _ = self.service.build("txt2img", {key: value for key, value in fields.items()
                                                            if key in takes})
            except TooLarge as error:
                return estimate_line(None, str(error))
            except ValueError:
                return ""  # a value being typed: Generate names it
            return estimate_line(self.service.total_estimate(request))

        return event

    @staticmethod
    def _fields(names: list[str], panels: list[Panel], values) -> dict:
        """A tab's values by field name: its own, then each panel's collected."""
        fields, rest = dict(zip(names, values)), list(values[len(names):])
        for panel in panels:
            fields.update(panel.collect(rest[: len(panel.inputs)]))
            rest = rest[len(panel.inputs):]
        return fields

    async def _tab_outputs(self, mode: str, names: list[str], panels: list[Panel], values, progress):
        """A tab's values as the fields of its endpoint, run: its outputs as they come."""
        fields = self._fields(names, panels, values)
        if "editor" in fields:
            image, painted = editor_image_and_mask(fields.pop("editor"))
            fields["image"] = image
            if "mask" in fields:
                fields["mask"] = fields["mask"] if fields["mask"] is not None else painted
        if self.service.direct:  # on ZeroGPU: the endpoint's function, which holds a GPU while it runs
            yield (*self.api[mode](**fields, progress=progress), "")
        else:  # live previews, then the result
            async for output in self.run_queued(mode, fields, progress, ui=True):
                yield output

    def interrupt(self) -> None:
        self.service.interrupt()


def _with_parameters(function: Callable, names: list[str], mode: str) -> Callable:
    """`function` with a signature naming each field (and gr.Progress): Gradio reads it for the API's parameter
    names and the progress parameter, ZeroGPU's duration estimate for the call's values."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD  # Gradio finds gr.Progress among these only
    parameters = [inspect.Parameter(name, kind) for name in names]
    parameters.append(inspect.Parameter("progress", kind, default=gr.Progress()))

    if inspect.isasyncgenfunction(function):  # Gradio iterates it in its own event loop: intermediate outputs
        async def endpoint(*args, **kwargs):
            async for outputs in function(**dict(zip([*names, "progress"], args), **kwargs)):
                yield outputs
    else:
        def endpoint(*args, **kwargs):
            return function(**dict(zip([*names, "progress"], args), **kwargs))

    endpoint.__signature__ = inspect.Signature(parameters)
    endpoint.__name__ = endpoint.__qualname__ = mode
    return endpoint


def _progress_reporter(progress: gr.Progress | None) -> Callable[[int, int], None]:
    def on_step(done: int, total: int) -> None:
        if progress is not None:
            progress((done, total), desc="Sampling", unit="steps")

    return on_step


@contextlib.contextmanager
def _as_gradio_errors(mode: str):
    """The queue's errors in their words (service.queue.QUEUE_ERRORS); the rest as every gradio handler tells them
    (bad input by its message, anything else by its kind: extensions.panel.gradio_errors)."""
    with gradio_errors(mode):
        try:
            yield
        except Exception as error:
            message = queue_message(error, mode)
            if message is None:
                raise
            raise gr.Error(message) from None


def _outputs(result: Generation, toasts: bool = True):
    """The gallery, the first image's infotext, the warnings (as toasts too, for gradio_client's log), and what is
    shown (for the buttons under it)."""
    for warning in result.warnings if toasts else ():
        gr.Warning(warning)
    gallery = [(str(servable(path)), f"seed {seed}") for path, seed in zip(result.files, result.seeds)]
    shown = {"gallery": gallery, "files": [str(path) for path in result.files], "infotexts": result.infotexts,
             "seeds": result.seeds, "selected": 0}
    return gallery, result.infotexts[0] if result.infotexts else "", "\n".join(result.warnings), shown


def editor_image_and_mask(editor) -> tuple[Image.Image | None, Image.Image | None]:
    """gr.ImageEditor gives {"background", "layers", "composite"}; the painted mask is the layers' alpha."""
    if not editor or editor.get("background") is None:
        return None, None
    background = editor["background"]
    mask = Image.new("L", background.size, 0)
    for layer in editor.get("layers") or []:
        if layer is not None and layer.mode == "RGBA":
            alpha = layer.getchannel("A").resize(background.size)
            mask.paste(255, mask=alpha.point(lambda a: 255 if a > 0 else 0))
    return background.convert("RGB"), mask


def select_result(shown: dict, event: gr.SelectData) -> tuple[str, dict]:
    """A click on a result: its infotext, and it becomes the one the buttons under the results act on."""
    if not shown or not 0 <= event.index < len(shown["infotexts"]):
        return "", shown
    return shown["infotexts"][event.index], {**shown, "selected": event.index}


def selected_result(shown: dict) -> tuple[str | None, str | None, int | None]:
    """(infotext, file, seed) of the result the buttons under the results act on; Nones before any."""
    if not shown or not shown.get("files"):
        return None, None, None
    index = shown["selected"]
    return shown["infotexts"][index], shown["files"][index], shown["seeds"][index]


def image_file(image: Image.Image, name: str = "image.png") -> str:
    """An image (a control map, an upscaled picture) as a PNG file of that name in a folder named by its content.
    Returned as a PIL image, Gradio would rewrite one cache file in place for every equal image, and a client
    downloading it meanwhile could get it empty."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return str(content_file(buffer.getvalue(), name))
