"""Extensions: each folder is one feature as a whole slice (its part of the request, its effect on the pipeline,
its infotext, its UI panel and REST fields), behind the protocol in base.py. Registering one is one line in
REGISTERED; the order is the order they act in (inpaint crops before ControlNet fits its maps to the crop)."""

from __future__ import annotations

from importlib import import_module

from extensions.base import Extension, Settings

REGISTERED = (
    "extensions.styles:Styles",  # first: the styles' text is the prompt every other extension reads
    "extensions.inpaint:Inpaint",
    "extensions.segment:Segment",  # click to mask: under the inpaint tab's editor
    "extensions.outpaint:Outpaint",
    "extensions.lora:Lora",
    "extensions.prompts:Prompts",
    "extensions.vae:Vae",  # before ControlNet, whose pipeline is built on the view's components (its VAE too)
    "extensions.controlnet.extension:ControlNet",
    "extensions.tiling:Tiling",  # after the VAE's and ControlNet's hooks: it pads the modules they add too
    "extensions.seeds:Seeds",  # after ControlNet, whose pipeline draws the noise; before hires fix, which draws again
    "extensions.soft_inpainting:SoftInpaint",  # around whichever inpaint pipeline the hooks before it chose
    "extensions.upscale:Upscale",
    "extensions.refiner:Refiner",  # after every hook that shapes the model's pipeline (hires fix's second pass too)
    "extensions.detailer:Detailer",  # after hires fix, whose pictures it details
    "extensions.train:Train",
    "extensions.scripts:Scripts",  # its Script dropdown goes under every other panel, as A1111's does
)


def create(settings: Settings) -> list[Extension]:
    """One of each registered extension, made from the app's settings."""
    extensions = []
    for entry in REGISTERED:
        module, name = entry.split(":")
        extensions.append(getattr(import_module(module), name).from_settings(settings))
    return extensions
