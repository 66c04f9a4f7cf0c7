"""LoRA training in the app, through the Train extension as the tab runs it:
- speed: steps per second on the demo model (64 px, rank 8), batch 1 and 4, with and without gradient
  checkpointing (interleaved, 2 rounds of 40 steps);
- memory: the peak resident memory a run adds, with and without gradient checkpointing, each in its own process:
  the demo model at 64 px (batch 4) and SD 1.5's architecture at 256 px (batch 1, random weights);
- meaning: `RECIPE` on 12 pictures of blue circles on white captioned "a sks circle" (a word no caption had: the
  model draws any colour for it), trained with 3 seeds; then, with each LoRA at weights 1 and 0.6, in how many of 10
  seeds "a sks circle" is blue, and "a red circle on a yellow background" is still that.

    python -m bench.train_lora [speed] [memory] [meaning]     (all three without arguments)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench.common import interleaved

STEPS = 40
BLUE = (30, 60, 210)  # the shapes palette's blue: the demo's VAE knows its palette only (purple comes back green)
# Cross-attention's keys and values (Custom Diffusion): training every attention layer, as kohya does, drifts on
# this tiny model (the red circle turns white-backgrounded or black in some trainings); the noise offset is the
# demo model's own training noise, without which nothing is learnt (0 of 10).
RECIPE = {"steps": 300, "rank": 8, "learning_rate": 5e-3, "batch_size": 4, "noise_offset": 0.5,
          "layers": "cross_attention"}
TRAINING_SEEDS, WEIGHTS = (1, 2, 3), (1.0, 0.6)
SEEDS = range(100, 110)  # the generations' seeds


def studio(root: Path, model: str = "demo"):
    from extensions.lora import Lora
    from extensions.train import Train
    from models.manager import PipelineManager
    from service.studio import StudioService

    (root / "Lora").mkdir(exist_ok=True)
    return StudioService(PipelineManager.load(model, device="cpu"), root / "outputs",
                         [Lora(root / "Lora"), Train(root / "Lora", root / "work")])


def circles(root: Path, count: int = 12, side: int = 64) -> list[str]:
    """Blue circles on white of random sizes and places, drawn at 4x and reduced."""
    rng = np.random.default_rng(0)
    files = []
    for index in range(count):
        image = Image.new("RGB", (4 * side, 4 * side), "white")
        radius = int(rng.integers(50, 90)) * side // 64
        x, y = rng.integers(radius + 10, 4 * side - radius - 10, 2)
        ImageDraw.Draw(image).ellipse([x - radius, y - radius, x + radius, y + radius], fill=BLUE)
        image.resize((side, side), Image.LANCZOS).save(root / f"circle{index}.png")
        files.append(str(root / f"circle{index}.png"))
    return files


def speed() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files, train = circles(root), studio(root).extension("train")
        runs = iter(range(1000))

        def run(batch: int, checkpointing: bool):
            return lambda: train.train(files, "a sks circle", f"bench{next(runs)}", steps=STEPS, batch_size=batch,
                                       gradient_checkpointing=checkpointing)

        times = interleaved({f"batch {batch}{', checkpointing' if checkpointing else ''}": run(batch, checkpointing)
                             for batch in (1, 4) for checkpointing in (False, True)}, rounds=2, warmup=0)
    figures = {name: STEPS / statistics.median(values) for name, values in times.items()}
    for name, rate in figures.items():
        print(f"train_lora  demo model 64 px, rank 8, {name}: {rate:.1f} steps/s")
    return figures


MEMORY_CASES = [("demo", 64, 4), ("sd15", 256, 1)]  # model, resolution, batch


def peak_added(model: str, resolution: int, batch: int, checkpointing: bool) -> dict:
    """A few training steps in a child process: the peak resident memory they add (VmHWM reset after loading)."""
    code = f"""
import json, tempfile, time
from pathlib import Path
from bench.train_lora import circles, studio
def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) / 1024
root = Path(tempfile.mkdtemp())
model = "demo" if {model!r} == "demo" else str(__import__("bench.sd15_random").sd15_random.cached(inpainting=True))
service = studio(root, model)
files = circles(root, 4, {resolution})
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
started = time.perf_counter()
service.extension("train").train(files, "a sks circle", "memory", steps=3, batch_size={batch},
                                 resolution={resolution}, gradient_checkpointing={checkpointing})
print(json.dumps({{"added_mib": status("VmHWM") - before, "seconds": time.perf_counter() - started}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory() -> dict:
    figures = {}
    for model, resolution, batch in MEMORY_CASES:
        for checkpointing in (False, True):
            figure = figures[(model, checkpointing)] = peak_added(model, resolution, batch, checkpointing)
            print(f"train_lora  {model} {resolution} px batch {batch}, rank 8, "
                  f"{'with' if checkpointing else 'without'} gradient checkpointing: peak +{figure['added_mib']:,.0f} "
                  f"MiB, {figure['seconds'] / 3:.1f} s a step")
        ratio = figures[(model, True)]["added_mib"] / figures[(model, False)]["added_mib"]
        print(f"train_lora  {model}: checkpointing takes {ratio:.2f}x the memory")
    return figures


def meaning() -> dict:
    """`RECIPE` trained with each of `TRAINING_SEEDS`, each LoRA judged at each of `WEIGHTS` over `SEEDS`."""
    figures: dict = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        files, service = circles(root), studio(root)
        figures["before"] = hits(service, "a sks circle", "blue", None)
        figures["red_without"] = hits(service, "a red circle on a yellow background", "red", "yellow")
        for training_seed in TRAINING_SEEDS:
            started = time.perf_counter()
            outcome = service.extension("train").train(files, "a sks circle", f"sks{training_seed}",
                                                       **{**RECIPE, "seed": training_seed})
            seconds = time.perf_counter() - started
            for weight in WEIGHTS:
                tag = f"<lora:sks{training_seed}:{weight}>"
                figure = figures[(training_seed, weight)] = {
                    "seconds": seconds, "loss": outcome.loss, "sks": hits(service, f"a sks circle {tag}", "blue", None),
                    "red": hits(service, f"a red circle on a yellow background {tag}", "red", "yellow")}
                print(f"train_lora  meaning, training seed {training_seed} ({seconds:.0f} s, loss {outcome.loss:.3f}), "
                      f"weight {weight}: 'a sks circle' blue in {figure['sks']}/{len(SEEDS)} seeds, 'a red circle on "
                      f"a yellow background' right in {figure['red']}/{len(SEEDS)}")
    for weight in WEIGHTS:
        runs = [figures[(seed, weight)] for seed in TRAINING_SEEDS]
        print(f"train_lora  meaning, {RECIPE} at weight {weight}, {len(runs)} trainings: 'a sks circle' blue in "
              f"{sum(run['sks'] for run in runs)}/{len(runs) * len(SEEDS)} (before: {figures['before']}/{len(SEEDS)}); "
              f"'a red circle on a yellow background' right in {sum(run['red'] for run in runs)}/"
              f"{len(runs) * len(SEEDS)} (without the LoRA: {figures['red_without']}/{len(SEEDS)})")
    return figures


def hits(service, prompt: str, colour: str, background: str | None) -> int:
    """In how many of the seeds the prompt's image has a shape of `colour` on `background` (None: any other)."""
    from training.evaluate_shapes import background_colour, foreground_colour

    count = 0
    for seed in SEEDS:
        image = Image.open(service.run("txt2img", {"prompt": prompt, "width": 64, "height": 64, "steps": 20,
                                                   "seed": seed}).files[0])
        found = background_colour(image)
        count += foreground_colour(image) == colour and (found == background if background else found != colour)
    return count


def main(parts=("speed", "memory", "meaning")) -> dict:
    return {name: {"speed": speed, "memory": memory, "meaning": meaning}[name]() for name in parts}


if __name__ == "__main__":
    main(sys.argv[1:] or ("speed", "memory", "meaning"))
