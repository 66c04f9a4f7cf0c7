"""ControlNet: preprocessors by sd-webui-controlnet module name with a cache of detected maps (preprocessors.py;
the weight-free maps in simple_maps.py, those that run a model in detectors.py), a library of ControlNet models
(library.py: diffusers folders, original single files, Hub ids) and a small LRU cache of loaded ones (cache.py), the
units users give (units.py) and the manager hook that runs a request's units (pipeline.py, `install`)."""

from extensions.controlnet.cache import ControlNetCache
from extensions.controlnet.library import ControlNetEntry, ControlNetLibrary
from extensions.controlnet.preprocessors import MapCache, Preprocessor, Slider, available, detect, get

__all__ = [
    "available", "detect", "get", "MapCache", "Preprocessor", "Slider",
    "ControlNetCache", "ControlNetEntry", "ControlNetLibrary",
]
