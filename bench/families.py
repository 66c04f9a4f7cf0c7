"""Model families on this CPU: SDXL (and its 9-channel inpainting model) and SD 2.x v-prediction through the shared
manager against plain diffusers, and the memory of every mode of an SDXL model against one plain pipeline.

    python -m bench.families [--rounds N]

- overhead: a txt2img generation through the manager vs the same plain diffusers call on the same weights (the tiny
  models of testing/family_models.py, 128 px, 20 steps), interleaved; goal at most 1.03x, as for SD 1.x;
- SDXL's A1111 prompt encoding: a weighted prompt of two chunks (both text encoders, emphasis, the pooled vector)
  against diffusers' own encoding of a plain prompt, in the same interleaved rounds;
- memory: process RSS after txt2img, img2img and inpaint through the manager vs after one plain pipeline's call, each
  in its own process, on an SDXL inpainting model of SDXL's real layout at half its width (random weights, 0.9 B
  parameters, so that the weights, not the libraries, make the RSS); goal at most 1.05x.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from PIL import Image

from bench.common import interleaved, median_ratio
from bench.memory import rss_mib
from models import families
from models.manager import PipelineManager
from models.request import GenerationRequest
from models.samplers import make_scheduler

CACHE = Path(__file__).resolve().parent / "results" / "models"
SIZE, STEPS = 128, 20


def tiny(family: str) -> Path:
    from testing.family_models import build

    folder = CACHE / f"tiny-{family}"
    return folder if (folder / "model_index.json").is_file() else build(family, folder)


def half_sdxl_inpainting() -> Path:
    """SDXL's inpainting model's layout (levels, depths, two text encoders, size conditioning) at half its widths,
    random weights, saved once."""
    import json as _json

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = CACHE / "sdxl-half-inpainting"
    if (folder / "model_index.json").is_file():
        return folder
    configs = families.CONFIGS_DIR / "sdxl-inpainting"
    unet = UNet2DConditionModel.load_config(configs / "unet")
    encoders = [_json.loads((configs / part / "config.json").read_text()) for part in ("text_encoder",
                                                                                      "text_encoder_2")]
    for encoder in encoders:
        encoder.update(hidden_size=encoder["hidden_size"] // 2, intermediate_size=encoder["intermediate_size"] // 2,
                       projection_dim=encoder["projection_dim"] // 2)
    unet.update(block_out_channels=[width // 2 for width in unet["block_out_channels"]],
                attention_head_dim=[heads // 2 for heads in unet["attention_head_dim"]],
                cross_attention_dim=encoders[0]["hidden_size"] + encoders[1]["hidden_size"],
                projection_class_embeddings_input_dim=6 * 256 + encoders[1]["projection_dim"])
    torch.manual_seed(0)
    settings = lambda config: {k: v for k, v in config.items() if k not in ("architectures", "model_type")}  # noqa: E731
    pipe = StableDiffusionXLInpaintPipeline(
        unet=UNet2DConditionModel.from_config(unet),
        vae=AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**settings(encoders[0]))),
        text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**settings(encoders[1]))),
        scheduler=EulerDiscreteScheduler.from_config(EulerDiscreteScheduler.load_config(configs / "scheduler")),
        **families.tokenizers(families.SDXL), add_watermarker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def overhead(family: str, rounds: int) -> dict:
    manager = PipelineManager.load(str(tiny(family)), device="cpu")
    pipe = manager.pipelines["txt2img"]
    plain = type(pipe)(**pipe.components, **families.options_of(type(pipe)))
    plain.set_progress_bar_config(disable=True)
    extra = {}
    if manager.is_inpainting_model:
        extra = {"image": Image.new("RGB", (SIZE, SIZE)), "mask_image": Image.new("L", (SIZE, SIZE), 255),
                 "strength": 1.0}
    request = GenerationRequest("txt2img", "a red circle", width=SIZE, height=SIZE, steps=STEPS, seed=1,
                                sampler="Euler")

    def diffusers_call():
        plain.scheduler = make_scheduler("Euler", pipe.scheduler.config, [1])
        plain(prompt="a red circle", negative_prompt="", width=SIZE, height=SIZE, num_inference_steps=STEPS,
              guidance_scale=7.0, generator=torch.Generator().manual_seed(1), **extra)

    candidates = {"manager": lambda: manager.generate(request), "plain": diffusers_call}
    if manager.family.is_xl:
        from extensions.prompts import Prompts
        from service.studio import StudioService

        service = StudioService(manager, CACHE / "outputs", [Prompts(CACHE / "embeddings")])
        weighted = {"prompt": "a (red:1.3) circle BREAK a [blue] square", "width": SIZE, "height": SIZE,
                    "steps": STEPS, "seed": 1, "sampler": "Euler"}
        plain_service = {**weighted, "prompt": "a red circle, a blue square"}
        candidates["weighted"] = lambda: service.generate(*service.build("txt2img", weighted))
        candidates["plain text"] = lambda: service.generate(*service.build("txt2img", plain_service))
    times = interleaved(candidates, rounds)
    figures = {"family": manager.family.name, "manager s": statistics.median(times["manager"]),
               "plain s": statistics.median(times["plain"]), "ratio": median_ratio(times["manager"], times["plain"])}
    line = (f"families  {family} ({manager.family.name}), {SIZE} px, {STEPS} steps: manager {figures['manager s']:.3f}"
            f" s, plain diffusers {figures['plain s']:.3f} s: {figures['ratio']:.3f}x")
    if "weighted" in times:
        figures["weighted ratio"] = median_ratio(times["weighted"], times["plain text"])
        line += f"; A1111's weighted 2-chunk prompt vs a plain one: {figures['weighted ratio']:.3f}x"
    print(line)
    return figures


def scenario(name: str, folder: str) -> float:
    """Runs inside a child process; its RSS in MiB after the work."""
    from diffusers import StableDiffusionXLInpaintPipeline

    image, mask = Image.new("RGB", (64, 64), "gray"), Image.new("L", (64, 64), 255)
    if name == "manager, three modes used":
        manager = PipelineManager.load(folder, device="cpu")
        for mode in ("txt2img", "img2img", "inpaint"):
            manager.generate(GenerationRequest(mode, "a cat", image=image, mask=mask, width=64, height=64, steps=2,
                                               seed=1, strength=1.0))
    else:
        pipe = StableDiffusionXLInpaintPipeline.from_pretrained(folder, add_watermarker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe(prompt="a cat", image=image, mask_image=mask, width=64, height=64, num_inference_steps=2)
    return rss_mib()


def memory() -> dict:
    folder = str(half_sdxl_inpainting())
    results = {}
    for name in ("one plain pipeline", "manager, three modes used"):
        output = subprocess.run([sys.executable, "-m", "bench.families", "--child", name, folder],
                                capture_output=True, text=True, check=True).stdout
        results[name] = json.loads(output.strip().splitlines()[-1])
    ratio = results["manager, three modes used"] / results["one plain pipeline"]
    print(f"families  memory, SDXL inpainting layout at half width: one plain pipeline "
          f"{results['one plain pipeline']:,.0f} MiB, the manager with every mode used "
          f"{results['manager, three modes used']:,.0f} MiB: {ratio:.3f}x")
    return {**results, "ratio": ratio}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    return {"overhead": [overhead(family, args.rounds) for family in ("sdxl", "sdxl-inpainting", "sd2-v")],
            "memory": memory()}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(scenario(sys.argv[2], sys.argv[3])))
    else:
        main()
