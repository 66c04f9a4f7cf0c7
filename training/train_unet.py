"""Train the shapes model's text encoder and 9-channel inpainting U-Net together, on the epsilon objective over the
trained VAE's latents (each image encoded once, `LatentCache`), weighted by a clamped SNR over the timesteps and
toward the shapes over the latents. Masks: a full mask (so txt2img and img2img run through the same U-Net), a
shape's box (so "repaint this shape green" is learnt) or a random rectangle; the caption is dropped 10% of the time
for classifier-free guidance.

    python -m training.train_unet [--steps 7000] [--batch 32] [--seed 0]

Needs models/demo/shapes-work/vae (train_vae). Resumable from models/demo/shapes-work/unet. The ControlNet and the
LoRA train on top of the frozen parts this trains (`frozen_parts`), or on the shipped pipeline's when shapes-work
does not hold them.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from extensions.train.objective import diffusion_loss
from extensions.train.objective import training_noise as low_frequency_noise
from models.demo.shipped import PIPELINE_DIR, PLUMBING_DIR
from training.common import DEVICE, IMAGE_SIZE, WORK_DIR, Run, batches, command_line, decayed, to_tensor
from training.shapes import grown_box, shape_box

TOKENIZER = PLUMBING_DIR / "tokenizer"  # the real CLIP vocabulary
CAPTION_DROP = 0.1
# Low-frequency noise added to the white noise while training ("offset noise"): a flat background or a large shape
# shows through white noise at almost every timestep, so without it the U-Net reads the colours off its noisy input
# and never learns to take them from the caption; at sampling time they then follow the starting noise instead.
LOW_FREQUENCY_NOISE = {1: 0.5, 4: 0.3}  # grid side -> strength
BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}  # SD 1.x's schedule
NOISE_SCHEDULER = DDPMScheduler(num_train_timesteps=1000, **BETAS)
# Min-SNR-gamma loss weighting (Hang et al. 2023): the nearly clean timesteps, where the U-Net only polishes
# outlines, weigh less, so a short run spends its steps on the noisy ones, where the caption decides the colour,
# the kind and the place of a shape.
MIN_SNR_GAMMA = 5.0
# ... and the noisiest ones weigh more: the epsilon loss hardly trains the clean image the U-Net predicts at SNR
# under 0.2 (t > 600), yet that is where the sampler settles where a shape goes; so the clean-image error weighs at
# least SNR_FLOOR (500 steps continued from the shipped U-Net: shape kind 0.66 -> 0.70, colour 0.82 -> 0.85).
SNR_FLOOR = 0.25
# Extra loss weight on the latent cells in or next to a shape's box: a small shape covers a few percent of the
# latents, so with a plain mean the U-Net learns the flat background first and the shapes' outlines last.
FOREGROUND_WEIGHT = 4.0


def make_text_encoder() -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, projection_dim=64,
        max_position_embeddings=77, vocab_size=49408,
    ))


def make_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 4, in_channels=9, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64), norm_num_groups=16, cross_attention_dim=64, attention_head_dim=4,
        addition_embed_type="text", addition_embed_type_num_heads=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    )


def masks(scenes, rng: np.random.Generator) -> torch.Tensor:
    """One mask per scene (1 = repaint): full, the first shape's box grown a little, or a random rectangle."""
    out = np.zeros((len(scenes), 1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for index, scene in enumerate(scenes):
        kind = rng.random()
        if kind < 0.5:
            out[index] = 1
            continue
        if kind < 0.8:
            x0, y0, x1, y1 = grown_box(scene.shapes[0], IMAGE_SIZE, pad=3)
        else:
            x0, y0 = rng.integers(0, IMAGE_SIZE - 16, 2)
            x1, y1 = x0 + rng.integers(16, IMAGE_SIZE - x0 + 1), y0 + rng.integers(16, IMAGE_SIZE - y0 + 1)
        out[index, 0, y0:y1, x0:x1] = 1
    return torch.from_numpy(out).to(DEVICE)


def latent_scale(vae: AutoencoderKL, seed: int) -> float:
    """1 / std of the VAE's latents over a batch, as SD's 0.18215 was chosen."""
    images, _, _ = next(batches(seed + 1, 256))
    with torch.no_grad():
        return float(1 / vae.encode(to_tensor(images)).latent_dist.mode().std())


def training_noise(latents: torch.Tensor) -> torch.Tensor:
    """White noise plus LOW_FREQUENCY_NOISE (the app's training noise, extensions/train/objective.py)."""
    return low_frequency_noise(latents, LOW_FREQUENCY_NOISE)


def foreground_weights(scenes, side: int) -> torch.Tensor:
    """(N, 1, side, side) loss weights for `side` x `side` latents: 1 + FOREGROUND_WEIGHT on the cells of each
    shape's box grown by one cell, 1 elsewhere."""
    out = np.ones((len(scenes), 1, side, side), dtype=np.float32)
    for index, scene in enumerate(scenes):
        for shape in scene.shapes:
            x0, y0, x1, y1 = shape_box(shape)
            rows = slice(max(int(y0 * side) - 1, 0), min(int(np.ceil(y1 * side)) + 1, side))
            columns = slice(max(int(x0 * side) - 1, 0), min(int(np.ceil(x1 * side)) + 1, side))
            out[index, 0, rows, columns] = 1 + FOREGROUND_WEIGHT
    return torch.from_numpy(out).to(DEVICE)


def epsilon_loss(prediction: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
                 pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The epsilon objective (the app's, extensions/train/objective.py): each sample's squared error, averaged over
    the latents with `pixel_weights` (N, 1, H, W) when given, then weighted by clamp(SNR, SNR_FLOOR,
    MIN_SNR_GAMMA) / SNR."""
    return diffusion_loss(NOISE_SCHEDULER, prediction, None, noise, timesteps, MIN_SNR_GAMMA, pixel_weights,
                          floor=SNR_FLOOR)


class LatentCache:
    """The frozen VAE's latent distribution of each image, encoded once and sampled anew on every use. The dataset
    is finite and deterministic (1,350 one-shape scenes, each drawn about 90 times in a U-Net run), so most of a
    batch's encodes repeat; keyed by a digest of the pixels, so a scene in another style is another image.
    Two-shape scenes almost never repeat, so the least recently used beyond `limit` are dropped (about 40 MB held
    instead of growing with the run); in the first 100,000 images drawn, no scene was dropped and then seen again."""

    def __init__(self, vae: AutoencoderKL, limit: int = 20_000):
        self.vae = vae
        self.limit = limit
        self.stored: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()

    def sample(self, images) -> torch.Tensor:
        """Latents drawn from each PIL image's distribution (mean + std * noise), as latent_dist.sample() draws."""
        keys = [hashlib.blake2b(np.asarray(image).tobytes(), digest_size=16).digest() for image in images]
        first = {key: index for index, key in reversed(list(enumerate(keys)))}
        new = [key for key in first if key not in self.stored]
        if new:
            with torch.no_grad():
                encoded = self.vae.encode(to_tensor([images[first[key]] for key in new])).latent_dist
            self.stored.update((key, (encoded.mean[j], encoded.std[j])) for j, key in enumerate(new))
        mean = torch.stack([self.stored[key][0] for key in keys])
        std = torch.stack([self.stored[key][1] for key in keys])
        for key in first:
            self.stored.move_to_end(key)
        while len(self.stored) > self.limit:
            self.stored.popitem(last=False)
        return mean + std * torch.randn_like(mean)


def masked_latents(vae: AutoencoderKL, pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The VAE latents of the images with the masked part blacked out, as the inpaint pipeline makes them; a full
    mask leaves a black image, encoded once for all of them (half the U-Net's samples: 0.60 -> 0.56 s a step)."""
    kept = (mask < 0.5).flatten(1).any(dim=1)
    black = vae.encode(torch.zeros_like(pixels[:1])).latent_dist.mode()
    out = black.expand(len(pixels), -1, -1, -1).clone()
    if kept.any():
        out[kept] = vae.encode(pixels[kept] * (mask[kept] < 0.5)).latent_dist.mode()
    return out


def noisy_inputs(latent_cache: LatentCache, text_encoder, tokenizer, scale: float, images, mask: torch.Tensor,
                 captions, rng: np.random.Generator, caption_drop: float = CAPTION_DROP):
    """One training batch of PIL images as the U-Net sees it: (noisy latents, the 9-channel input, timesteps,
    the noise, the caption context). Captions are dropped with `caption_drop` for classifier-free guidance."""
    captions = [caption if rng.random() >= caption_drop else "" for caption in captions]
    latents = latent_cache.sample(images) * scale
    with torch.no_grad():
        masked = masked_latents(latent_cache.vae, to_tensor(images), mask) * scale
    small_mask = F.interpolate(mask, size=latents.shape[-2:])
    tokens = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    noise = training_noise(latents)
    timesteps = torch.randint(0, 1000, (len(captions),), device=latents.device)
    noisy = NOISE_SCHEDULER.add_noise(latents, noise, timesteps)
    context = text_encoder(tokens.input_ids.to(latents.device))[0]
    return noisy, torch.cat([noisy, small_mask, masked], dim=1), timesteps, noise, context


def denoising_loss(unet, encoders: tuple, batch: tuple, rng: np.random.Generator,
                   weigh_shapes: bool = True) -> torch.Tensor:
    """The epsilon objective on one (images, captions, scenes) batch, with `foreground_weights` when
    `weigh_shapes`; `encoders`: (LatentCache, text_encoder, tokenizer, latent scale)."""
    images, captions, scenes = batch
    _, unet_input, timesteps, noise, context = noisy_inputs(*encoders, images, masks(scenes, rng),
                                                            captions, rng)
    prediction = unet(unet_input, timesteps, context).sample
    weights = foreground_weights(scenes, prediction.shape[-1]) if weigh_shapes else None
    return epsilon_loss(prediction, noise, timesteps, weights)


def load_tokenizer() -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(TOKENIZER, model_max_length=77)


def frozen_vae(work: Path = WORK_DIR) -> AutoencoderKL:
    return AutoencoderKL.from_pretrained(work / "vae" / "model").requires_grad_(False).eval().to(DEVICE)


def frozen_parts(work: Path = WORK_DIR, pipeline: Path = PIPELINE_DIR):
    """The trained VAE (in a LatentCache), U-Net and text encoder, frozen, with the tokenizer and the latent scale
    (for training the ControlNet and the LoRA on top of them): from `work` when it holds a trained U-Net
    (unet/state.json), else from the shipped pipeline folder (`shipped_parts`)."""
    if not (work / "unet" / "state.json").exists():
        print(f"{work} holds no trained U-Net: the frozen parts come from {pipeline}", flush=True)
        return shipped_parts(pipeline)
    latent_cache = LatentCache(frozen_vae(work))
    unet = UNet2DConditionModel.from_pretrained(work / "unet" / "unet").requires_grad_(False).to(DEVICE)
    text_encoder = CLIPTextModel.from_pretrained(work / "unet" / "text_encoder").requires_grad_(False).to(DEVICE)
    scale = json.loads((work / "unet" / "state.json").read_text())["latent_scale"]
    return latent_cache, unet, text_encoder, load_tokenizer(), scale


def shipped_parts(pipeline: Path = PIPELINE_DIR):
    """`frozen_parts` from a shipped (fp16) pipeline folder, loaded as float32: the VAE, U-Net and text encoder
    the app runs, and the latent scale its VAE config carries (`scaling_factor`, which `assemble_shapes` writes
    from the U-Net run's `latent_scale`). So a checkout without shapes-work can still train a ControlNet or a LoRA
    on the shipped model."""
    def frozen(cls, name):
        return cls.from_pretrained(pipeline / name, dtype=torch.float32).requires_grad_(False).eval().to(DEVICE)

    vae = frozen(AutoencoderKL, "vae")
    return (LatentCache(vae), frozen(UNet2DConditionModel, "unet"), frozen(CLIPTextModel, "text_encoder"),
            load_tokenizer(), float(vae.config.scaling_factor))


def train(steps: int, batch_size: int, seed: int, lr: float = 5e-4, work: Path = WORK_DIR):
    vae = frozen_vae(work)
    run = Run(work / "unet", seed)
    scale = latent_scale(vae, seed)
    latent_cache = LatentCache(vae)
    text_encoder = run.model("text_encoder", CLIPTextModel, make_text_encoder)
    unet = run.model("unet", UNet2DConditionModel, make_unet)
    tokenizer = load_tokenizer()
    parameters = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    rng = np.random.default_rng([seed, run.step])
    data = batches(seed, batch_size, run.step)
    while run.step < steps:
        loss = denoising_loss(unet, (latent_cache, text_encoder, tokenizer, scale), next(data), rng)
        for group in optimizer.param_groups:
            group["lr"] = decayed(lr, run.step, steps)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        run.advance(loss, steps, lambda: run.save({"unet": unet, "text_encoder": text_encoder},
                                                  {"latent_scale": scale}))
    return unet, text_encoder, scale


def main(argv: list[str] | None = None) -> None:
    command_line(train, __doc__, steps=7000, batch=32, argv=argv)

if __name__ == "__main__":
    main()
