"""Where the model runs: device, dtype and attention backend, chosen once when the manager is built."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype
    attention: str  # "sdpa" or "xformers"

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.device.type} · {dtype} · attention: {self.attention}"


def resolve_runtime(requested: str = "auto") -> Runtime:
    """CUDA with fp16 when present, then MPS (fp16), else CPU with fp32; xformers only if a probe call works."""
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    device = _pick_device(requested)
    dtype = torch.float32 if device.type == "cpu" else torch.float16
    attention = "xformers" if _xformers_works(device, dtype) else "sdpa"
    return Runtime(device=device, dtype=dtype, attention=attention)


def _pick_device(requested: str) -> torch.device:
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "cuda" and not cuda:
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    if requested == "mps" and not mps:
        raise ValueError("device 'mps' was asked for but torch sees no MPS device")
    if requested == "auto":
        requested = "cuda" if cuda else "mps" if mps else "cpu"
    return torch.device(requested)


def _xformers_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Importing xformers succeeds even when its kernels don't match torch; only a real call tells."""
    if device.type != "cuda":
        return False
    try:
        import xformers.ops

        q = torch.randn(1, 16, 2, 40, device=device, dtype=dtype)
        xformers.ops.memory_efficient_attention(q, q, q)
        torch.cuda.synchronize(device)
        return True
    except Exception as error:  # ImportError, NotImplementedError, RuntimeError: all mean "don't use it"
        log.info("xformers not used: %s", str(error).splitlines()[0] if str(error) else type(error).__name__)
        return False
