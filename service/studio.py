"""The studio service: the one place every interface (UI, gradio_client, REST) goes through.

An interface builds a typed request with `build` (service/requests.py) and submits it to the one job queue
(service/queue.py: first come, first served, bounded), whose worker runs `generate` on it: the extensions
prepare the job (in the order they were registered), the shared manager runs it under its lock (service/jobs.py
tracks it), the extensions' finishing steps apply to the images, and each image is saved as a PNG carrying A1111's
infotext (service/saving.py). Bad input raises ValueError naming the field and the value; the interfaces turn that
into gr.Error or an HTTP error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extensions.base import SOLO, Extension, Job
from models.manager import GenerationResult, PipelineManager, StepCallback
from models.request import GenerationRequest
from models.sampler_names import BATCHING_SAMPLERS
from service import saving
from service.jobs import JobState, JobTracker
from service.queue import JobQueue, QueuedJob
from service.requests import RequestBuilder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    files: list[Path]
    infotexts: list[str]
    seeds: list[int]
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False


class StudioService:
    def __init__(self, manager: PipelineManager, output_dir: str | Path, extensions: Sequence[Extension] = (),
                 notice: str = "", after_install: Callable[[PipelineManager], None] | None = None,
                 queue_size: int = 16, direct: bool = False, max_batch: int = 1, batch_wait: float = 0.0):
        """`after_install`: called with each manager once the extensions are installed on it (the app compiles
        the U-Net there: after the extensions that add layers to it). `queue_size`: the jobs that may wait.
        `direct`: run each job in the caller's thread instead of the queue's (ZeroGPU, where a job runs in the
        GPU worker process that the calling function is moved to). `max_batch`: the most images compatible jobs
        make in one call; `batch_wait`: how long (seconds) a job that could take more waits for company."""
        self.extensions = list(extensions)
        self.after_install = after_install
        self.manager = self._installed(manager)
        self.output_dir = Path(output_dir)
        self.notice = notice  # e.g. "fell back to the demo model because ..."
        self.requests = RequestBuilder(self.extensions)
        self.jobs = JobTracker()
        self.queue = JobQueue(queue_size, lambda: self.manager.interrupt(), max_batch=1 if direct else max_batch,
                              batch_wait=batch_wait, run_together=self.run_together)
        self.direct = direct
        self.outputs = saving.OutputFolder(self.output_dir)
        self.model_loader: Callable[[str], PipelineManager] | None = None  # set by the app to allow switching
        self.checkpoints: Callable[[], list[str]] = lambda: []  # the checkpoint names a client may switch to

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
                "calls_by_jobs": {str(jobs): calls for jobs, calls in sorted(queue.calls.items())}}

    def interrupt(self) -> None:
        self.jobs.interrupt(self.manager)

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

    def _installed(self, manager: PipelineManager) -> PipelineManager:
        for extension in self.extensions:
            extension.install(manager)
        if self.after_install is not None:
            self.after_install(manager)
        return manager

    # -- generation -------------------------------------------------------------------------------------

    def build(self, mode: str, fields: Mapping[str, Any]) -> tuple[GenerationRequest, list[str]]:
        """A typed request from an endpoint's plain fields, and warnings for the user."""
        return self.requests.build(mode, fields)

    def run(self, mode: str, fields: Mapping[str, Any], on_step: StepCallback | None = None) -> Generation:
        """`build`, then the job through the queue, waited for here (what the UI and gradio_client do); `on_step`
        is called from this thread as the job's steps advance. Raises QueueFull when the queue has no room."""
        request, warnings = self.build(mode, fields)
        if self.direct:
            return self.generate(request, warnings, on_step)
        job = self.submit(request, warnings)
        reported = 0
        while not job.wait(0.05):
            if on_step is not None and job.step != reported:
                reported = job.step
                on_step(job.step, job.steps)
        return job.outcome()

    def submit(self, request: GenerationRequest, warnings: Sequence[str] = ()) -> QueuedJob:
        """The request as a job in the queue (QueueFull when it has no room); `job.outcome()` is its Generation."""
        return self.queue.submit(lambda job: self.generate(request, warnings, job.on_step), key=self.batch_key(request),
                                 size=request.batch_size, payload=(request, warnings))

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

    def close(self) -> None:
        """Cancel the waiting jobs and stop the running one: the server is going away."""
        self.queue.close()

    def generate(self, request: GenerationRequest, warnings: Sequence[str] = (),
                 on_step: StepCallback | None = None) -> Generation:
        job = self._prepared(request, warnings)
        return self._finished(job, self.jobs.run(self.manager, [job.request], on_step)[0])

    def run_together(self, queued: Sequence[QueuedJob]) -> list:
        """Jobs with one batch key (`batch_key`), as few diffusers calls as their prepared sizes allow (inpainting
        only the masked area gives each its own); each job's Generation, or the error it failed with."""
        outcomes: list = [None] * len(queued)
        calls: dict[tuple[int, int], list[tuple[int, Job]]] = {}
        for index, entry in enumerate(queued):
            try:
                job = self._prepared(*entry.payload)
            except Exception as error:  # e.g. a ControlNet map that cannot be made: that job's error alone
                outcomes[index] = error
                continue
            calls.setdefault((job.request.width, job.request.height), []).append((index, job))
        for call in calls.values():
            def on_step(done: int, total: int, call=call) -> None:
                for index, _ in call:
                    queued[index].on_step(done, total)

            try:
                results = self.jobs.run(self.manager, [job.request for _, job in call], on_step)
                for (index, job), result in zip(call, results):
                    outcomes[index] = self._finished(job, result)
            except Exception as error:
                for index, _ in call:
                    outcomes[index] = error
        return outcomes

    def _prepared(self, request: GenerationRequest, warnings: Sequence[str]) -> Job:
        job = Job(request, request, self.manager.is_inpainting_model, warnings=list(warnings))
        for extension in self.extensions:
            extension.prepare(job)
        return job

    def _finished(self, job: Job, result: GenerationResult) -> Generation:
        """The job's images after the extensions' finishing steps, saved with their infotexts."""
        request = job.source
        if result.interrupted:
            job.warnings.append("interrupted: the image shows the state after the last finished step")
        images = result.images
        for finish in job.finish:
            images = finish(images)
        extra = {**job.infotext, **result.parameters}
        infotexts = [saving.infotext(request, seed, self.manager.source.name, self.manager.model_hash, extra)
                     for seed in result.seeds]
        files = [self.outputs.save(request.mode, image, seed, text)
                 for image, seed, text in zip(images, result.seeds, infotexts)]
        for warning in job.warnings:
            log.warning(warning)
        return Generation(files, infotexts, result.seeds, job.warnings, result.interrupted)
