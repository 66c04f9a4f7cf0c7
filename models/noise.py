"""Variation seeds, as A1111 has them: an image's initial noise is its seed's noise turned towards another seed's
(the variation seed, by its strength: 0 the seed's, 1 the variation seed's), and "seed resize from" draws the seed's
noise at another size and places it in the middle, so that a picture found at one size keeps its layout at another.

The noise of an image comes from its generator (models/manager.py gives each image a CPU generator of its seed). A
`VariedGenerator` is such a generator that also carries its image's variation. diffusers' pipelines draw their
initial noise through the `randn_tensor` their module imported, once a call; `allow_variations` replaces that name in
the loaded pipeline modules with `varied_randn`, which honours a VariedGenerator and leaves every other draw as it
was. Every later draw (an ancestral sampler's noise, the VAE's sample) comes from the seed alone, as in A1111.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch
from diffusers.utils import torch_utils

ORIGINAL_RANDN = torch_utils.randn_tensor


@dataclass(frozen=True)
class Variation:
    subseed: int  # the variation seed
    strength: float  # 0: the seed's noise; 1: the variation seed's
    resize_from: tuple[int, int] | None = None  # (width, height) in latent pixels the seed's noise is drawn at


class VariedGenerator(torch.Generator):
    """A CPU generator of `seed`, carrying the variation its image's initial noise takes."""

    def __new__(cls, seed: int, variation: Variation):
        return super().__new__(cls, "cpu")

    def __init__(self, seed: int, variation: Variation):
        self.manual_seed(seed)
        self.seed = seed
        self.variation = variation

    def again(self) -> VariedGenerator:
        """A new generator of the same seed and variation (hires fix's second pass draws its noise anew)."""
        return VariedGenerator(self.seed, self.variation)

    def initial_noise(self, shape: tuple[int, ...], dtype: torch.dtype | None) -> torch.Tensor:
        """One image's initial noise of `shape` (1, C, H, W), drawn as A1111's ImageRNG draws its first noise."""
        variation = self.variation
        drawn_at = shape if variation.resize_from is None else (*shape[:2], variation.resize_from[1],
                                                                variation.resize_from[0])
        noise = torch.randn(shape, generator=self, dtype=dtype) if drawn_at == shape else _randn(self.seed, drawn_at,
                                                                                                  dtype)
        if variation.strength:
            noise = slerp(variation.strength, noise, _randn(variation.subseed, drawn_at, dtype))
        if drawn_at != shape:
            noise = centred_in(torch.randn(shape, generator=self, dtype=dtype), noise)
        return noise


def again(generator: torch.Generator) -> torch.Generator:
    """A new generator of `generator`'s seed (and variation)."""
    if isinstance(generator, VariedGenerator):
        return generator.again()
    return torch.Generator("cpu").manual_seed(generator.initial_seed())


def _randn(seed: int, shape: tuple[int, ...], dtype: torch.dtype | None) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=dtype)


def slerp(strength: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from `low` (0) to `high` (1), each image as one vector: noise keeps its variance
    where a straight line between two noises would lower it."""
    flat_low, flat_high = low.flatten(1), high.flatten(1)
    dot = (flat_low / flat_low.norm(dim=1, keepdim=True) * flat_high / flat_high.norm(dim=1, keepdim=True)).sum(1)
    if bool((dot.abs() > 0.9995).all()):  # (nearly) parallel: the sine below would divide by about 0
        return torch.lerp(low, high, strength)
    omega = torch.acos(dot.clamp(-1, 1))
    sine = torch.sin(omega)
    shape = (-1,) + (1,) * (low.dim() - 1)
    return ((torch.sin((1 - strength) * omega) / sine).view(shape) * low
            + (torch.sin(strength * omega) / sine).view(shape) * high)


def centred_in(target: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """`target` with `noise`'s middle pasted into its middle (what of it fits: it may be larger either way)."""
    target = target.clone()
    (height, width), (from_height, from_width) = target.shape[-2:], noise.shape[-2:]
    rows, columns = min(height, from_height), min(width, from_width)
    top, left = (height - rows) // 2, (width - columns) // 2
    from_top, from_left = (from_height - rows) // 2, (from_width - columns) // 2
    target[..., top:top + rows, left:left + columns] = noise[..., from_top:from_top + rows,
                                                             from_left:from_left + columns]
    return target


def varied_randn(shape, generator=None, device=None, dtype=None, layout=None):
    """diffusers' randn_tensor, except that an image whose generator is a VariedGenerator gets its varied noise."""
    generators = generator if isinstance(generator, list) else [generator]
    if not any(isinstance(each, VariedGenerator) for each in generators):
        return ORIGINAL_RANDN(shape, generator=generator, device=device, dtype=dtype, layout=layout)
    one = (1, *shape[1:]) if len(generators) > 1 or shape[0] == 1 else tuple(shape)
    noises = [each.initial_noise(one, dtype) if isinstance(each, VariedGenerator)
              else ORIGINAL_RANDN(one, generator=each, dtype=dtype, layout=layout) for each in generators]
    return torch.cat(noises).to(device or "cpu")


def allow_variations() -> None:
    """Have every loaded diffusers pipeline module draw its initial noise through `varied_randn` (idempotent; a
    plain generator's draw is unchanged)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("diffusers.pipelines.") and getattr(module, "randn_tensor", None) is ORIGINAL_RANDN:
            module.randn_tensor = varied_randn
