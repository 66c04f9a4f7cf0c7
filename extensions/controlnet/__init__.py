"""ControlNet: preprocessors by sd-webui-controlnet module name with a cache of detected maps, a library of
ControlNet models (diffusers folders, original single files, Hub ids) and a small LRU cache of loaded ones, the
units users give (units.py) and the manager hook that runs a request's units (pipeline.py, `install`)."""

from extensions.controlnet.preprocessors import MapCache, Preprocessor, Slider, available, detect, get
from extensions.controlnet.registry import ControlNetCache, ControlNetEntry, ControlNetLibrary

__all__ = [
    "available", "detect", "get", "MapCache", "Preprocessor", "Slider",
    "ControlNetCache", "ControlNetEntry", "ControlNetLibrary",
]
