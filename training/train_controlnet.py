"""Train one of the shapes model's ControlNets: the trained U-Net and text encoder stay frozen; the ControlNet learns
to follow its condition:

- `canny` (the default): the dataset's Canny edges, starting from a copy of the U-Net's encoder with a 4-channel
  conv_in (as real SD 1.5 ControlNets have: the ControlNet inpaint pipeline feeds it the noisy latents only);
  shipped as models/ControlNet/shapes-canny;
- `segmentation`: the scene's segmentation map in the ADE20K palette (`shapes.segmentation`: a "wall" background,
  each shape in the colour of its kind's class), as sd-webui-controlnet's seg models read, starting from the
  trained canny ControlNet; shipped as models/ControlNet/shapes-seg.

    python -m training.train_controlnet [--condition canny|segmentation] [--steps N] [--batch 32] [--seed 0]

Needs models/demo/shapes-work/{vae,unet}, or takes the shipped pipeline's when they are not there (`frozen_parts`).
Resumable from models/demo/shapes-work/controlnet (canny) or shapes-work/controlnet-seg (segmentation).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from models.demo.shipped import CONTROLNET_DIR, CONTROLNET_NAME, SEGMENTATION_NAME
from training.common import DEVICE, IMAGE_SIZE, WORK_DIR, Run, batches
from training.shapes import KINDS, POSITIONS, TEMPLATES, caption, edges, moved, reshaped, segmentation
from training.train_unet import epsilon_loss, frozen_parts, masks, noisy_inputs

# Half the captions dropped, as the ControlNet paper trains: with the caption the U-Net alone already knows where
# the shapes go, and the ControlNet would learn little from the edges.
CAPTION_DROP = 0.5
# A share of the one-shape captions put the shape somewhere else than the image (and its edges) do: the edges must
# win, as a user who draws an outline and types "a red circle" (which means: in the centre) expects.
CAPTION_ELSEWHERE = 0.3
# A segmentation map says both where a shape goes and what kind it is, so a share of the one-shape captions name
# another place, another kind or both (a third each) than the map: the map wins on kind and place, the caption
# still gives the colours (which the map does not carry).
CAPTION_AGAINST_MAP = 0.5


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


def _as_control(maps) -> torch.Tensor:
    """RGB PIL maps as the pipeline gives them to a ControlNet: NCHW in [0, 1], on DEVICE."""
    stacked = np.stack([np.asarray(image.convert("RGB")) for image in maps])
    return torch.from_numpy(stacked).to(DEVICE).permute(0, 3, 1, 2).float() / 255


def control_images(images) -> torch.Tensor:
    """Canny edges as the pipeline gives them to a ControlNet: RGB in [0, 1]."""
    return _as_control([edges(image) for image in images])


def segmentation_images(scenes) -> torch.Tensor:
    """The scenes' ADE20K segmentation maps as the pipeline gives them to a ControlNet: RGB in [0, 1]."""
    return _as_control([segmentation(scene, IMAGE_SIZE) for scene in scenes])


def captions_against_edges(captions, scenes, rng: np.random.Generator) -> list[str]:
    """The captions, with CAPTION_ELSEWHERE of the one-shape ones replaced by the caption of the scene `moved`."""
    return [caption(moved(scene, int(rng.integers(1, len(POSITIONS)))), seed=int(rng.integers(len(TEMPLATES))))
            if len(scene.shapes) == 1 and rng.random() < CAPTION_ELSEWHERE else text
            for text, scene in zip(captions, scenes)]


def captions_against_map(captions, scenes, rng: np.random.Generator) -> list[str]:
    """The captions, with CAPTION_AGAINST_MAP of the one-shape ones replaced by the caption of the scene `moved`,
    `reshaped` or both (a third each); colour, size and background stay the scene's."""
    out = []
    for text, scene in zip(captions, scenes):
        if len(scene.shapes) != 1 or rng.random() >= CAPTION_AGAINST_MAP:
            out.append(text)
            continue
        change, said = int(rng.integers(3)), scene  # 0: the place, 1: the kind, 2: both
        if change != 1:
            said = moved(said, int(rng.integers(1, len(POSITIONS))))
        if change != 0:
            said = reshaped(said, int(rng.integers(1, len(KINDS))))
        out.append(caption(said, seed=int(rng.integers(len(TEMPLATES)))))
    return out


@dataclass(frozen=True)
class Condition:
    """What one ControlNet learns to follow: its run folder under the work folder, its control maps of a batch
    (images, scenes) and its captions set against them, its default number of steps, and the condition whose
    trained ControlNet it starts from (None: from the U-Net's encoder, `make_controlnet`)."""

    folder: str
    maps: Callable[[list, list], torch.Tensor]
    captions: Callable[[list, list, np.random.Generator], list[str]]
    steps: int
    start_from: str | None = None


SHIPPED_CONTROLNETS = {"canny": CONTROLNET_NAME, "segmentation": SEGMENTATION_NAME}  # their folders' names
CONDITIONS: dict[str, Condition] = {
    "canny": Condition("controlnet", lambda images, scenes: control_images(images), captions_against_edges, 1200),
    "segmentation": Condition("controlnet-seg", lambda images, scenes: segmentation_images(scenes),
                              captions_against_map, 1000, start_from="canny"),
}


def starting_controlnet(recipe: Condition, unet: UNet2DConditionModel, work: Path) -> ControlNetModel:
    """A new run's ControlNet: made from the U-Net's encoder, or a copy of the `start_from` condition's trained
    ControlNet (from the work folder, else the shipped one, as float32). The canny ControlNet already carries the
    layout of a control image into the U-Net (its zero convolutions are no longer zero), so a segmentation run
    started from it learns in the minutes a CPU gives it what a run from zero convolutions does not."""
    if recipe.start_from is None:
        return make_controlnet(unet)
    trained = work / CONDITIONS[recipe.start_from].folder / "model"
    if not (trained / "config.json").exists():
        trained = CONTROLNET_DIR / SHIPPED_CONTROLNETS[recipe.start_from]
    print(f"the ControlNet starts from {trained}", flush=True)
    return ControlNetModel.from_pretrained(trained, dtype=torch.float32)


def train(steps: int, batch_size: int, seed: int, lr: float = 5e-4, work: Path = WORK_DIR,
          condition: str = "canny") -> ControlNetModel:
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {tuple(CONDITIONS)}, got {condition!r}")
    recipe = CONDITIONS[condition]
    latent_cache, unet, text_encoder, tokenizer, scale = frozen_parts(work)
    run = Run(work / recipe.folder, seed)
    controlnet = run.model("model", ControlNetModel, lambda: starting_controlnet(recipe, unet, work))
    optimizer = torch.optim.AdamW(controlnet.parameters(), lr=lr)
    rng = np.random.default_rng([seed, run.step])
    data = batches(seed + 7, batch_size, run.step)
    while run.step < steps:
        images, captions, scenes = next(data)
        full = rng.random(len(images)) < 0.7  # mostly txt2img with control, sometimes inpainting with it
        mask = torch.where(torch.from_numpy(full)[:, None, None, None].to(DEVICE), 1.0, masks(scenes, rng))
        noisy, unet_input, timesteps, noise, context = noisy_inputs(
            latent_cache, text_encoder, tokenizer, scale, images, mask, recipe.captions(captions, scenes, rng),
            rng, caption_drop=CAPTION_DROP)
        down, mid = controlnet(noisy, timesteps, encoder_hidden_states=context,
                               controlnet_cond=recipe.maps(images, scenes), return_dict=False)
        prediction = unet(unet_input, timesteps, context, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample
        loss = epsilon_loss(prediction, noise, timesteps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.advance(loss, steps, lambda: run.save({"model": controlnet}))
    return controlnet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--condition", choices=tuple(CONDITIONS), default="canny")
    parser.add_argument("--steps", type=int, default=None, help="default: 1200 for canny, 1000 for segmentation")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps = CONDITIONS[args.condition].steps if args.steps is None else args.steps
    train(steps, args.batch, args.seed, condition=args.condition)


if __name__ == "__main__":
    main()
