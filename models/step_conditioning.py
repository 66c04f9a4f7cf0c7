"""Prompt embeddings that change over the steps of a pass (A1111's prompt editing, `[from:to:when]`): an extension
puts a `StepConditioning` into a call's arguments under SCHEDULE; whoever calls the pipeline (the manager; hires
fix, for each of its passes) takes it out with `scheduled` and gets the step callback that hands the pipeline the
next step's embeddings where they change. diffusers' Stable Diffusion pipelines take `prompt_embeds` back from the
step callback (their guidance batch: the negative's, then the prompt's), and SDXL's its pooled vectors as
`add_text_embeds` (batched alike).

Adapters that act over a window of the steps (IP-Adapter and T2I-Adapter units) put a `StepWindow` into the call's
STEP_WINDOWS list instead: `scheduled` makes the step callback tell it where each pass stands."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

SCHEDULE = "step_conditioning"  # the call argument (no pipeline takes it: it is taken out before the call)

STEP_WINDOWS = "step_windows"  # the call argument: a list of StepWindow (taken out before the call too)

StepEndCallback = Callable[..., dict]  # diffusers' callback_on_step_end(pipe, step, timestep, tensors) -> tensors


class StepConditioning(Protocol):
    def at(self, step: int) -> dict[str, torch.Tensor]:
        """The call's text arguments at step `step` of the pass (from 0), for the call's batch: `prompt_embeds` and
        `negative_prompt_embeds`, and SDXL's `pooled_prompt_embeds` and `negative_pooled_prompt_embeds`; the same
        dict while they do not change."""

    def for_second_pass(self, steps: int) -> StepConditioning:
        """The schedule of hires fix's second pass of `steps` steps, which comes after this one."""


class StepWindow(Protocol):
    def at(self, fraction: float) -> None:
        """Set the state of the step that starts at `fraction` (its index / the pass's steps) of its pass."""


def scheduled(arguments: dict, callback: StepEndCallback | None) -> tuple[dict, StepEndCallback | None]:
    """The call's arguments without the schedule and the step windows, and `callback` made to apply them."""
    if SCHEDULE not in arguments and STEP_WINDOWS not in arguments:
        return arguments, callback
    schedule, windows = arguments.get(SCHEDULE), arguments.get(STEP_WINDOWS)
    if schedule is not None:
        callback = applying(schedule, callback)
    if windows:
        callback = windowed(windows, callback)
    return {key: value for key, value in arguments.items() if key not in (SCHEDULE, STEP_WINDOWS)}, callback


def windowed(windows, callback: StepEndCallback | None) -> StepEndCallback:
    """`callback`, then each window set for the next step; after a pass's last step, for a next pass's first."""
    for window in windows:
        window.at(0.0)

    def step_end(pipe, step: int, timestep, tensors: dict) -> dict:
        if callback is not None:
            tensors = callback(pipe, step, timestep, tensors)
        following, total = step + 1, max(1, pipe.num_timesteps)
        for window in windows:
            window.at(following / total if following < total else 0.0)
        return tensors

    return step_end


def applying(schedule: StepConditioning, callback: StepEndCallback | None) -> StepEndCallback:
    """`callback`, then the next step's embeddings where they change."""
    def step_end(pipe, step: int, timestep, tensors: dict) -> dict:
        if callback is not None:
            tensors = callback(pipe, step, timestep, tensors)
        following = schedule.at(step + 1)
        if following is not schedule.at(step):
            guided = pipe.do_classifier_free_guidance
            for key, callback_key in (("prompt_embeds", "prompt_embeds"), ("pooled_prompt_embeds", "add_text_embeds")):
                if key in following:
                    this, negative = following[key], following[f"negative_{key}"]
                    tensors = {**tensors, callback_key: torch.cat([negative, this]) if guided else this}
        return tensors

    return step_end
