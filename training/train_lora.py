"""Train the shapes model's sample LoRA, a "pastel" style: the same captions, images painted in pastel (every colour
mixed toward white). peft adapters on the linear layers of the U-Net's attention blocks, trained through the same
loss with everything else frozen; saved as a diffusers LoRA .safetensors the app's LoRA library loads.
(A first "striped" style could not work: the VAE, trained on flat colours only, cannot reconstruct stripes.)

    python -m training.train_lora [--steps 1200] [--batch 32] [--seed 0]

Needs models/demo/shapes-work/{vae,unet}. Resumable from models/demo/shapes-work/lora.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import StableDiffusionInpaintPipeline
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from training.common import WORK_DIR, Run, batches, command_line
from training.train_unet import denoising_loss, frozen_parts

RANK = 4
# every linear layer of the attention blocks, the layers a LoRA for SD 1.x usually trains
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
WEIGHTS = "pastel.safetensors"


def train(steps: int, batch_size: int, seed: int, lr: float = 1e-2, work: Path = WORK_DIR) -> Path:
    latent_cache, unet, text_encoder, tokenizer, scale = frozen_parts(work)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian",
                                target_modules=TARGETS))
    run = Run(work / "lora", seed)
    saved = run.folder / WEIGHTS
    if saved.exists():  # resume: the adapter's weights as last saved (peft's own key layout)
        set_peft_model_state_dict(unet, load_file(str(run.folder / "peft.safetensors")))
    trainable = [parameter for parameter in unet.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    rng = np.random.default_rng([seed, run.step])
    data = batches(seed + 13, batch_size, run.step, style="pastel")
    while run.step < steps:
        # a style covers the background as much as the shapes: every latent cell weighs the same
        loss = denoising_loss(unet, (latent_cache, text_encoder, tokenizer, scale), next(data), rng, weigh_shapes=False)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        run.advance(loss, steps, lambda: _save(unet, run))
    return saved


def _save(unet, run: Run) -> None:
    peft_state = get_peft_model_state_dict(unet)
    save_file({key: value.contiguous() for key, value in peft_state.items()}, str(run.folder / "peft.safetensors"))
    StableDiffusionInpaintPipeline.save_lora_weights(
        run.folder, unet_lora_layers=convert_state_dict_to_diffusers(peft_state), weight_name=WEIGHTS,
        safe_serialization=True,
    )
    run.save({})  # the step and seed


def main(argv: list[str] | None = None) -> None:
    command_line(train, __doc__, steps=1200, batch=32, argv=argv)

if __name__ == "__main__":
    main()
