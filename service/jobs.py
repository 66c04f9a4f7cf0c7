"""What runs now, for /sdapi/v1/progress and the interrupt button: the job that holds the model, its step, its
steps and when it started."""

from __future__ import annotations

import time
from dataclasses import dataclass

from models.manager import GenerationResult, PipelineManager, StepCallback
from models.request import GenerationRequest


@dataclass
class JobState:
    running: bool = False
    step: int = 0
    steps: int = 0
    started: float = 0.0
    job_count: int = 0  # jobs started since the app started
    interrupted: bool = False


class JobTracker:
    def __init__(self):
        self.state = JobState()

    def run(self, manager: PipelineManager, requests: list[GenerationRequest],
            on_step: StepCallback | None) -> list[GenerationResult]:
        """The requests as one call (PipelineManager.generate_together), tracked."""
        def step(done: int, total: int) -> None:
            self.state.step, self.state.steps = done, total
            if on_step is not None:
                on_step(done, total)

        with manager.lock:  # the state describes the job that holds the model
            self.state = JobState(True, 0, requests[0].steps, time.monotonic(), self.state.job_count + 1)
            try:
                return manager.generate_together(requests, on_step=step)
            finally:
                self.state.running = False

    def interrupt(self, manager: PipelineManager) -> None:
        self.state.interrupted = self.state.running
        manager.interrupt()
