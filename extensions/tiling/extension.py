"""A1111's Tiling: every convolution of the U-Net, the VAE (and a ControlNet) pads circularly instead of with zeros,
so each side of the picture continues the opposite one and the picture repeats without a seam (textures, patterns).
Written in the infotext as A1111 does: `Tiling: True`.

Padding is state of the shared modules, so each request sets it, on or off, before its call: a configurer sets the
shared U-Net and VAE (what every pipeline, a training run's samples included, uses), a pipeline hook after the VAE's
and ControlNet's sets what the request's own pipeline adds (a chosen VAE, a ControlNet). Nothing carries over to
the next request; a tiled request and an untiled one never share a call (the batch key).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from extensions.base import Extension
from extensions.tiling.fields import TILING
from models.fields import read_entries

CIRCULAR = "circular"


def set_tiling(modules: Iterable[torch.nn.Module], on: bool) -> None:
    """Every 2-d convolution in `modules` pads circularly (`on`) or as it was made to."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, torch.nn.Conv2d):
                made = layer.__dict__.setdefault("padding_mode_as_made", layer.padding_mode)
                layer.padding_mode = CIRCULAR if on else made


class Tiling(Extension):
    name = "tiling"
    fields = (TILING,)
    modes = ("txt2img", "img2img", "inpaint", "outpaint")
    placement = "size"

    def install(self, manager) -> None:
        manager.configurers.append(self._configure)
        manager.pipeline_hooks.append(self._hook)

    def parse(self, mode: str, fields: Mapping, warnings: list[str]) -> bool | None:
        return True if TILING.check(fields.get(TILING.name, TILING.default)) else None

    def _configure(self, shared, request) -> dict[str, str]:
        on = bool(request.part(self.name))
        set_tiling(_modules(shared), on)
        return {TILING.infotext: "True"} if on else {}

    def _hook(self, pipe, request, arguments: dict, parameters: dict):
        set_tiling(_modules(pipe), bool(request.part(self.name)))
        return pipe, arguments

    def from_infotext(self, entries: dict[str, str], warnings: list[str]) -> dict:
        return read_entries((TILING,), entries, warnings)

    def panel(self, tab):
        from extensions.tiling.panel import tiling_panel

        return tiling_panel(tab)


def _modules(pipe) -> list[torch.nn.Module]:
    """The pipeline's modules that see the picture (the text encoder has no convolution)."""
    return [module for name in ("unet", "vae", "controlnet")
            if isinstance(module := getattr(pipe, name, None), torch.nn.Module)]
