"""The studio service: the one place every interface (UI, gradio_client, REST) goes through.

An interface builds a typed request with `build` (service/requests.py) and submits it to the one job queue
(service/queue.py: first come, first served, bounded, compatible jobs batched), whose workers hand each call to the
backend: here (`compose_together`: the extensions prepare each job in the order they were registered, the shared
manager runs them, the extensions' finishing steps apply to the images) or on Ray Serve replicas that do the same
(service/ray_backend.py). Each image is then saved here as a PNG carrying A1111's infotext (service/saving.py).
Bad input raises ValueError naming the field and the value; the interfaces turn that into gr.Error or an HTTP error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from extensions.base import SOLO, Extension, PreparedRequest, ScriptPlan, Services
from models.infotext import for_image
from models.limits import TooLarge
from models.manager import GenerationResult, PipelineManager, PreviewCallback, StepCallback
from models.request import GenerationRequest
from models.sampler_names import BATCHING_SAMPLERS
from service import saving
from service.jobs import JobState, JobTracker
from service.queue import JobQueue, QueuedJob, wait_for
from service.requests import RequestBuilder
from service.saving import Generation
from service.scripts import ScriptRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Composed:
    """A job's finished images and their infotexts, before they are saved (what a Ray replica sends back)."""
    mode: str
    images: list[Image.Image]
    infotexts: list[str]
    seeds: list[int]
    warnings: list[str]
    interrupted: bool


Submission = tuple[GenerationRequest, Sequence[str]]  # a queued job's request and its warnings so far


class Backend(Protocol):
    concurrency: int  # the calls it runs at once

    def run(self, submissions: Sequence[Submission], on_step: StepCallback, on_preview: PreviewCallback,
            stop: threading.Event) -> list:
        """The jobs as one call: each one's Composed, or the exception it failed with. `on_preview` gets a job's
        (index in `submissions`) live preview; `stop` is set to end the call after its current step."""

    def interrupt(self) -> None:
        """Stop what runs now after its current step (besides setting the calls' `stop`)."""

    def metrics(self) -> dict:
        """What /studio/v1/queue adds about the backend."""

    def close(self) -> None:
        """The server is going away."""


class LocalBackend:
    """The in-process pipeline manager: one call at a time."""
    concurrency = 1

    def __init__(self, service: StudioService):
        self.service = service

    def run(self, submissions: Sequence[Submission], on_step: StepCallback, on_preview: PreviewCallback,
            stop: threading.Event) -> list:
        return self.service.compose_together(submissions, on_step, on_preview)

    def interrupt(self) -> None:
        self.service.manager.interrupt()

    def metrics(self) -> dict:
        return {"backend": "local"}

    def close(self) -> None:
        pass


def with_settings(manager: PipelineManager, config, compile_unet: bool = True, calibrate: bool = True) -> None:
    """The app's settings (its AppConfig) on a newly loaded manager, once the extensions are installed on it: live
    previews, torch.compile (after the extensions that add layers to the U-Net), warmed up at the model's size so
    that the first user does not wait for the compile, and the work budget's measure of this device."""
    manager.set_previews(config.live_preview, config.preview_every, config.taesd)
    if config.compile and compile_unet:
        manager.compile_unet()
        manager.warm_up()
    if calibrate:
        manager.calibrate()


FAR_BEYOND_NATIVE = 16  # pixels over the model's native size's that earn a warning (4x a side)
INTERRUPTED = "Interrupted"  # the infotext entry of an image interrupted before its last step


class StudioService:
    def __init__(self, manager: PipelineManager, output_dir: str | Path, extensions: Sequence[Extension] = (),
                 notice: str = "", after_install: Callable[[PipelineManager], None] | None = None,
                 queue_size: int = 16, direct: bool = False, max_batch: int = 1, batch_wait: float = 0.0,
                 backend: Callable[[StudioService], Backend] = LocalBackend, max_job_seconds: float = 0):
        """`after_install`: called with each manager once the extensions are installed on it (the app compiles
        the U-Net there: after the extensions that add layers to it). `queue_size`: the jobs that may wait.
        `direct`: run each job in the caller's thread instead of the queue's (ZeroGPU, where a job runs in the
        GPU worker process that the calling function is moved to). `max_batch`: the most images compatible jobs
        make in one call; `batch_wait`: how long (seconds) a job that could take more waits for company.
        `backend`: makes what runs the calls (LocalBackend, or service.ray_backend's). `max_job_seconds`: a job
        estimated to take longer is refused before it waits (0: no limit)."""
        self.extensions = list(extensions)
        self.after_install = after_install
        self.manager = self._installed(manager)
        self.output_dir = Path(output_dir)
        self.notice = notice  # e.g. "fell back to the demo model because ..."
        self.requests = RequestBuilder(self.extensions)
        self.jobs = JobTracker()
        self.backend = backend(self)
        self._stops: dict[int, threading.Event] = {}  # a running call's first job number -> its stop
        self.queue = JobQueue(queue_size, self._stop, max_batch=1 if direct else max_batch, batch_wait=batch_wait,
                              run_together=self._run_call, concurrency=self.backend.concurrency)
        self.direct = direct
        self.max_job_seconds = max_job_seconds
        self.outputs = saving.OutputFolder(self.output_dir)
        self.model_loader: Callable[[str], PipelineManager] | None = None  # set by the app to allow switching
        self.checkpoints: Callable[[], list[str]] = lambda: []  # the checkpoint names a client may switch to
        self.checkpoint_families: Callable[[], dict[str, str]] = lambda: {}  # their families, where told
        self.model_name = "demo"  # the model in use, by the name it was chosen with (the app sets the first)
        self.startup_model = "demo"  # the model the app was started with (--model)
        self._scripts: set[ScriptRun] = set()  # the scripts running now
        services = Services(run_task=self.run_task, interrupt=self.interrupt, model=lambda: self.manager,
                            models_here=isinstance(self.backend, LocalBackend),
                            scripts=lambda: [script for extension in self.extensions for script in extension.scripts()],
                            prompt_parts=lambda prompt: {extension.name: extension.prompt_part(prompt)
                                                         for extension in self.extensions if extension.reads_prompt})
        for extension in self.extensions:
            extension.attach(services)

    # -- facts for the interfaces -----------------------------------------------------------------------

    def system_line(self) -> str:
        return self.manager.describe()

    @property
    def default_size(self) -> int:
        return self.manager.default_size

    @property
    def state(self) -> JobState:
        return self.jobs.state

    def extension(self, name: str) -> Extension | None:
        return next((extension for extension in self.extensions if extension.name == name), None)

    def queue_metrics(self) -> dict:
        queue = self.queue
        return {"waiting": queue.waiting, "running": len(queue.running), "max_waiting": queue.max_waiting,
                "max_batch": queue.max_batch, "batch_wait_ms": round(queue.batch_wait * 1000),
                "calls_by_jobs": {str(jobs): calls for jobs, calls in sorted(queue.calls.items())},
                **self.backend.metrics()}

    def interrupt(self) -> None:
        """Stop what runs now after its current step; its images come back as they are then."""
        self.jobs.state.interrupted = self.jobs.state.running
        for script in list(self._scripts):
            script.stop()
        self.queue.stop_running()
        self.backend.interrupt()

    def _stop(self, call: Sequence[QueuedJob]) -> None:
        stop = self._stops.get(call[0].number)
        if stop is not None:
            stop.set()
        self.backend.interrupt()

    def switch_model(self, spec: str) -> None:
        """Load another base model and make it the one every request uses (A1111's sd_model_checkpoint), with the
        extensions installed on it. Waits for the running job; the current model stays in use if the new one fails
        to load."""
        if self.model_loader is None:
            raise ValueError("sd_model_checkpoint: switching models is not available in this app")
        with self.manager.lock:
            manager = self.model_loader(spec)
            if manager is not self.manager:
                self.manager = self._installed(manager)
            self.model_name = spec

    def model_choices(self) -> list[tuple[str, str]]:
        """What the UI's model dropdown offers, as (label, name): the model in use, demo, the startup model, the
        checkpoint folder's; each label names the model's family where it is known ("name · SDXL")."""
        families = {**self.checkpoint_families(), "demo": "SD 1.x", self.model_name: self.manager.family.name}
        names = dict.fromkeys([self.model_name, "demo", self.startup_model, *self.checkpoints()])
        return [(f"{name} · {families[name]}" if name in families else name, name) for name in names]

    def _installed(self, manager: PipelineManager) -> PipelineManager:
        for extension in self.extensions:
            extension.install(manager)
        if self.after_install is not None:
            self.after_install(manager)
        return manager

    # -- generation -------------------------------------------------------------------------------------

    def build(self, mode: str, fields: Mapping[str, Any]) -> tuple[GenerationRequest, list[str]]:
        """A typed request from an endpoint's plain fields, and warnings for the user. A job estimated to take
        longer than `max_job_seconds` is refused (models.limits.TooLarge), with what to lower."""
        request, warnings = self.requests.build(mode, fields)
        seconds = self.estimate(request)
        if seconds is not None and self.max_job_seconds and seconds > self.max_job_seconds:
            raise TooLarge(self._over_budget(request, seconds))
        native = self.default_size
        if request.width * request.height > FAR_BEYOND_NATIVE * native * native:
            about = f" (this job: about {duration(seconds)} here)" if seconds is not None else ""
            warnings.append(
                f"{request.width}x{request.height} is far beyond this model's native {native}x{native}: each step "
                f"takes at least {request.width * request.height / native ** 2:.0f}x as long{about}, and the model "
                "may repeat or stretch what it draws")
        return request, warnings

    def estimate(self, request: GenerationRequest) -> float | None:
        """The seconds `request` should take on this process's model (None where the jobs run elsewhere: on Ray
        Serve replicas, or on ZeroGPU's borrowed GPU)."""
        if self.direct or not isinstance(self.backend, LocalBackend):
            return None
        return self.manager.estimate(request, [each for extension in self.extensions
                                               for each in extension.passes(request)])

    def total_estimate(self, request: GenerationRequest) -> float | None:
        """`estimate`, times the jobs of the script the request asks for (the budget bounds each job, not a
        script; the status line shows the whole)."""
        seconds, plan = self.estimate(request), self.script_plan(request)
        return seconds * plan.size if seconds is not None and plan is not None else seconds

    def _over_budget(self, request: GenerationRequest, seconds: float) -> str:
        native = self.default_size
        smaller = self.manager.estimate(request.replace(width=native, height=native))  # without added passes
        lower = ["the width and height" + (f" (about {duration(smaller)} at {native}x{native})"
                                           if request.width * request.height > native * native else ""),
                 "the steps"]
        if request.batch_size > 1:
            lower.append("the batch size")
        if any(extension.passes(request) for extension in self.extensions):
            lower.append("hires fix's size")
        return (f"{request.mode} at {request.width}x{request.height}, {request.steps} steps, batch size "
                f"{request.batch_size} would take about {duration(seconds)} on this {self.manager.runtime.device.type}"
                f"; a job may take at most {duration(self.max_job_seconds)} here (--max-job-seconds): lower "
                f"{', '.join(lower[:-1])} or {lower[-1]}")

    def run(self, mode: str, fields: Mapping[str, Any], on_step: StepCallback | None = None) -> Generation:
        """`build`, then the job through the queue, waited for here (what the UI and gradio_client do); `on_step`
        is called from this thread as the job's steps advance. Raises QueueFull when the queue has no room."""
        request, warnings = self.build(mode, fields)
        if self.direct:
            if self.script_plan(request) is not None:  # its jobs would run outside the borrowed GPU
                raise ValueError("script_name: scripts run their jobs through the job queue, which this deployment "
                                 "(ZeroGPU) does not use")
            return self.generate(request, warnings, on_step)
        return wait_for(self.submit(request, warnings), on_step)

    def run_task(self, steps: int, work: Callable[[PipelineManager, threading.Event, StepCallback], Any],
                 on_step: StepCallback | None = None) -> Any:
        """A job that is not a generation (an upscale, a training run) through the one queue, alone: it holds the
        device (this process's model's lock) while it runs, and generations wait behind it in the queue.
        `work(manager, stop, step)` reports its progress with `step(done, total)` and ends early once Interrupt sets
        `stop`; `on_step` is called from this thread as the steps advance. Raises QueueFull when the queue has no
        room."""
        def run(job: QueuedJob):
            stop = self._stops[job.number] = threading.Event()

            def step(done: int, total: int) -> None:
                self.jobs.step(done, total)
                job.on_step(done, total)

            try:
                with self.jobs.tracking(steps), self.manager.lock:
                    return work(self.manager, stop, step)
            finally:
                del self._stops[job.number]

        if self.direct:  # ZeroGPU: in the caller's thread, as its generations
            return run(QueuedJob(run, 0))
        return wait_for(self.queue.submit(run), on_step)

    def submit(self, request: GenerationRequest, warnings: Sequence[str] = ()) -> QueuedJob | ScriptRun:
        """The request as a job in the queue (QueueFull when it has no room); `job.outcome()` is its Generation. A
        request for a script (an X/Y/Z plot) runs the script's jobs instead, through the queue (service/scripts.py)."""
        plan = self.script_plan(request)
        if plan is not None:
            run = ScriptRun(self, request.mode, plan, list(warnings))
            self._scripts.add(run)
            return run
        return self.queue.submit(lambda job: self._run_call([job])[0], key=self.batch_key(request),
                                 size=request.batch_size, payload=(request, list(warnings)))

    def script_plan(self, request: GenerationRequest) -> ScriptPlan | None:
        return next((plan for extension in self.extensions if (plan := extension.script_plan(request)) is not None),
                    None)

    def forget_script(self, run: ScriptRun) -> None:
        self._scripts.discard(run)

    def batch_key(self, request: GenerationRequest) -> Hashable | None:
        """Requests with equal keys can share one diffusers call: same mode, size, steps, sampler, CFG, strength
        and extension parts (LoRA set, clip skip, ...); prompts, seeds, images and masks may differ. None: alone
        (batching is off, or its sampler moves batched pixels too far, or an extension says so)."""
        if self.queue.max_batch <= 1 or request.sampler not in BATCHING_SAMPLERS:
            return None
        parts = tuple(extension.batch_key(request) for extension in self.extensions)
        if any(part is SOLO for part in parts):
            return None
        key = (request.mode, request.width, request.height, request.steps, request.sampler,
               request.guidance_scale, request.strength if request.mode != "txt2img" else None, parts)
        try:
            hash(key)
        except TypeError:  # a part holding images: it cannot be compared cheaply, so it runs alone
            return None
        return key

    def close(self, wait: float = 0) -> None:
        """Cancel the waiting jobs and stop the running ones: the server is going away. `wait`: seconds to wait for
        the running ones' threads to end (before the interpreter does: a thread inside torch then aborts it)."""
        self.queue.close()
        for script in list(self._scripts):
            script.cancel()
        self.interrupt()
        if wait:
            self.queue.join(wait)
        self.backend.close()

    def generate(self, request: GenerationRequest, warnings: Sequence[str] = (),
                 on_step: StepCallback | None = None) -> Generation:
        """One job here and now, outside the queue (ZeroGPU's direct calls, tests)."""
        def step(done: int, total: int) -> None:
            self.jobs.step(done, total)
            if on_step is not None:
                on_step(done, total)

        with self.jobs.tracking(request.steps):
            [outcome] = self.compose_together([(request, warnings)], step)
        if isinstance(outcome, Exception):
            raise outcome
        return self._saved(outcome)

    def _run_call(self, queued: Sequence[QueuedJob]) -> list:
        """Queued jobs as one call on the backend (on a queue worker); each one's saved Generation, or its error."""
        def on_step(done: int, total: int) -> None:
            self.jobs.step(done, total)
            for job in queued:
                job.on_step(done, total)

        def on_preview(index: int, picture: Image.Image) -> None:
            queued[index].preview = self.jobs.state.current_image = picture

        stop = self._stops[queued[0].number] = threading.Event()
        try:
            with self.jobs.tracking(queued[0].payload[0].steps):
                outcomes = self.backend.run([job.payload for job in queued], on_step, on_preview, stop)
        finally:
            del self._stops[queued[0].number]
        return [self._saved(outcome) if isinstance(outcome, Composed) else outcome for outcome in outcomes]

    def compose_together(self, submissions: Sequence[Submission], on_step: StepCallback | None = None,
                         on_preview: PreviewCallback | None = None) -> list:
        """Jobs with one batch key (`batch_key`) as few diffusers calls as their prepared sizes allow (inpainting
        only the masked area gives each its own); each job's Composed, or the error it failed with."""
        outcomes: list = [None] * len(submissions)
        calls: dict[tuple[int, int], list[tuple[int, PreparedRequest]]] = {}
        for index, (request, warnings) in enumerate(submissions):
            try:
                job = self._prepared(request, warnings)
            except Exception as error:  # e.g. a ControlNet map that cannot be made: that job's error alone
                outcomes[index] = error
                continue
            calls.setdefault((job.request.width, job.request.height), []).append((index, job))
        for call in calls.values():
            self._generate_call(call, outcomes, on_step, on_preview)
        return outcomes

    def _generate_call(self, call: list[tuple[int, PreparedRequest]], outcomes: list, on_step: StepCallback | None,
                       on_preview: PreviewCallback | None) -> None:
        """One diffusers call for `call`'s (submission index, job) pairs, each outcome into `outcomes`. When a call of
        several fails, each job runs again alone: one job's input (or its size, out of memory) must not fail the
        others'."""
        def preview(index: int, picture: Image.Image) -> None:  # the call's index -> the submission's
            on_preview(call[index][0], picture)

        try:
            results = self.manager.generate_together([job.request for _, job in call], on_step,
                                                     preview if on_preview is not None else None)
            for (index, job), result in zip(call, results):
                outcomes[index] = self._composed(job, result)
        except Exception as error:
            if len(call) == 1:
                outcomes[call[0][0]] = error
                return
            log.warning("a call of %d jobs failed (%s); running each alone", len(call), type(error).__name__)
            for pair in call:
                self._generate_call([pair], outcomes, on_step, on_preview)

    def _prepared(self, request: GenerationRequest, warnings: Sequence[str]) -> PreparedRequest:
        job = PreparedRequest(request, request, self.manager.is_inpainting_model, warnings=list(warnings))
        for extension in self.extensions:
            extension.prepare(job)
        return job

    def _composed(self, job: PreparedRequest, result: GenerationResult) -> Composed:
        """The job's images after the extensions' finishing steps, with their infotexts."""
        request = job.source
        if result.interrupted:
            job.warnings.append("interrupted: the image shows the state after the last finished step")
        images = result.images
        for finish in job.finish:
            images = finish(images)
        extra = {**job.infotext, **result.parameters}
        if result.interrupted:  # Steps stays the schedule's length (what reproduces it); this says where it stopped
            extra[INTERRUPTED] = "at step {} of {}".format(*result.progress)
        infotexts = [saving.infotext(request, seed, self.manager.source.name, self.manager.model_hash,
                                     for_image(extra, index)) for index, seed in enumerate(result.seeds)]
        return Composed(request.mode, images, infotexts, result.seeds, job.warnings, result.interrupted)

    def _saved(self, composed: Composed) -> Generation:
        """Each image saved as a PNG carrying its infotext, in its mode's folder."""
        files = [self.outputs.save(composed.mode, image, seed, text)
                 for image, seed, text in zip(composed.images, composed.seeds, composed.infotexts)]
        for warning in composed.warnings:
            log.warning(warning)
        return Generation(files, composed.infotexts, composed.seeds, composed.warnings, composed.interrupted)


def duration(seconds: float) -> str:
    """Seconds as people say them: "40 s", "3 min", "2 h 20 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
