"""What a job costs before it runs: its floating-point operations, from the model's own layers, and the device's
measured seconds per operation.

A U-Net step (and a VAE decode) at p pixels takes L·p + Q·p² operations: its convolutions and linear layers grow with
the pixels, its self-attention with their square (at 2048x2048 the demo model's attention is 97% of a step). L and Q
are counted once per model by torch's FlopCounterMode over two tiny real forward passes (a few milliseconds), so
they hold for any size and any model of this family. The seconds per operation are measured: a short calibration
run at the start (`PipelineManager.calibrate`), then every call's step times. On SD 1.5's architecture on a 2-core
CPU the seconds per operation stay within 15% from 256 to 768 px; on the demo model within 2x from 64 to 768 px.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch.utils import flop_counter

from models.request import Pass

SMALL = 8  # latent side of the counting passes (SD's U-Nets halve it three times)
DEFAULT_SECONDS_PER_FLOP = {"cpu": 4e-12, "mps": 1e-12, "cuda": 1e-14}  # before anything was measured


# PyTorch's CPU attention kernel has no FLOP formula of its own in torch 2.14; it does what the others do.
if torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default not in flop_counter.flop_registry:
    @flop_counter.register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
    def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


@dataclass(frozen=True)
class Growth:
    """FLOPs = linear·p + quadratic·p² for p pixels (of the image the latents decode to)."""

    linear: float
    quadratic: float

    def at(self, pixels: float) -> float:
        return self.linear * pixels + self.quadratic * pixels * pixels

    @classmethod
    def counted(cls, forward, pixels: int) -> Growth:
        """From the FLOPs of `forward(scale)` at `pixels` times scale²: scales 1, 2 and 3 give the constant part
        (the time embedding, ...), which is left out, the linear and the quadratic one."""
        one, two, three = (_flops(forward, scale) for scale in (1, 2, 3))
        quadratic = ((three - two) - 5 / 3 * (two - one)) / (40 * pixels * pixels)
        linear = ((two - one) - 15 * quadratic * pixels * pixels) / (3 * pixels)
        return cls(max(0.0, linear), max(0.0, quadratic))


def _flops(forward, scale: int) -> float:
    with torch.no_grad(), flop_counter.FlopCounterMode(display=False) as counter:
        forward(scale)
    return float(counter.get_total_flops())


class CostModel:
    """A model's cost in FLOPs, counted on first use, and the device's measured seconds per FLOP."""

    def __init__(self, unet, vae, device_type: str, vae_scale_factor: int = 8):
        self._unet, self._vae, self._scale = unet, vae, vae_scale_factor
        self._counted: tuple[Growth, Growth] | None = None
        self._lock = threading.Lock()
        self.seconds_per_flop = DEFAULT_SECONDS_PER_FLOP.get(device_type, DEFAULT_SECONDS_PER_FLOP["cpu"])
        self.measured = False  # seconds_per_flop comes from this device's own runs

    @property
    def counted(self) -> bool:
        return self._counted is not None

    def growth(self) -> tuple[Growth, Growth]:
        """(the U-Net's step for one image, the VAE's decode of one image), counted once."""
        with self._lock:
            if self._counted is None:
                self._counted = self._count()
            return self._counted

    def _count(self) -> tuple[Growth, Growth]:
        unet, vae, factor = self._unet, self._vae, self._scale
        parameter = next(unet.parameters())
        side = SMALL * factor
        width = unet.config.cross_attention_dim
        context = torch.zeros(1, 77, width, device=parameter.device, dtype=parameter.dtype)

        def step(scale: int):
            latents = torch.zeros(1, unet.config.in_channels, SMALL * scale, SMALL * scale, device=parameter.device,
                                  dtype=parameter.dtype)
            unet(latents, torch.tensor(500, device=parameter.device), encoder_hidden_states=context,
                 added_cond_kwargs=size_conditioning(unet, parameter))

        def decode(scale: int):
            latents = torch.zeros(1, vae.config.latent_channels, SMALL * scale, SMALL * scale,
                                  device=parameter.device, dtype=next(vae.parameters()).dtype)
            vae.decode(latents)

        return Growth.counted(step, side * side), Growth.counted(decode, side * side)

    def flops(self, passes: list[Pass], images: int, guided: bool, encodes: bool = False) -> float:
        """FLOPs of a job of `images` images (`guided`: classifier-free guidance doubles the U-Net's batch; an
        `encodes` job also encodes its picture, about as costly as a decode)."""
        step, decode = self.growth()
        unet = sum(step.at(each.width * each.height) * each.steps for each in passes) * (2 if guided else 1)
        last = passes[-1].width * passes[-1].height
        vae = decode.at(last) * (2 if encodes else 1) + sum(decode.at(each.width * each.height)
                                                            for each in passes[:-1])  # a pass's decode between
        return (unet + vae) * images

    def seconds(self, passes: list[Pass], images: int, guided: bool, encodes: bool = False) -> float:
        return self.flops(passes, images, guided, encodes) * self.seconds_per_flop

    def observe(self, seconds: float, flops: float) -> None:
        """A measured stretch of work: the seconds per FLOP move towards it (the first measurement replaces the
        default)."""
        if seconds <= 0 or flops <= 0:
            return
        rate = seconds / flops
        self.seconds_per_flop = rate if not self.measured else 0.7 * self.seconds_per_flop + 0.3 * rate
        self.measured = True

    def step_flops(self, width: int, height: int, images: int, guided: bool) -> float:
        return self.growth()[0].at(width * height) * images * (2 if guided else 1)


def size_conditioning(unet, like: torch.Tensor) -> dict | None:
    """An SDXL U-Net's extra inputs (zeros): the pooled text and the six numbers of the size conditioning."""
    config = unet.config
    if config.addition_embed_type != "text_time":
        return None
    pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
    return {"text_embeds": torch.zeros(1, pooled, device=like.device, dtype=like.dtype),
            "time_ids": torch.zeros(1, 6, device=like.device, dtype=like.dtype)}
