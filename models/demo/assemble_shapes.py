"""Put the trained shapes parts together as a diffusers StableDiffusionInpaintPipeline folder (safetensors, fp16
to keep the repository small) and measure it with the evaluation metrics over the seeded prompts.

    python -m models.demo.assemble_shapes [--out models/demo/sd-shapes-inpainting] [--evaluate 50]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from models.demo.evaluate_shapes import evaluate, seeded_prompts
from models.demo.train_unet import BETAS, TOKENIZER
from models.demo.training import IMAGE_SIZE, WORK_DIR

OUT = Path(__file__).resolve().parent / "sd-shapes-inpainting"


def assemble(out: Path = OUT, work: Path = WORK_DIR) -> Path:
    state = json.loads((work / "unet" / "state.json").read_text())
    vae = AutoencoderKL.from_pretrained(work / "vae" / "model")
    vae.register_to_config(scaling_factor=state["latent_scale"])
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=CLIPTextModel.from_pretrained(work / "unet" / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(TOKENIZER, model_max_length=77),
        unet=UNet2DConditionModel.from_pretrained(work / "unet" / "unet"),
        scheduler=PNDMScheduler(num_train_timesteps=1000, skip_prk_steps=True, steps_offset=1, **BETAS),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipe.to(torch.float16).save_pretrained(out, safe_serialization=True)
    return out


def measure(folder: Path, count: int = 50, steps: int = 20) -> dict:
    from models.manager import PipelineManager
    from models.request import GenerationRequest

    manager = PipelineManager.load(str(folder), device="cpu")
    prompts = seeded_prompts(count)
    images = []
    for index, (caption, _) in enumerate(prompts):
        request = GenerationRequest("txt2img", caption, steps=steps, width=IMAGE_SIZE, height=IMAGE_SIZE, seed=index,
                                    guidance_scale=5.0)
        images.append(np.asarray(manager.generate(request).images[0]))
    return evaluate(images, [scene for _, scene in prompts])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--evaluate", type=int, default=50, help="seeded prompts to measure (0: none)")
    args = parser.parse_args(argv)
    folder = assemble(args.out)
    if args.evaluate:
        print(json.dumps(measure(folder, args.evaluate)))


if __name__ == "__main__":
    main()
