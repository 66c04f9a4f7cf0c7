"""A script's run (an X/Y/Z plot, a prompt matrix, ...): its jobs go through the one job queue like anyone's, a few at
a time so that compatible ones batch and other people's jobs are not shut out, and what the script makes of their
results (a grid) is saved beside them. To the interfaces it is a job like a queued one: its state, its steps and
preview while it runs, `wait`, `outcome` (the Generation) and `cancel`."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from PIL import Image

from extensions.base import Cell, ScriptPlan
from service.queue import POLL_SECONDS, Cancelled, QueueFull
from service.saving import Generation

log = logging.getLogger(__name__)


class ScriptRun:
    def __init__(self, service, mode: str, plan: ScriptPlan, warnings: list[str]):
        """`service`: the StudioService whose queue, model and outputs the script uses."""
        self.service, self.mode, self.plan, self.warnings = service, mode, plan, list(warnings)
        self.state = "waiting"  # waiting, running, done, cancelled
        self.step = self.steps = 0
        self.preview = None
        self.result: Generation | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._in_flight: dict = {}  # a job's index -> its QueuedJob
        self._thread = threading.Thread(target=self._run, name=f"script-{plan.title}", daemon=True)
        self._thread.start()

    # -- a job's interface --------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def outcome(self) -> Generation:
        self._finished.wait()
        if self.error is not None:
            raise self.error
        return self.result

    def stop(self) -> None:
        """Interrupt: the running jobs stop inside their step, the rest do not run; the script's images are made
        of what was done."""
        self._stop.set()
        for job in list(self._in_flight.values()):
            if job.state == "waiting":
                self.service.queue.cancel(job)

    def cancel(self) -> None:
        """Its caller went away: every job of it leaves the queue or stops."""
        self._stop.set()
        for job in list(self._in_flight.values()):
            self.service.queue.cancel(job)

    # -- the run ------------------------------------------------------------------------------------------

    def _run(self) -> None:
        service = self.service
        original_model = service.model_name
        try:
            generations, interrupted = self._generations(self.plan.jobs())
            self.result = self._saved(generations, interrupted)
            self.state = "done" if not self._stop.is_set() or interrupted else "cancelled"
        except BaseException as error:  # the caller gets it from outcome()
            self.error, self.state = error, "cancelled" if isinstance(error, Cancelled) else "done"
        finally:
            if service.model_name != original_model:  # as A1111 puts its settings back after a script
                try:
                    service.switch_model(original_model)
                except Exception:
                    log.exception("could not switch back to %s after a script", original_model)
            service.forget_script(self)
            self._finished.set()

    def _generations(self, jobs: list) -> tuple[list[Generation | None], bool]:
        """Each job's Generation (None: it failed or did not run), the jobs submitted a window at a time (a job that
        needs another model waits for the ones in flight, then switches it); and whether an interrupt cut it
        short."""
        service = self.service
        generations: list[Generation | None] = [None] * len(jobs)
        requests = [service.build(endpoint, fields) for endpoint, fields, _ in jobs]  # every job checked first
        steps = [request.steps for request, _ in requests]
        # grouped by model, in the order they first appear, so that a plot over checkpoints switches once per model
        start = service.model_name
        models = [model or start for _, _, model in jobs]
        pending = deque(sorted(range(len(jobs)), key=lambda index: models.index(models[index])))
        done_steps, window = 0, max(2, service.queue.max_batch)
        interrupted = False
        while (pending or self._in_flight) and not (self._stop.is_set() and not self._in_flight):
            while pending and len(self._in_flight) < window and not self._stop.is_set():
                index = pending[0]
                model = models[index]
                if model != service.model_name:
                    if self._in_flight:
                        break
                    service.switch_model(model)
                try:
                    self._in_flight[index] = service.submit(*requests[index])
                except QueueFull:
                    break  # others' jobs fill the queue: try again once some have run
                pending.popleft()
            time.sleep(POLL_SECONDS)
            for index, job in list(self._in_flight.items()):
                if job.state != "waiting":
                    self.state = "running"
                if not job.wait(0):
                    continue
                del self._in_flight[index]
                done_steps += steps[index]
                try:
                    generation = job.outcome()
                except Cancelled:
                    interrupted = True
                    continue
                except Exception as error:  # one cell's failure leaves its place blank, as in A1111
                    self.warnings.append(f"{self.plan.title}: job {index + 1} failed: {error}")
                    continue
                interrupted |= generation.interrupted
                self.warnings += generation.warnings
                generations[index] = generation
            running = [job for job in self._in_flight.values() if job.state == "running"]
            self.steps = sum(steps)
            self.step = done_steps + sum(job.step for job in running)
            self.preview = next((job.preview for job in running if job.preview is not None), self.preview)
        return generations, interrupted or self._stop.is_set()

    def _saved(self, generations: list[Generation | None], interrupted: bool) -> Generation:
        """The script's own images (saved in its mode's grids folder) and, unless it leaves them out, its jobs'."""
        done = [generation for generation in generations if generation is not None and generation.files]
        if not done:
            if interrupted:
                raise Cancelled("interrupted before any of its images was made")
            raise ValueError(f"{self.plan.title}: none of its jobs made an image ({'; '.join(self.warnings[-3:])})")
        cells = [Cell([_opened(path) for path in generation.files], list(generation.infotexts),
                      list(generation.seeds)) if generation is not None else Cell() for generation in generations]
        seed = done[0].seeds[0]
        own = self.plan.compose(cells)
        files = [self.service.outputs.save(self.mode, image, seed, text, kind="grids") for image, text in own]
        infotexts, seeds = [text for _, text in own], [seed] * len(own)
        if self.plan.keep_cells:
            for generation in done:
                files, infotexts, seeds = (files + generation.files, infotexts + generation.infotexts,
                                           seeds + generation.seeds)
        return Generation(files, infotexts, seeds, self.warnings, interrupted)


def _opened(path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image
