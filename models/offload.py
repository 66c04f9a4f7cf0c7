"""Offloading for small cards: the shared modules' one copy of the weights lives on the CPU and visits the device
while it runs, through diffusers' own hooks (`enable_model_cpu_offload` / `enable_sequential_cpu_offload`).

The hooks sit on the modules themselves, so every pipeline built over them (the derived pipelines, each request's
view, ControlNet's) is offloaded too. Whoever changes the modules' layers (a LoRA's adapter added) or trains them
pauses the hooks first, as diffusers' own `load_lora_weights` does, and they are attached again over the new layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from diffusers import DiffusionPipeline

from models.device import Runtime


class Offload:
    def __init__(self, base: DiffusionPipeline, runtime: Runtime):
        """`base`: the pipeline that holds the shared modules; its hooks are diffusers' record of the offload."""
        self.base, self.mode, self.device = base, runtime.offload, runtime.device
        self._attach()

    @property
    def active(self) -> bool:
        return self.mode != "none"

    def after_job(self) -> None:
        """Model offload leaves the last module that ran (the VAE) on the device: back to the CPU with it, as
        diffusers does after each call of its own pipelines."""
        if self.mode == "model":
            self.base.maybe_free_model_hooks()

    @contextmanager
    def paused(self, on_device: bool = False) -> Iterator[None]:
        """No hooks inside: the weights are real tensors on the CPU (or, `on_device`, all on the device, as a
        training run needs them); afterwards the hooks are attached again over whatever the modules became."""
        if not self.active:
            yield
            return
        self.base.remove_all_hooks()  # sequential offload: the weights come back from the hooks' CPU map
        if on_device:
            self.base.to(self.device)
        try:
            yield
        finally:
            self._attach()  # the modules go back to the CPU first

    def _attach(self) -> None:
        if self.mode == "model":
            self.base.enable_model_cpu_offload(device=self.device)
        elif self.mode == "sequential":
            self.base.enable_sequential_cpu_offload(device=self.device)
