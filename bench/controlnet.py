"""ControlNet: per-step cost of one and two units vs none (SD 1.5 architecture, random weights, full-size SD 1.5
ControlNets), switching between two cached ControlNets vs loading one from disk every request, RSS over 100
switches, and the preprocessor's map cache (hit vs miss).

    python -m bench.controlnet
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from diffusers import ControlNetModel
from PIL import Image, ImageDraw

from bench.common import interleaved, median_ratio
from bench.memory import rss_mib
from bench.sd15_random import cached
from extensions.controlnet import extension as controlnet
from extensions.controlnet.library import SD15_CONFIG
from extensions.controlnet.preprocessors import MapCache
from extensions.controlnet.units import ControlInput, ControlNetPart
from models.manager import PipelineManager
from models.request import GenerationRequest
from testing.controlnet_files import controlnet_for

SIZE, STEPS = 128, 4


def ring(size: int) -> Image.Image:
    image = Image.new("RGB", (size, size), "black")
    ImageDraw.Draw(image).ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline="white", width=3)
    return image


def step_cost(folder: Path, rounds: int = 3) -> dict:
    manager = PipelineManager.load(str(cached(inpainting=True)), device="cpu")
    for seed in (1, 2):  # SD 1.5's ControlNet shape: the shipped config, random weights
        model = ControlNetModel.from_config(ControlNetModel.load_config(SD15_CONFIG))
        model.save_pretrained(folder / f"sd15_cn{seed}")
    controlnet.install(manager, folder)
    control = ring(SIZE)
    jobs = {
        name: GenerationRequest("txt2img", "a ring", width=SIZE, height=SIZE, steps=STEPS, seed=1,
                                parts={"controlnet": ControlNetPart(maps=tuple(ControlInput(f"sd15_cn{i}", control)
                                                                               for i in units))})
        for name, units in (("none", ()), ("one unit", (1,)), ("two units", (1, 2)))
    }
    times = interleaved({name: (lambda job=job: manager.generate(job)) for name, job in jobs.items()}, rounds)
    one, two = median_ratio(times["one unit"], times["none"]), median_ratio(times["two units"], times["none"])
    print(f"controlnet step cost  SD 1.5 architecture, {SIZE} px, {STEPS} steps: one unit {one:.2f}x, two units "
          f"{two:.2f}x the time without ({statistics.median(times['none']):.2f} s without)")
    return {"one_unit": one, "two_units": two}


def switching(folder: Path, switches: int = 100) -> dict:
    manager = PipelineManager.load("demo", device="cpu")
    unet, scale = manager.pipelines["txt2img"].unet, manager.pipelines["txt2img"].vae_scale_factor
    for seed in (1, 2):  # the shapes model's VAE down-samples 4x, not SD's 8x
        controlnet_for(unet, seed, vae_scale_factor=scale).save_pretrained(folder / f"demo_cn{seed}")
    controlnets = controlnet.install(manager, folder, cap=2)
    width = unet.config.cross_attention_dim
    controlnets.cache.get("demo_cn1", width), controlnets.cache.get("demo_cn2", width)

    def cached_switch():
        controlnets.cache.get("demo_cn1", width), controlnets.cache.get("demo_cn2", width)

    def load_every_time():
        ControlNetModel.from_pretrained(folder / "demo_cn1"), ControlNetModel.from_pretrained(folder / "demo_cn2")

    times = interleaved({"cached": cached_switch, "from disk": load_every_time}, rounds=20)
    cached_ms = statistics.median(times["cached"]) / 2 * 1000
    disk_ms = statistics.median(times["from disk"]) / 2 * 1000
    control = ring(64)
    chooser = random.Random(0)
    rss = {}
    for index in range(1, switches + 1):
        job = GenerationRequest("txt2img", "a ring", width=64, height=64, steps=1, seed=1,
                                parts={"controlnet": ControlNetPart(
                                    maps=(ControlInput(f"demo_cn{chooser.randint(1, 2)}", control),))})
        manager.generate(job)
        if index in (10, switches):
            rss[index] = rss_mib()
    print(f"controlnet switch  two cached ControlNets: {cached_ms:.3f} ms vs loading from disk each time "
          f"{disk_ms:.1f} ms ({disk_ms / cached_ms:,.0f}x); RSS after {switches} switching generations "
          f"{rss[switches]:,.0f} MiB vs {rss[10]:,.0f} MiB after 10 ({rss[switches] / rss[10]:.3f}x)")
    return {"cached_ms": cached_ms, "disk_ms": disk_ms, "rss": rss}


def map_cache() -> dict:
    photo = ring(768)
    cache = MapCache(8)
    started = time.perf_counter()
    cache.detect(photo, "canny", 512, 100, 200)
    miss_ms = (time.perf_counter() - started) * 1000
    hits = []
    for _ in range(20):
        started = time.perf_counter()
        cache.detect(photo, "canny", 512, 100, 200)
        hits.append(time.perf_counter() - started)
    hit_ms = statistics.median(hits) * 1000
    print(f"controlnet preprocessor  canny on a 768 px image: miss {miss_ms:.1f} ms, cache hit {hit_ms:.2f} ms "
          f"({miss_ms / hit_ms:.0f}x)")
    return {"miss_ms": miss_ms, "hit_ms": hit_ms}


def main() -> dict:
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        return {"map_cache": map_cache(), "switching": switching(folder), "step_cost": step_cost(folder)}


if __name__ == "__main__":
    main()
