"""Soft inpainting's arithmetic, written from A1111's description of it (1.8's soft inpainting), in torch:

- during the denoising, after every step the latents are blended with the original's (noised to the next step's
  level) by the soft mask raised to a power that follows the noise level (`step_mask`): a partly masked area is held
  close to the original early and let go late (the schedule bias shifts when, the preservation strength how much);
  the blend keeps each position's magnitude as the interpolation of the two magnitudes under a p-norm (`blend`,
  p = the transition contrast boost), so half-way areas keep their contrast instead of fading to grey;
- after it, each pixel takes the generated value by how much its area changed in latent space against a threshold
  (`composite_weights`: the difference threshold, scaled by the mask's odds as far as the mask influence says,
  sharpened by the difference contrast), and the original value for the rest. Where the mask is 0 the weight is 0:
  those pixels stay the original's, bit for bit.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from extensions.soft_inpainting.fields import SoftSettings

EPSILON = 1e-6


def step_mask(mask: torch.Tensor, sigma: float, settings: SoftSettings) -> torch.Tensor:
    """The weight of the generated latents after a step that started at noise level `sigma`: the mask raised to
    sigma ** bias * strength. A fully masked position stays 1 and an unmasked one 0 at every step."""
    power = max(sigma, 0.0) ** settings.schedule_bias * settings.preservation_strength
    return torch.where(mask > 0, mask.clamp(min=EPSILON) ** power, torch.zeros_like(mask))


def blend(original: torch.Tensor, generated: torch.Tensor, weight: torch.Tensor, contrast: float) -> torch.Tensor:
    """original * (1 - weight) + generated * weight, each position's channel vector rescaled to the p-norm mean of
    the two magnitudes (p = contrast): linear interpolation alone shrinks vectors that point different ways."""
    mixed = original * (1 - weight) + generated * weight
    size_original = original.norm(dim=1, keepdim=True)
    size_generated = generated.norm(dim=1, keepdim=True)
    wanted = ((1 - weight) * size_original ** contrast + weight * size_generated ** contrast) ** (1 / contrast)
    return mixed * (wanted / mixed.norm(dim=1, keepdim=True).clamp(min=EPSILON))


def composite_weights(original: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor,
                      settings: SoftSettings) -> torch.Tensor:
    """The generated pixels' weight per latent position, (batch, 1, h, w) in [0, 1]: by the latents' change (its
    largest nearby value, smoothed, so a changed object takes its edge along) against the threshold."""
    change = (generated.float() - original.float()).norm(dim=1, keepdim=True)
    change = F.avg_pool2d(F.max_pool2d(change, 3, 1, 1), 3, 1, 1, count_include_pad=False)
    # the mask's odds of being kept, to the power of the mask's influence: 1 at influence 0
    odds = ((1 - mask + EPSILON) / (mask + EPSILON)) ** settings.mask_influence
    threshold = settings.difference_threshold * odds
    ratio = change / threshold.clamp(min=EPSILON)
    kept = smootherstep(1 / (1 + ratio ** settings.difference_contrast))
    return (1 - kept) * (mask > 0)


def smootherstep(x: torch.Tensor) -> torch.Tensor:
    """Perlin's smootherstep on [0, 1]: flat at both ends."""
    x = x.clamp(0, 1)
    return x * x * x * (x * (6 * x - 15) + 10)


def composite(original: torch.Tensor, generated: torch.Tensor, weights: torch.Tensor,
              mask: torch.Tensor) -> torch.Tensor:
    """Pixels (batch, 3, H, W), uint8 values as floats: the generated ones by `weights` (batch, 1, h, w at latent
    size), the original ones exactly where the pixels' `mask` (batch, 1, H, W) is 0."""
    weights = F.interpolate(weights, size=original.shape[-2:], mode="bilinear", align_corners=False) * (mask > 0)
    mixed = torch.round(original + (generated - original) * weights)
    return torch.where(weights > 0, mixed, original)


def sigma_of(scheduler, timestep) -> float:
    """The noise level (k-diffusion's sigma) of a training timestep: sqrt((1 - alpha_bar) / alpha_bar)."""
    alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
    return ((1 - alpha_bar) / alpha_bar) ** 0.5
