"""Train the shapes model's canny ControlNet: the trained U-Net and text encoder stay frozen; the ControlNet starts
from a copy of the U-Net's encoder with a 4-channel conv_in (as real SD 1.5 ControlNets have: the ControlNet
inpaint pipeline feeds it the noisy latents only) and learns to follow the dataset's Canny edges.

    python -m models.demo.train_controlnet [--steps 1200] [--batch 32] [--seed 0]

Needs models/demo/shapes-work/{vae,unet}. Resumable from models/demo/shapes-work/controlnet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from models.demo.shapes import POSITIONS, TEMPLATES, caption, edges, moved
from models.demo.train_unet import epsilon_loss, frozen_parts, masks, noisy_inputs
from models.demo.training import DEVICE, WORK_DIR, Run, batches, command_line


# Half the captions dropped, as the ControlNet paper trains: with the caption the U-Net alone already knows where
# the shapes go, and the ControlNet would learn little from the edges.
CAPTION_DROP = 0.5
# A share of the one-shape captions put the shape somewhere else than the image (and its edges) do: the edges must
# win, as a user who draws an outline and types "a red circle" (which means: in the centre) expects.
CAPTION_ELSEWHERE = 0.3


def make_controlnet(unet: UNet2DConditionModel) -> ControlNetModel:
    config = unet.config
    controlnet = ControlNetModel(
        in_channels=4, block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
        down_block_types=tuple(config.down_block_types), cross_attention_dim=config.cross_attention_dim,
        attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_num_groups,
        addition_embed_type=config.addition_embed_type,
        addition_embed_type_num_heads=config.addition_embed_type_num_heads,
        conditioning_embedding_out_channels=(16, 32, 64),  # two stride-2 steps: 64 px to the 16x16 latents
    )
    shared = {key: value for key, value in unet.state_dict().items() if not key.startswith("conv_in.")}
    controlnet.load_state_dict(shared, strict=False)  # the encoder, time and text embeddings, middle block
    with torch.no_grad():
        controlnet.conv_in.weight.copy_(unet.conv_in.weight[:, :4])
        controlnet.conv_in.bias.copy_(unet.conv_in.bias)
    return controlnet


def control_images(images) -> torch.Tensor:
    """Canny edges as the pipeline gives them to a ControlNet: RGB in [0, 1]."""
    stacked = np.stack([np.asarray(edges(image).convert("RGB")) for image in images])
    return torch.from_numpy(stacked).to(DEVICE).permute(0, 3, 1, 2).float() / 255


def captions_against_edges(captions, scenes, rng: np.random.Generator) -> list[str]:
    """The captions, with CAPTION_ELSEWHERE of the one-shape ones replaced by the caption of the scene `moved`."""
    return [caption(moved(scene, int(rng.integers(1, len(POSITIONS)))), seed=int(rng.integers(len(TEMPLATES))))
            if len(scene.shapes) == 1 and rng.random() < CAPTION_ELSEWHERE else text
            for text, scene in zip(captions, scenes)]


def train(steps: int, batch_size: int, seed: int, lr: float = 5e-4, work: Path = WORK_DIR) -> ControlNetModel:
    latent_cache, unet, text_encoder, tokenizer, scale = frozen_parts(work)
    run = Run(work / "controlnet", seed)
    controlnet = run.model("model", ControlNetModel, lambda: make_controlnet(unet))
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=lr)
    rng = np.random.default_rng([seed, run.step])
    data = batches(seed + 7, batch_size, run.step)
    while run.step < steps:
        images, captions, scenes = next(data)
        full = rng.random(len(images)) < 0.7  # mostly txt2img with control, sometimes inpainting with it
        mask = torch.where(torch.from_numpy(full)[:, None, None, None].to(DEVICE), 1.0, masks(scenes, rng))
        noisy, unet_input, timesteps, noise, context = noisy_inputs(
            latent_cache, text_encoder, tokenizer, scale, images, mask, captions_against_edges(captions, scenes, rng),
            rng, caption_drop=CAPTION_DROP)
        down, mid = controlnet(noisy, timesteps, encoder_hidden_states=context, controlnet_cond=control_images(images),
                               return_dict=False)
        prediction = unet(unet_input, timesteps, context, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample
        loss = epsilon_loss(prediction, noise, timesteps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.advance(loss, steps, lambda: run.save({"model": controlnet}))
    return controlnet


def main(argv: list[str] | None = None) -> None:
    command_line(train, __doc__, steps=1200, batch=32, argv=argv)

if __name__ == "__main__":
    main()
