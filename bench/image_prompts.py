"""Image prompts on this CPU: what an IP-Adapter unit and a T2I-Adapter unit cost per generation against none, and
what the picture's CLIP embedding costs, on the demo model and on the SD 1.5 architecture (random weights: an
IP-Adapter of ip-adapter_sd15's shape, OpenCLIP ViT-H/14's shape as the image encoder, a T2I-Adapter of
t2iadapter_canny_sd15v2's shape), interleaved in one run.

    python -m bench.image_prompts [--rounds N]

- IP-Adapter: a txt2img job with one unit (its embedding cached, as from the second request with the picture on) vs
  without: the image tokens' keys and values in each cross-attention layer, and the processors put on and taken off;
- T2I-Adapter: the same with one unit: the adapter runs once per call, its features are added at each step;
- an effective region (the left half) on the IP-Adapter unit vs the unit without: the mask resized in each
  cross-attention layer at each step;
- the embedding: the first request with a new picture encodes it once (ViT-H/14 at 224 px), against the seconds of
  the job without a unit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from bench.common import interleaved, median_ratio
from bench.sd15_random import cached
from extensions.controlnet.extension import ControlNet
from models.manager import PipelineManager
from models.request import GenerationRequest
from testing.adapter_files import save_image_encoder, save_ip_adapter, save_t2i_adapter

VIT_H = {"width": 1280, "projection": 1024, "layers": 32, "heads": 16, "image_size": 224, "patch": 14}


def picture(colour: str = "blue") -> Image.Image:
    image = Image.new("RGB", (320, 240), "red")
    ImageDraw.Draw(image).ellipse([40, 40, 200, 200], fill=colour)
    return image


def setup(model: str, folder: Path, full: bool) -> tuple[PipelineManager, ControlNet]:
    manager = PipelineManager.load(model, device="cpu")
    unet, scale = manager.pipelines["txt2img"].unet, manager.pipelines["txt2img"].vae_scale_factor
    annotators, adapters = folder / "annotators", folder / "ControlNet"
    if full:
        _save_vit_h(annotators)
    else:
        save_image_encoder(annotators)
    save_ip_adapter(unet, adapters / "ip.safetensors", embedding_width=VIT_H["projection"] if full else 32)
    save_t2i_adapter(unet, adapters / "t2i", vae_scale_factor=scale)
    extension = ControlNet(adapters, annotator_dir=annotators)
    extension.install(manager)
    return manager, extension


def _save_vit_h(annotators: Path) -> None:
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from extensions.controlnet.image_encoders import FOLDERS, REPOSITORY

    config = CLIPVisionConfig(hidden_size=VIT_H["width"], intermediate_size=4 * VIT_H["width"],
                              num_hidden_layers=VIT_H["layers"], num_attention_heads=VIT_H["heads"],
                              image_size=VIT_H["image_size"], patch_size=VIT_H["patch"],
                              projection_dim=VIT_H["projection"], hidden_act="gelu")
    torch.manual_seed(0)
    CLIPVisionModelWithProjection(config).save_pretrained(annotators / REPOSITORY / FOLDERS["h"],
                                                          safe_serialization=True)


def measure(name: str, model: str, full: bool, size: int, steps: int, rounds: int) -> dict:
    from extensions.controlnet.units import ControlUnit

    with tempfile.TemporaryDirectory() as folder:
        manager, extension = setup(model, Path(folder), full)

        def job(units=()) -> GenerationRequest:
            maps = tuple(unit.control_input(None, (size, size), 0) for unit in units)
            from extensions.controlnet.units import ControlNetPart

            parts = {"controlnet": ControlNetPart(tuple(enumerate(units)), maps)} if units else {}
            return GenerationRequest("txt2img", "a cat", width=size, height=size, steps=steps, seed=1, parts=parts)

        left = Image.new("L", (size, size), 0)
        left.paste(255, (0, 0, size // 2, size))
        ip = job([ControlUnit("ip-adapter_clip_h", "ip", image=picture())])
        ip_region = job([ControlUnit("ip-adapter_clip_h", "ip", image=picture(), effective_region_mask=left)])
        t2i = job([ControlUnit("none", "t2i", image=picture())])
        plain = job()
        times = interleaved({"none": lambda: manager.generate(plain), "ip": lambda: manager.generate(ip),
                             "ip_region": lambda: manager.generate(ip_region),
                             "t2i": lambda: manager.generate(t2i)}, rounds)
        encoders = extension.image_prompts.encoders
        encode_times = []
        for index in range(rounds):
            started = time.perf_counter()
            encoders.embedding(picture(f"#{index * 40:02x}8040"), "h", hidden=False)
            encode_times.append(time.perf_counter() - started)
    base = statistics.median(times["none"])
    result = {"ip": median_ratio(times["ip"], times["none"]), "t2i": median_ratio(times["t2i"], times["none"]),
              "ip_region": median_ratio(times["ip_region"], times["ip"]),
              "embedding_s": statistics.median(encode_times), "base_s": base}
    print(f"{name}, {size} px, {steps} steps: IP-Adapter unit {result['ip']:.3f}x, T2I-Adapter unit "
          f"{result['t2i']:.3f}x the job without ({base:.2f} s); an effective region on the IP-Adapter unit "
          f"{result['ip_region']:.3f}x the unit without; a new picture's embedding "
          f"{result['embedding_s']:.3f} s ({result['embedding_s'] / base:.2f}x the job)")
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    return {"demo": measure("demo model", "demo", False, 256, 20, args.rounds),
            "sd15": measure("SD 1.5 architecture", str(cached(inpainting=True)), True, 128, 4, args.rounds)}


if __name__ == "__main__":
    main()
