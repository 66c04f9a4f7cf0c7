"""Train the shapes model's KL VAE: 64 px images to 16x16x4 latents (4x down-sampling, not SD's 8x: at 64 px an
8x VAE would leave 8x8 latents, too coarse for a small shape). Reconstruction (L1 + MSE) plus a small KL term.

    python -m models.demo.train_vae [--steps 1500] [--batch 16] [--seed 0]

Resumable: run it again and it goes on from models/demo/shapes-work/vae.
"""

from __future__ import annotations


import torch
from diffusers import AutoencoderKL

from models.demo.training import DEVICE, IMAGE_SIZE, WORK_DIR, Run, batches, command_line, to_tensor

KL_WEIGHT = 1e-6


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def train(steps: int, batch_size: int, seed: int, lr: float = 1e-3, folder=WORK_DIR / "vae") -> AutoencoderKL:
    run = Run(folder, seed)
    folder = run.resumable("model")
    vae = (AutoencoderKL.from_pretrained(folder) if folder else make_vae()).to(DEVICE)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    data = batches(seed, batch_size, run.step)
    while run.step < steps:
        images, _, _ = next(data)
        pixels = to_tensor(images)
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        loss = (reconstruction - pixels).abs().mean() + ((reconstruction - pixels) ** 2).mean()
        loss = loss + KL_WEIGHT * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.advance(loss, steps, lambda: run.save({"model": vae}), every=50)
    return vae


def main(argv: list[str] | None = None) -> None:
    command_line(train, __doc__, steps=1500, batch=16, argv=argv)

if __name__ == "__main__":
    main()
