"""The one job queue every interface submits to: first come, first served, `concurrency` calls at a time (one on
the local model; one per Ray replica and one more ready for each).

It holds at most `max_waiting` jobs besides the running ones; past that, `submit` raises QueueFull (REST answers
503, the UI and gradio_client say the queue is full). A waiting job can be cancelled (it is removed), a running one
is asked to stop after its current step. `close` cancels everything, so the server can exit at once.

Batching: jobs submitted with equal keys may run together in one call (`run_together`), up to `max_batch` images.
When the job at the head of the queue could take more, the worker waits up to `batch_wait` seconds for compatible
jobs to arrive; a job behind an incompatible one may join the head's batch, which only ever makes it earlier.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class QueueFull(Exception):
    pass


class Unavailable(Exception):
    """The backend could not run the job (a Ray replica was lost, and then another)."""


class Cancelled(Exception):
    """The job was cancelled (by its client, by interrupt while it waited, or by the server closing)."""


# The queue's errors in the words every interface tells them (a toast, or HTTP 503 with them as the detail)
QUEUE_ERRORS = {
    QueueFull: "the queue is full, try again in a moment ({error})",
    Unavailable: "{what} could not run, try again ({error})",
    Cancelled: "{what} was cancelled: {error}",
}
POLL_SECONDS = 0.05  # how often a waiting caller looks at its job


def queue_message(error: BaseException, what: str) -> str | None:
    """What to tell the client of a queue error (`what`: the job, e.g. "txt2img"); None for any other error."""
    template = next((words for kind, words in QUEUE_ERRORS.items() if isinstance(error, kind)), None)
    return None if template is None else template.format(what=what, error=error)


@dataclass(eq=False)
class QueuedJob:
    work: Callable[[QueuedJob], Any]  # runs the job alone; called on one of the queue's worker threads
    number: int
    key: Hashable | None = None  # jobs with equal keys may run together; None: always alone
    size: int = 1  # the images it makes
    payload: Any = None  # what `run_together` needs to run it
    state: str = "waiting"  # waiting, running, done, cancelled
    step: int = 0
    steps: int = 0
    together: int = 1  # the jobs in the call that ran it
    preview: Any = None  # its latest live preview (a PIL image) while it runs
    result: Any = None
    error: BaseException | None = None
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def on_step(self, done: int, total: int) -> None:
        self.step, self.steps = done, total

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has finished (or was cancelled)."""
        return self._finished.wait(timeout)

    def outcome(self):
        """The job's result; raises its error, or Cancelled."""
        self._finished.wait()
        if self.error is not None:
            raise self.error
        return self.result


# Runs jobs together; gives each job's result, or the exception it failed with, in order.
RunTogether = Callable[[Sequence[QueuedJob]], list]


class JobQueue:
    def __init__(self, max_waiting: int, interrupt: Callable[[tuple[QueuedJob, ...]], None], max_batch: int = 1,
                 batch_wait: float = 0.0, run_together: RunTogether | None = None, concurrency: int = 1):
        self.max_waiting = max_waiting
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.concurrency = concurrency
        self._interrupt = interrupt  # stops a running call (given its jobs) after its current step
        self._run_together = run_together
        self._waiting: collections.deque[QueuedJob] = collections.deque()
        self._running: list[tuple[QueuedJob, ...]] = []  # the calls running now
        self._condition = threading.Condition()
        self._numbers = itertools.count(1)
        self._closed = False
        self._workers: list[threading.Thread] = []
        self.calls: collections.Counter[int] = collections.Counter()  # jobs per call -> calls run

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> tuple[QueuedJob, ...]:
        return tuple(job for call in self._running for job in call)

    def position(self, job: QueuedJob) -> int:
        """How many jobs wait ahead of `job` (0 when it is not waiting)."""
        with self._condition:
            return self._waiting.index(job) if job in self._waiting else 0

    def stop_running(self) -> None:
        """Stop every running call after its current step (the interrupt button, /sdapi/v1/interrupt)."""
        with self._condition:
            for call in self._running:
                self._interrupt(call)

    def submit(self, work: Callable[[QueuedJob], Any], key: Hashable | None = None, size: int = 1,
               payload: Any = None) -> QueuedJob:
        with self._condition:
            if self._closed:
                raise Cancelled("the server is shutting down")
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} jobs are waiting, the most this server takes")
            job = QueuedJob(work, next(self._numbers), key, size, payload)
            self._waiting.append(job)
            if not self._workers:
                self._workers = [threading.Thread(target=self._work, name=f"job-queue-{n}", daemon=True)
                                 for n in range(self.concurrency)]
                for worker in self._workers:
                    worker.start()
            self._condition.notify_all()
            return job

    def cancel(self, job: QueuedJob) -> None:
        """A waiting job leaves the queue. A running one is dropped; the call stops after its current step once
        every job in it is cancelled (the others in a batch still want their images). The interrupt is sent under
        the lock: the worker cannot have started the next call meanwhile (which clears it when it starts). A job
        that is not the queue's own (a script's run, made of queued jobs) cancels itself."""
        if not isinstance(job, QueuedJob):
            job.cancel()
            return
        with self._condition:
            if job.state == "waiting" and job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, error=Cancelled("cancelled while waiting"), state="cancelled")
                self._condition.notify_all()
            elif call := next((call for call in self._running if job in call), None):
                job.state = "cancelled"
                if all(other.state == "cancelled" for other in call):
                    self._interrupt(call)

    def close(self) -> None:
        """No more jobs; the waiting ones are cancelled and the running call is stopped."""
        with self._condition:
            self._closed = True
            while self._waiting:
                self._finish(self._waiting.popleft(), error=Cancelled("the server is shutting down"),
                             state="cancelled")
            for call in self._running:
                self._interrupt(call)
            self._condition.notify_all()

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the workers to end (after `close`, once their running calls have)."""
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while True:
            with self._condition:
                group = self._next_call()
                if not group:
                    return
                self._running.append(group)
                for job in group:
                    job.state, job.together = "running", len(group)
            outcomes = self._run(group)
            with self._condition:
                self._running.remove(group)
                self.calls[len(group)] += 1
                for job, outcome in zip(group, outcomes):
                    failed = isinstance(outcome, BaseException)
                    self._finish(job, result=None if failed else outcome, error=outcome if failed else None,
                                 state="cancelled" if job.state == "cancelled" else "done")

    def _run(self, group: tuple[QueuedJob, ...]) -> list:
        try:
            if len(group) == 1:
                return [group[0].work(group[0])]
            log.info("running %d jobs together (%d images)", len(group), sum(job.size for job in group))
            return self._run_together(group)
        except BaseException as failure:  # handed to the jobs' clients, which raise it
            return [failure] * len(group)

    def _next_call(self) -> tuple[QueuedJob, ...]:
        """The jobs to run next (called under the lock): the head of the queue, with the compatible jobs that fit
        beside it, waiting up to `batch_wait` for more. Empty once closed."""
        while True:
            while not self._waiting and not self._closed:
                self._condition.wait()
            if not self._waiting:
                return ()
            head = self._waiting[0]
            if head.key is None or self.max_batch <= 1 or self._run_together is None:
                return (self._waiting.popleft(),)
            deadline = time.monotonic() + self.batch_wait
            while self._waiting and self._waiting[0] is head and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0 or sum(job.size for job in self._beside(head)) >= self.max_batch:
                    break
                self._condition.wait(left)
            if self._waiting and self._waiting[0] is head:  # not cancelled meanwhile
                group = self._beside(head)
                for job in group:
                    self._waiting.remove(job)
                return group

    def _beside(self, head: QueuedJob) -> tuple[QueuedJob, ...]:
        """The head and the waiting jobs with its key, in order, as many as fit in `max_batch` images."""
        group, images = [], 0
        for job in self._waiting:
            if job.key == head.key and images + job.size <= self.max_batch or job is head:
                group.append(job)
                images += job.size
        return tuple(group)

    @staticmethod
    def _finish(job: QueuedJob, result=None, error: BaseException | None = None, state: str = "done") -> None:
        job.result, job.error, job.state = result, error, state
        job._finished.set()


def wait_for(job: QueuedJob, on_step: Callable[[int, int], None] | None = None):
    """The job's outcome, waited for in this thread, which `on_step` is called from as its steps advance."""
    reported = 0
    while not job.wait(POLL_SECONDS):
        if on_step is not None and job.step != reported:
            reported = job.step
            on_step(job.step, job.steps)
    return job.outcome()


async def polled(job: QueuedJob, queue: JobQueue) -> AsyncIterator[QueuedJob]:
    """The job, every POLL_SECONDS until it has finished, for a caller that waits without holding a thread (and looks
    at the job's step, its preview or its client meanwhile). A caller that stops early (cancelled, its client gone)
    cancels the job: close this generator (contextlib.aclosing) when leaving."""
    finished = False
    try:
        while not job.wait(0):
            yield job
            await asyncio.sleep(POLL_SECONDS)
        finished = True
    finally:
        if not finished:
            queue.cancel(job)
