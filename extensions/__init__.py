"""Extensions: each folder is one feature as a whole slice (its part of the request, its effect on the pipeline,
its infotext, its UI panel and REST fields), behind the protocol in base.py. Registering one is one line in
REGISTERED; the order is the order they act in (inpaint crops before ControlNet fits its maps to the crop)."""

from __future__ import annotations

from importlib import import_module

from extensions.base import Extension

REGISTERED = (
    "extensions.inpaint:Inpaint",
    "extensions.outpaint:Outpaint",
    "extensions.lora:Lora",
    "extensions.prompts:Prompts",
    "extensions.vae:Vae",  # before ControlNet, whose pipeline is built on the view's components (its VAE too)
    "extensions.controlnet.extension:ControlNet",
    "extensions.upscale:Upscale",
    "extensions.train:Train",
)


def create(config) -> list[Extension]:
    """One of each registered extension, set up from the app's config (an extension without settings takes none)."""
    extensions = []
    for entry in REGISTERED:
        module, name = entry.split(":")
        cls = getattr(import_module(module), name)
        extensions.append(cls.from_config(config) if hasattr(cls, "from_config") else cls())
    return extensions
