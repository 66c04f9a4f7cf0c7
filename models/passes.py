"""A pipeline of several passes (hires fix's two, the refiner's switch) standing in for the request's pipeline: the
manager calls it, and may use its VAE and image processor (a decode after an interrupt or out of memory) and set its
scheduler, all of them its first pass's; its passes decode latents through that VAE."""

from __future__ import annotations

from models.latents import pictures


class Passes:
    # Whether its call runs its first pipeline with the call's arguments (it may stop at a switch, `denoising_end`,
    # and hand back latents), wrapped around it: a refiner can take over from it as from that pipeline
    passes_through = False

    def __init__(self, first):
        self.first = first  # the pipeline the other hooks chose, which runs the first pass

    @property
    def vae(self):
        return self.first.vae

    @property
    def image_processor(self):
        return self.first.image_processor

    @property
    def scheduler(self):
        return self.first.scheduler

    @scheduler.setter
    def scheduler(self, scheduler) -> None:
        self.first.scheduler = scheduler

    def set_progress_bar_config(self, **config) -> None:
        self.first.set_progress_bar_config(**config)

    def decode(self, latents) -> list:
        """Latents of a pass as pictures, through the first pass's VAE."""
        return pictures(self.first, latents)


def innermost(pipe):
    """The pipeline that pass-through wrappers (soft inpainting's) run: its progress, interrupt and steps."""
    while getattr(pipe, "passes_through", False):
        pipe = pipe.first
    return pipe
