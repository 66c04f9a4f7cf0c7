"""LoRA switching on the demo model: switch latency among N loaded adapters, per-step cost of an active LoRA
(unfused, fused, none), and memory over many random switches; and a switch into the compiled-U-Net slot on SD 1.5's
architecture against diffusers' hotswap load.

    python -m bench.lora
"""

from __future__ import annotations

import functools
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import interleaved, median_ratio
from bench.memory import rss_mib
from extensions import lora
from models.manager import PipelineManager
from models.request import GenerationRequest
from testing.lora_files import make_lora

FILES = 40


def median_ms(run, repeats: int = 30) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _switching(adapters, pipe, sets):
    """One round of switches through our adapters (a callable for median_ms)."""
    return lambda: [adapters.configure(pipe, chosen) for chosen in sets]


def _diffusers_switching(pipe, ids) -> None:
    pipe.set_adapters(ids, [0.7, 0.4])
    pipe.set_adapters(ids[1:], [1.0])


def switch_latency(folder: Path, generation_ms: float) -> dict:
    results = {}
    for count in (2, 8, 32):
        manager = PipelineManager.load("demo", device="cpu")
        pipe = manager.pipelines["inpaint"]
        adapters = lora.install(manager, folder, cap=64)
        for index in range(count):
            adapters.configure(pipe, ((f"l{index}", 1.0),))
        sets = [(("l0", 0.7), ("l1", 0.4)), (("l1", 1.0),)]
        ours = median_ms(_switching(adapters, pipe, sets)) / 2
        # diffusers' own switch over the same adapters, for comparison (what issue diffusers #11816 is about)
        ids = [adapters._loaded[f"l{index}"].adapter for index in (0, 1)]
        theirs = median_ms(functools.partial(_diffusers_switching, pipe, ids), 10) / 2
        # the compiled-U-Net mode: the same switches written into the one hot-swapped slot (not compiled here:
        # compiling changes the step, not what a switch writes)
        slotted = PipelineManager.load("demo", device="cpu")
        slot_adapters = lora.install(slotted, folder, cap=64, compiled_rank=16)
        slot_pipe = slotted.pipelines["inpaint"]
        for index in range(count):
            slot_adapters.configure(slot_pipe, ((f"l{index}", 1.0),))
        slot = median_ms(_switching(slot_adapters, slot_pipe, sets)) / 2
        results[count] = {"ours_ms": ours, "diffusers_set_adapters_ms": theirs, "compiled_slot_ms": slot}
    manager = PipelineManager.load("demo", device="cpu")
    pipe = manager.pipelines["inpaint"]

    def load_every_time():
        pipe.load_lora_weights(str(folder / "l0.safetensors"), adapter_name="fresh")
        pipe.delete_adapters("fresh")

    load_ms = median_ms(load_every_time, 10)
    for count, row in results.items():
        print(f"lora switch  {count:2d} adapters loaded: {row['ours_ms']:.2f} ms "
              f"(diffusers set_adapters: {row['diffusers_set_adapters_ms']:.1f} ms; "
              f"compiled-U-Net slot, rank 16: {row['compiled_slot_ms']:.1f} ms)")
    print(f"lora switch  N=32 over N=2: {results[32]['ours_ms'] / results[2]['ours_ms']:.2f}; "
          f"{results[32]['ours_ms'] / generation_ms * 100:.2f}% of a 20-step demo generation ({generation_ms:.0f} ms); "
          f"loading the file every request instead: {load_ms:.1f} ms, {load_ms / results[32]['ours_ms']:.0f}x slower")
    return {"by_count": results, "load_every_time_ms": load_ms, "generation_ms": generation_ms}


def slot_switch_sd15(rounds: int = 7) -> dict:
    """A switch into the compiled-U-Net slot on SD 1.5's architecture (rank 32, two rank-16 LoRAs), ours against
    diffusers' `load_lora_adapter(..., hotswap=True)` writing the same slot (what each switch did before), side by
    side. Not compiled: compiling changes the step, not what a switch writes."""
    from bench.sd15_random import cached
    from extensions.lora.hotswap import SLOT

    manager = PipelineManager.load(str(cached(inpainting=False)), device="cpu")
    pipe = manager.pipelines["txt2img"]
    with tempfile.TemporaryDirectory() as directory:  # a switch checks the files are as they were loaded
        folder = Path(directory)
        for name, seed in (("a", 1), ("b", 2)):
            make_lora(pipe, folder / f"{name}.safetensors", seed=seed, rank=16, text_encoder=False)
        adapters = lora.install(manager, folder, compiled_rank=32)
        sets = [(("a", 1.0),), (("a", 0.5), ("b", 0.5)), (("b", 0.8),), ()]
        for chosen in sets:
            adapters.configure(pipe, chosen)
        slot = adapters.slot
        state = {f"{name}.lora_{part}.weight": tensor.detach().clone()  # the slot as it stands, as a state dict
                 for name, pair in slot._slot.items() for part, tensor in zip("AB", pair)}
        switching = iter(sets * 1000)

        def ours():
            adapters.configure(pipe, next(switching))

        def diffusers_hotswap():
            slot.unet.load_lora_adapter(state, adapter_name=SLOT, prefix=None, hotswap=True)

        ours_ms, theirs_ms = median_ms(ours, rounds * 4), median_ms(diffusers_hotswap, rounds)
    print(f"lora slot    SD 1.5 architecture, rank 32: a switch takes {ours_ms:.1f} ms; diffusers' hotswap load "
          f"of the same slot {theirs_ms:.0f} ms ({theirs_ms / ours_ms:.0f}x)")
    return {"ours_ms": ours_ms, "diffusers_hotswap_ms": theirs_ms}


def step_cost(folder: Path, rounds: int = 7) -> dict:
    request = {"prompt": "a cat", "width": 256, "height": 256, "steps": 20, "seed": 1}
    runs = {}
    for name, fuse, loras in (("none", False, ()), ("unfused", False, (("l0", 0.8),)), ("fused", True, (("l0", 0.8),))):
        manager = PipelineManager.load("demo", device="cpu")
        lora.install(manager, folder, fuse=fuse)
        job = GenerationRequest("txt2img", parts={"lora": loras}, **request)
        runs[name] = lambda manager=manager, job=job: manager.generate(job)
    times = interleaved(runs, rounds, warmup=2)  # the second warm-up run of "fused" fuses
    print(f"lora step cost  demo model, 256 px, 20 steps: unfused LoRA "
          f"{median_ratio(times['unfused'], times['none']):.3f}x "
          f"and fused {median_ratio(times['fused'], times['none']):.3f}x the time without LoRA "
          f"({statistics.median(times['none']) / 20 * 1000:.1f} ms per step without)")
    return {name: statistics.median(values) for name, values in times.items()}


def memory_over_switches(folder: Path, switches: int = 200, cap: int = 16) -> dict:
    manager = PipelineManager.load("demo", device="cpu")
    adapters = lora.install(manager, folder, cap=cap)
    pipe = manager.pipelines["inpaint"]
    chooser = random.Random(0)
    rss = {}
    for index in range(1, switches + 1):
        names = chooser.sample(range(FILES), chooser.randint(1, 3))
        adapters.configure(pipe, tuple((f"l{n}", chooser.uniform(0.2, 1.2)) for n in names))
        if index in (10, switches):
            rss[index] = rss_mib()
    print(f"lora memory  RSS after {switches} random switches among {FILES} files (cap {cap}): "
          f"{rss[switches]:,.0f} MiB "
          f"vs {rss[10]:,.0f} MiB after the first 10 ({rss[switches] / rss[10]:.3f}x); "
          f"{len(adapters.loaded_names)} adapters loaded")
    return rss


def main() -> dict:
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        manager = PipelineManager.load("demo", device="cpu")
        for index in range(FILES):
            make_lora(manager.pipelines["inpaint"], folder / f"l{index}.safetensors", seed=index,
                      layout="kohya" if index % 2 else "diffusers")
        generation = GenerationRequest("txt2img", "a cat", width=128, height=128, steps=20, seed=1)
        generation_ms = median_ms(lambda: manager.generate(generation), 5)
        return {
            "switch": switch_latency(folder, generation_ms),
            "step_cost": step_cost(folder),
            "memory": memory_over_switches(folder),
            "slot_sd15": slot_switch_sd15(),
        }


if __name__ == "__main__":
    main()
