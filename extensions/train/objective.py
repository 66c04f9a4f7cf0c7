"""The training objective the seed documents describe: noise a latent at a random timestep, have the U-Net predict
the noise (or, for a v-prediction model, the velocity), and minimise the mean squared error; with Min-SNR-gamma
weighting (Hang et al. 2023) as an option, which stops the nearly clean timesteps from dominating."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def training_noise(latents: torch.Tensor, low_frequency: Mapping[int, float] = {}) -> torch.Tensor:
    """White noise plus low-frequency noise: for each (grid side, strength), random per-channel planes on a coarse
    grid, smoothly upsampled. Side 1 is kohya's `noise_offset` (a constant per channel). A model trained with such
    noise is fine-tuned with the same, or it learns to read flat colours off its noisy input again."""
    noise = torch.randn_like(latents)
    for side, strength in low_frequency.items():
        if strength:
            coarse = torch.randn(*latents.shape[:2], side, side, device=latents.device, dtype=latents.dtype)
            noise += strength * F.interpolate(coarse, size=latents.shape[-2:], mode="bilinear", align_corners=False)
    return noise


def target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the U-Net learns to predict: the noise (epsilon), or the velocity for a v-prediction scheduler."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"prediction type {kind!r} cannot be trained here (only epsilon and v_prediction)")


def snr_weights(scheduler, timesteps: torch.Tensor, gamma: float, floor: float = 0.0) -> torch.Tensor:
    """Min-SNR-gamma: min(SNR, gamma) / SNR for epsilon, / (SNR + 1) for v-prediction (the same weight on the
    predicted clean latent); SNR clamped from below at `floor` (0: no floor)."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    clamped = snr.clamp(min=floor, max=gamma) if floor else snr.clamp(max=gamma)
    divisor = snr + 1 if scheduler.config.prediction_type == "v_prediction" else snr
    return clamped / divisor


def diffusion_loss(scheduler, prediction: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor,
                   timesteps: torch.Tensor, min_snr_gamma: float | None = None,
                   pixel_weights: torch.Tensor | None = None, floor: float = 0.0) -> torch.Tensor:
    """Each sample's squared error against `target`, averaged over its latents (weighted by `pixel_weights`, (N, 1,
    H, W), when given), then over the batch, each sample weighted by Min-SNR when `min_snr_gamma` is given."""
    errors = F.mse_loss(prediction.float(), target(scheduler, latents, noise, timesteps).float(), reduction="none")
    if pixel_weights is None:
        per_sample = errors.mean(dim=(1, 2, 3))
    else:
        per_sample = (errors * pixel_weights).mean(dim=(1, 2, 3)) / pixel_weights.mean(dim=(1, 2, 3))
    if min_snr_gamma is not None:
        per_sample = per_sample * snr_weights(scheduler, timesteps, min_snr_gamma, floor)
    return per_sample.mean()
