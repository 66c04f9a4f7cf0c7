"""What runs now, for /sdapi/v1/progress: the latest call started, its step, its steps, when it started and its
latest live preview."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class JobState:
    running: bool = False
    step: int = 0
    steps: int = 0
    started: float = 0.0
    calls_started: int = 0  # calls (and tasks) started since the app started
    interrupted: bool = False
    current_image: Any = None  # the latest live preview (a PIL image) of the running call


class JobTracker:
    def __init__(self):
        self.state = JobState()

    @contextlib.contextmanager
    def tracking(self, steps: int):
        """A call of `steps` steps runs inside."""
        state = self.state = JobState(True, 0, steps, time.monotonic(), self.state.calls_started + 1)
        try:
            yield
        finally:
            state.running = False

    def step(self, done: int, total: int) -> None:
        self.state.step, self.state.steps = done, total
