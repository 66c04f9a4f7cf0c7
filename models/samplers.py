"""Each request's sampler as a fresh diffusers scheduler, built from the A1111 names in models/sampler_names.py."""

from __future__ import annotations

import diffusers
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from models.sampler_names import SAMPLERS, check_sampler


def make_scheduler(name: str, base_config: dict, seeds: list[int]) -> SchedulerMixin:
    """A new scheduler for one request, built from the model's own scheduler config (never mutated)."""
    class_name, overrides = SAMPLERS[check_sampler(name)]
    if class_name == "DPMSolverSDEScheduler":
        # Its Brownian-tree noise is seeded separately; one seed per image keeps batches reproducible.
        overrides = {**overrides, "noise_sampler_seed": list(seeds)}
    return getattr(diffusers, class_name).from_config(dict(base_config), **overrides)
