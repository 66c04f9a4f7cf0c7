"""Hugging Face ZeroGPU: borrow a GPU per call, and change nothing anywhere else.

On a ZeroGPU Space a function gets a GPU only while it runs under `@spaces.GPU(duration=...)`, and the job is
killed when it runs past `duration` seconds; a shorter duration gets a better place in the queue. Everywhere else
`gpu(fn, ...)` hands back `fn` itself, so local runs, tests and ordinary GPU Spaces run exactly the same code.

`spaces` is imported only when the environment says ZeroGPU, and only when asked (nothing at import time). On
ZeroGPU it has to be imported before torch initialises CUDA, so call `on_zerogpu()` before the model loads.

What ZeroGPU changes about a call (spaces 0.3x, `spaces/zero/wrappers.py`): the wrapped function runs in a forked
worker process that is kept while it stays idle; its arguments and its return value are pickled across, and
gr.Progress updates are forwarded back. State the call changes inside that worker (a LoRA loaded, the manager's
interrupt flag) is not seen by the main process, so wrap the Gradio handlers whose arguments are plain values.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import os
from collections.abc import Callable
from typing import TypeVar

from models.validate import integer

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable)

ENVIRONMENT = "SPACES_ZERO_GPU"  # set by Hugging Face on ZeroGPU hardware; read by spaces.config.Config
MODES = ("txt2img", "img2img", "inpaint", "outpaint")
DURATION_RANGE = (10, 300)  # seconds booked; past 300 a job is better split than booked longer

# The time model, made generous on purpose: an overrun kills the job, a margin only costs some queue priority.
# An SD 1.5 step at 512x512 (U-Net on a batch of 2 for classifier-free guidance) takes roughly 0.05-0.1 s on an
# A10G or a ZeroGPU H200 slice in fp16; SECONDS_PER_STEP is 2.5-5x that, to cover LoRA switching and a cold worker.
BASE_SECONDS = {  # worker start and weights to the GPU (the first call), text encoder, VAE decode, saving PNGs
    "txt2img": 6.0,
    "img2img": 8.0,  # plus the VAE encode of the input image
    "inpaint": 8.0,
    "outpaint": 8.0,
}
SECONDS_PER_STEP = 0.25  # at 512x512, one image; scaled linearly by pixels and batch size
CONTROLNET_STEP_FACTOR = 0.4  # each ControlNet unit adds about 40% to a step (a ControlNet is ~40% of a U-Net)
CONTROLNET_UNIT_SECONDS = 3.0  # per unit, once: the preprocessor on the control image and loading its weights
REFERENCE_PIXELS = 512 * 512
# Per family: (seconds more to start, a step's cost per pixel against SD 1.5's). SDXL's 6.9 GB of weights take longer
# to reach the GPU, and its step at 1024x1024 takes about 5.6x SD 1.5's at 512x512 (4x the pixels) on an A10G.
FAMILY_COST = {"sdxl": (6.0, 1.4)}


def on_zerogpu() -> bool:
    """True only on ZeroGPU hardware with the `spaces` package importable."""
    if not _truthy(os.environ.get(ENVIRONMENT)):
        return False
    try:
        import spaces  # noqa: F401 - on ZeroGPU this import patches torch, hence before the model loads
    except ImportError:
        log.warning("%s is set but the spaces package is not installed; running without ZeroGPU", ENVIRONMENT)
        return False
    config = _spaces_config()
    return bool(getattr(config, "zero_gpu", True)) if config is not None else True


def _truthy(value: str | None) -> bool:
    """spaces.utils.boolean's rule: "1", "t" or "true", any case."""
    return value is not None and value.lower() in ("1", "t", "true")


def _spaces_config():
    """spaces.config.Config (read from the environment when spaces was imported), or None where it has none."""
    import spaces

    module = getattr(spaces, "config", None)
    if module is None:
        try:
            import spaces.config as module
        except ImportError:
            return None
    return getattr(module, "Config", None)


def estimate_seconds(steps: int, width: int, height: int, batch_size: int, controlnet_units: int = 0,
                     mode: str = "txt2img", family: str = "sd1") -> int:
    """Seconds to book for one generation: the base plus steps x per-step cost x (pixels / 512^2) x batch x
    (1 + 0.4 per ControlNet unit), each as the model `family` (its key) costs, rounded up and kept within
    DURATION_RANGE."""
    for name, value, low in (("steps", steps, 1), ("width", width, 1), ("height", height, 1),
                             ("batch_size", batch_size, 1), ("controlnet_units", controlnet_units, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be a whole number of at least {low}, got {value!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    start, per_pixel = FAMILY_COST.get(family, (0.0, 1.0))
    step = SECONDS_PER_STEP * per_pixel * (width * height / REFERENCE_PIXELS) * batch_size
    seconds = (BASE_SECONDS[mode] + start + CONTROLNET_UNIT_SECONDS * controlnet_units
               + steps * step * (1 + CONTROLNET_STEP_FACTOR * controlnet_units))
    low, high = DURATION_RANGE
    return max(low, min(high, math.ceil(seconds)))


def gpu(fn: F, duration_of: Callable[..., int]) -> F:
    """`fn` itself off ZeroGPU; on ZeroGPU, `fn` under `spaces.GPU` with a duration computed per call by
    `duration_of`, which receives the call's own arguments. The signature is kept: Gradio reads it for the API's
    parameter names and to find the gr.Progress parameter."""
    if not on_zerogpu():
        return fn
    import spaces

    wrapped = spaces.GPU(duration=lambda *args, **kwargs: duration_of(*args, **kwargs))(fn)
    if wrapped is not fn:
        functools.update_wrapper(wrapped, fn)  # spaces does this too; here it does not depend on its version
    return wrapped


def duration_from_call(fn: Callable, mode: str, family: Callable[[], str] = lambda: "sd1") -> Callable[..., int]:
    """A `duration_of` for `gpu(fn, ...)` that reads steps, width, height, batch_size and controlnet_units from
    the call by their parameter names in `fn`'s signature, for the model in use (`family()`: its family's key). A
    value it cannot read books the longest duration: the service validates it a moment later, and a job that ends
    early costs nothing extra."""
    signature = inspect.signature(fn)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")

    def duration_of(*args, **kwargs) -> int:
        try:
            values = signature.bind_partial(*args, **kwargs).arguments
            return estimate_seconds(
                *(integer(name, values.get(name, default)) for name, default in
                  (("steps", 20), ("width", 512), ("height", 512), ("batch_size", 1))),
                _unit_count(values.get("controlnet_units")), mode, family(),
            )
        except (TypeError, ValueError):
            return DURATION_RANGE[1]

    return duration_of


def _unit_count(units) -> int:
    """Enabled ControlNet units in an API or UI unit list (a unit is enabled unless it says otherwise)."""
    if not units:
        return 0
    return sum(1 for unit in units if not isinstance(unit, dict) or unit.get("enabled", True))
