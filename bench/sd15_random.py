"""The real SD 1.5 architecture with random weights, built from the configs the project ships (no download).

    python -m bench.sd15_random [--inpainting] FOLDER

Saved once as a diffusers folder; the benchmarks load it like any downloaded model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from models.families import SD1

CACHE = Path(__file__).resolve().parent / "results" / "models"


def build(folder: Path, inpainting: bool = True) -> Path:
    import diffusers
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if (folder / "model_index.json").exists():
        return folder
    configs = SD1.config_folder(9 if inpainting else 4)
    torch.manual_seed(0)
    components = {
        "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet")),
        "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
        "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder")),
        "tokenizer": CLIPTokenizer.from_pretrained(configs / "tokenizer", model_max_length=77),
        "scheduler": PNDMScheduler.from_config(PNDMScheduler.load_config(configs / "scheduler")),
    }
    pipeline_class = "StableDiffusionInpaintPipeline" if inpainting else "StableDiffusionPipeline"
    pipe = getattr(diffusers, pipeline_class)(
        **components, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def cached(inpainting: bool = True) -> Path:
    return build(CACHE / ("sd15-random-inpainting" if inpainting else "sd15-random"), inpainting)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--inpainting", action="store_true")
    args = parser.parse_args()
    print(build(args.folder, args.inpainting))
