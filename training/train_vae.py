"""Train the shapes model's KL VAE: 64 px images to 16x16x4 latents (4x down-sampling, not SD's 8x: at 64 px an
8x VAE would leave 8x8 latents, too coarse for a small shape). Reconstruction (L1 + MSE) plus a small KL term.

Then a second phase trains the decoder alone on plain and pastel images alike. The encoder already tells pastel
colours apart, but a decoder that only ever saw plain ones turned the pastel LoRA's pink into olive; with the
encoder frozen, the latents every other model trains on stay exactly as they were.

    python -m training.train_vae [--steps 1500] [--batch 16] [--seed 0]

Resumable: run it again and it goes on from models/demo/shapes-work/vae.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL

from training.common import IMAGE_SIZE, WORK_DIR, Run, batches, command_line, decayed, to_tensor

KL_WEIGHT = 1e-6
DECODER_STEPS = 300  # after the joint steps: half of each batch plain, half pastel
DECODER_LR = 5e-4


def make_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32, 64), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, norm_num_groups=16,
        sample_size=IMAGE_SIZE,
    )


def reconstruction_loss(reconstruction: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    return (reconstruction - pixels).abs().mean() + ((reconstruction - pixels) ** 2).mean()


def decoder_parameters(vae: AutoencoderKL) -> list[torch.nn.Parameter]:
    """What the decoder phase trains: everything after the latents."""
    return [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]


def train(steps: int, batch_size: int, seed: int, lr: float = 1e-3, folder=WORK_DIR / "vae",
          decoder_steps: int = DECODER_STEPS) -> AutoencoderKL:
    run = Run(folder, seed)
    vae = run.model("model", AutoencoderKL, make_vae)

    def save() -> None:
        run.save({"model": vae})

    if run.step < steps:
        optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
        data = batches(seed, batch_size, run.step)
        while run.step < steps:
            pixels = to_tensor(next(data)[0])
            posterior = vae.encode(pixels).latent_dist
            loss = reconstruction_loss(vae.decode(posterior.sample()).sample, pixels)
            loss = loss + KL_WEIGHT * posterior.kl().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            run.advance(loss, steps, save, every=50)
    total = steps + decoder_steps
    if run.step < total:
        train_decoder(vae, run, steps, total, batch_size, seed, save)
    return vae


def train_decoder(vae: AutoencoderKL, run: Run, start: int, total: int, batch_size: int, seed: int, save) -> None:
    """The decoder phase, steps `start` to `total` of `run`, seeded afresh: a run resumed at its first step (as
    the shipped VAE was) ends exactly as a straight one."""
    torch.manual_seed(seed + run.step)
    vae.requires_grad_(False)
    parameters = decoder_parameters(vae)
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=DECODER_LR)
    done = run.step - start
    plain = batches(seed + 1, batch_size // 2, done)
    pastel = batches(seed + 2, batch_size - batch_size // 2, done, style="pastel")
    while run.step < total:
        pixels = to_tensor(next(plain)[0] + next(pastel)[0])
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.sample()
        loss = reconstruction_loss(vae.decode(latents).sample, pixels)
        for group in optimizer.param_groups:
            group["lr"] = decayed(DECODER_LR, run.step - start, total - start)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.advance(loss, total, save, every=50)


def main(argv: list[str] | None = None) -> None:
    command_line(train, __doc__, steps=1500, batch=16, argv=argv)


if __name__ == "__main__":
    main()
