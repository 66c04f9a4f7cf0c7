"""The one job queue every interface submits to: first come, first served, one job on the model at a time.

It holds at most `max_waiting` jobs besides the running one; past that, `submit` raises QueueFull (REST answers
503, the UI and gradio_client say the queue is full). A waiting job can be cancelled (it is removed), a running one
is asked to stop after its current step. `close` cancels everything, so the server can exit at once.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    pass


class Cancelled(Exception):
    """The job was cancelled (by its client, by interrupt while it waited, or by the server closing)."""


@dataclass(eq=False)
class QueuedJob:
    work: Callable[[QueuedJob], Any]  # runs the job; called on the queue's worker thread
    number: int
    state: str = "waiting"  # waiting, running, done, cancelled
    step: int = 0
    steps: int = 0
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


class JobQueue:
    def __init__(self, max_waiting: int, interrupt: Callable[[], None]):
        self.max_waiting = max_waiting
        self._interrupt = interrupt  # stops the running job after its current step
        self._waiting: collections.deque[QueuedJob] = collections.deque()
        self._running: QueuedJob | None = None
        self._condition = threading.Condition()
        self._numbers = itertools.count(1)
        self._closed = False
        self._worker: threading.Thread | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> QueuedJob | None:
        return self._running

    def submit(self, work: Callable[[QueuedJob], Any]) -> QueuedJob:
        with self._condition:
            if self._closed:
                raise Cancelled("the server is shutting down")
            if len(self._waiting) >= self.max_waiting:
                raise QueueFull(f"{len(self._waiting)} jobs are waiting, the most this server takes")
            job = QueuedJob(work, next(self._numbers))
            self._waiting.append(job)
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="job-queue", daemon=True)
                self._worker.start()
            self._condition.notify()
            return job

    def cancel(self, job: QueuedJob) -> None:
        """A waiting job leaves the queue; the running one stops after its current step. The interrupt is sent
        under the lock: the worker cannot have started the next job meanwhile (which clears it when it starts)."""
        with self._condition:
            if job.state == "waiting" and job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, error=Cancelled("cancelled while waiting"), state="cancelled")
            elif job is self._running:
                job.state = "cancelled"
                self._interrupt()

    def close(self) -> None:
        """No more jobs; the waiting ones are cancelled and the running one is stopped."""
        with self._condition:
            self._closed = True
            while self._waiting:
                self._finish(self._waiting.popleft(), error=Cancelled("the server is shutting down"),
                             state="cancelled")
            if self._running is not None:
                self._interrupt()
            self._condition.notify_all()

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._waiting and not self._closed:
                    self._condition.wait()
                if self._closed and not self._waiting:
                    return
                job = self._running = self._waiting.popleft()
                job.state = "running"
            try:
                result, error = job.work(job), None
            except BaseException as failure:  # handed to the job's client, which raises it
                result, error = None, failure
            with self._condition:
                self._running = None
                cancelled = job.state == "cancelled"
                self._finish(job, result=result, error=error, state="cancelled" if cancelled else "done")

    @staticmethod
    def _finish(job: QueuedJob, result=None, error: BaseException | None = None, state: str = "done") -> None:
        job.result, job.error, job.state = result, error, state
        job._finished.set()
