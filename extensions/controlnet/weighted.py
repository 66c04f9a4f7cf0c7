"""The ControlNet preprocessors that need weights, from controlnet-aux, and whether they can run here.

controlnet-aux's package `__init__` imports every detector, and with them timm and torchvision; PyPI's torchvision
cannot load beside the CPU build of torch this project pins ("operator torchvision::nms does not exist"), so on
such a machine `import controlnet_aux` fails and these detectors are reported unavailable, with the reason. Where it
imports (a CUDA machine after `pip install controlnet-aux`), a detector is available when its weights from
lllyasviel/Annotators are in the Hugging Face cache or the Hub answers; it loads on first use, once.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import threading
import time

from extensions.controlnet.annotators import DetectFn
from models.files import hub_unreachable

ANNOTATORS = "lllyasviel/Annotators"
HUB_PROBE_SECONDS = 60.0  # how long a "Hub reachable?" answer is trusted


class AuxDetector:
    """One controlnet-aux detector, loaded on first use and kept (its weights from lllyasviel/Annotators)."""

    def __init__(self, class_name: str, pretrained: bool = True):
        self.class_name, self.pretrained = class_name, pretrained
        self._lock = threading.Lock()
        self._instance = None

    def __call__(self):
        with self._lock:
            if self._instance is None:
                module = _import_controlnet_aux()
                cls = getattr(module, self.class_name)
                try:
                    if self.pretrained:
                        self._instance = cls.from_pretrained(ANNOTATORS, local_files_only=not _hub_reachable())
                    else:
                        self._instance = cls()
                except Exception as error:  # offline without the weights, a download cut short, ...
                    raise ValueError(
                        f"the {self.class_name} weights could not be loaded from {ANNOTATORS} "
                        f"({type(error).__name__}: {str(error)[:200]})"
                    ) from None
            return self._instance


def aux(detector: AuxDetector, **options) -> DetectFn:
    """A DetectFn calling `detector` at the size it is given; `options` may take the thresholds as
    callables (threshold_a, threshold_b) -> value."""

    def detect(rgb, a, b):
        short = min(rgb.shape[:2])
        kwargs = {key: value(a, b) if callable(value) else value for key, value in options.items()}
        result = detector()(rgb, detect_resolution=short, image_resolution=short, output_type="np", **kwargs)
        return result[1] if isinstance(result, tuple) else result  # normal_midas: (depth, normal)

    return detect


def missing_requirements(packages: tuple[str, ...], weights: tuple[str, ...]) -> str | None:
    """Why a detector needing `packages` and the Annotators files `weights` cannot run here, or None. Never waits
    long: the Hub probe gives up after 2 s and its answer is kept for a minute; with HF_HUB_OFFLINE=1 nothing is
    probed."""
    for package in packages:
        if importlib.util.find_spec(package) is None:
            return f"needs the {package.replace('_', '-')} package"
        if package == "controlnet_aux" and (error := _controlnet_aux_error()):
            return error
    if weights and not all(_in_hf_cache(name) for name in weights) and not _hub_reachable():
        return f"needs {', '.join(weights)} from {ANNOTATORS} in the Hugging Face cache (the Hub is unreachable)"
    return None


def _import_controlnet_aux():
    try:
        return importlib.import_module("controlnet_aux")
    except Exception as error:  # ImportError, or RuntimeError from a torchvision built for another torch
        raise ValueError(f"controlnet-aux does not import here ({type(error).__name__}: {error})") from None


@functools.cache
def _controlnet_aux_error() -> str | None:
    try:
        _import_controlnet_aux()
    except ValueError as error:
        return str(error)
    return None


def _in_hf_cache(filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(ANNOTATORS, filename), str)


_probe_lock = threading.Lock()
_probe: list = [0.0, False]  # [monotonic time of the last probe, reachable]


def _hub_reachable() -> bool:
    """models.files.hub_unreachable (at once with HF_HUB_OFFLINE=1), with a 2 s probe trusted for a minute: the
    preprocessor list asks for every weighted detector."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    with _probe_lock:
        if time.monotonic() - _probe[0] > HUB_PROBE_SECONDS:
            _probe[:] = [time.monotonic(), not hub_unreachable(timeout=2)]
        return _probe[1]
