"""Put the trained shapes parts where the app finds them (safetensors, fp16 to keep the repository small): the
diffusers StableDiffusionInpaintPipeline folder that `--model demo` loads, the canny and segmentation ControlNet
folders and the pastel LoRA file. `python -m bench.shapes_model` then measures them.

    python -m training.assemble_shapes
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    PNDMScheduler,
    StableDiffusionInpaintPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel

from models.demo import shipped
from training.common import WORK_DIR
from training.train_controlnet import CONDITIONS
from training.train_lora import WEIGHTS as LORA_WEIGHTS
from training.train_unet import BETAS, load_tokenizer


def assemble(out: Path = shipped.PIPELINE_DIR, work: Path = WORK_DIR) -> Path:
    """The pipeline folder from the trained VAE, text encoder and U-Net."""
    state = json.loads((work / "unet" / "state.json").read_text())
    vae = AutoencoderKL.from_pretrained(work / "vae" / "model")
    vae.register_to_config(scaling_factor=state["latent_scale"])
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=CLIPTextModel.from_pretrained(work / "unet" / "text_encoder"),
        tokenizer=load_tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(work / "unet" / "unet"),
        scheduler=PNDMScheduler(num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, **BETAS),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    return out


def export_controlnet(run_folder: Path, out: Path) -> Path:
    """A trained ControlNet (its run folder's `model`) as an fp16 safetensors diffusers folder."""
    ControlNetModel.from_pretrained(run_folder / "model").to(torch.float16).save_pretrained(
        out, safe_serialization=True)
    return out


def export_extensions(work: Path = WORK_DIR, controlnet_out: Path | None = None, lora_out: Path | None = None,
                      segmentation_out: Path | None = None) -> None:
    """The trained ControlNets (fp16 folders) and LoRA (.safetensors file) into the app's default folders."""
    controlnet_out = controlnet_out or shipped.CONTROLNET_DIR / shipped.CONTROLNET_NAME
    segmentation_out = segmentation_out or shipped.CONTROLNET_DIR / shipped.SEGMENTATION_NAME
    lora_out = lora_out or shipped.LORA_DIR / f"{shipped.LORA_NAME}.safetensors"
    export_controlnet(work / CONDITIONS["canny"].folder, controlnet_out)
    export_controlnet(work / CONDITIONS["segmentation"].folder, segmentation_out)
    lora_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / "lora" / LORA_WEIGHTS, lora_out)


def main() -> None:
    print(assemble())
    export_extensions()


if __name__ == "__main__":
    main()
