"""Where the model runs: device, dtype and attention backend, chosen once when the manager is built."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "mps", "cpu")
# For small cards (diffusers' offloading, over the one shared copy): "model" moves each whole module onto the
# device while it runs (text encoder, U-Net, VAE: the U-Net's size at a time, a little slower); "sequential" moves
# each layer (the least memory, several times slower).
OFFLOAD_MODES = ("none", "model", "sequential")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    attention: str  # "sdpa" or "xformers"
    attention_note: str = ""  # why xformers is not in use, when it is not
    offload: str = "none"  # OFFLOAD_MODES: the weights live on the CPU and visit `device` while they run

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        note = f" ({self.attention_note})" if self.attention_note else ""
        offload = f" · offload: {self.offload}" if self.offload != "none" else ""
        return f"{self.device.type} · {dtype} · attention: {self.attention}{note}{offload}"


def resolve_runtime(requested: str = "auto", offload: str = "none") -> Runtime:
    """CUDA with fp16 when present, then MPS (fp16), else CPU with fp32; xformers only if a probe call works."""
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if offload not in OFFLOAD_MODES:
        raise ValueError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}")
    device = _pick_device(requested)
    if offload == "sequential" and device.type == "cpu":  # accelerate's per-layer hooks fail onto the CPU itself
        raise ValueError("offload 'sequential' needs a GPU (it moves each layer onto it as it runs); on the CPU the "
                         "weights are in memory already: use offload 'none'")
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    why_not = xformers_unusable(device, dtype)
    return Runtime(device=device, dtype=dtype, attention="sdpa" if why_not else "xformers",
                   attention_note=why_not or "", offload=offload)


def _pick_device(requested: str) -> torch.device:
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "cuda" and not cuda:
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if requested == "mps" and not mps:
        raise ValueError("device 'mps' was asked for but torch sees no MPS device")
    if requested == "auto":
        requested = "cuda" if cuda else "mps" if mps else "cpu"
    return torch.device(requested)


def xformers_unusable(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why xformers cannot serve attention here, or None when a real call on `device` works. Importing xformers
    succeeds even when its kernels were built for another torch (it only logs a warning, silenced here); only a
    real call tells."""
    if device.type != "cuda":
        return f"xformers has no {device.type} kernels"
    if importlib.util.find_spec("xformers") is None:
        return "xformers is not installed"
    try:
        ops = import_xformers_ops()
        q = torch.randn(1, 16, 2, 40, device=device, dtype=dtype)
        ops.memory_efficient_attention(q, q, q)
        torch.cuda.synchronize(device)
        return None
    except Exception as error:  # ImportError, NotImplementedError, RuntimeError: all mean "don't use it"
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        log.info("xformers not used: %s", reason)
        return f"xformers failed its probe: {reason[:120]}"


def import_xformers_ops():
    """`xformers.ops`, without the warning xformers logs on import when its kernels were built for another torch
    (the probe call says whether it works; the warning would only alarm users of the CPU and SDPA)."""
    quiet = logging.getLogger("xformers")
    level, quiet.level = quiet.level, logging.ERROR
    try:
        import xformers.ops

        return xformers.ops
    finally:
        quiet.level = level
