"""The status beside Generate: before a job, what it will cost; while it waits, its place in the queue; while it
runs, a bar, its step and the time left (from its own measured steps, refreshed every step); afterwards, what it took.
HTML, escaped: messages may hold what a user typed."""

from __future__ import annotations

import html
import time

from service.studio import duration

SHOWN_FROM = 20  # seconds: an estimate shorter than this is not worth a line


def estimate_line(seconds: float | None, refused: str = "") -> str:
    if refused:
        return f'<span class="refused">{html.escape(refused)}</span>'
    if seconds is None or seconds < SHOWN_FROM:
        return ""
    return f"<span>this job: about {duration(seconds)} here</span>"


def error_line(message: str) -> str:
    return f'<span class="refused">error: {html.escape(message)}</span>'


class JobStatus:
    """A job's status line as it goes."""

    def __init__(self, estimate: float | None):
        self.estimate = estimate
        self.started = time.monotonic()
        self.first: tuple[float, int] | None = None  # (when, step) of the first step seen
        self.shown = ""

    def waiting(self, ahead: int) -> str:
        return f"<span>waiting in the queue: {ahead} ahead</span>" if ahead else "<span>starting</span>"

    def running(self, step: int, steps: int) -> str:
        now = time.monotonic()
        if step and self.first is None:
            self.first = (now, step)
        left = ""
        if self.first is not None and step > self.first[1]:
            per_step = (now - self.first[0]) / (step - self.first[1])
            left = f" · about {duration(per_step * (steps - step))} left"
        elif self.estimate is not None:
            left = f" · about {duration(self.estimate)} in all"
        return (f'<div class="bar"><progress value="{step}" max="{max(steps, 1)}"></progress>'
                f"<span>step {step}/{steps}{left}</span></div>")

    def finished(self, steps: int, total: int, interrupted: bool, warnings: int = 0) -> str:
        took = duration(time.monotonic() - self.started)
        notes = f" · {warnings} warning{'s' if warnings != 1 else ''} in the notes" if warnings else ""
        if interrupted:
            return f"<span>interrupted at step {steps}/{total} after {took}{notes}</span>"
        return f"<span>done: {total} steps in {took}{notes}</span>"

    def changed(self, line: str) -> bool:
        """Whether `line` differs from the one on show (which it becomes)."""
        if line == self.shown:
            return False
        self.shown = line
        return True
