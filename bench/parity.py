"""What A1111 parity II's features cost, each against the same job without it, interleaved (20 steps, 64 px, demo):

1. prompt editing (`[a:b:0.5]`, and `[a|b]`, which changes the embeddings at every step) against the plain prompt
   (goal: at most 1.05: each text is encoded once, a switch is a tensor handed back from the step callback); `a AND
   b`, whose U-Net passes have 3 rows instead of 2 (goal: at most 1.5);
2. a variation seed (strength 0.5) against none (goal: at most 1.05), and Tiling against none (its cost: a circular
   pad before every convolution, as A1111's);
3. an X/Y/Z plot of 4 seeds (cells that batch, --max-batch 4) against the 4 jobs run one by one.

    python -m bench.parity
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.common import interleaved, median_ratio

FIELDS = {"prompt": "a red circle on a blue background", "steps": 20, "width": 64, "height": 64, "seed": 1}


def main(rounds: int = 9) -> dict:
    from extensions import Settings, create
    from models.manager import PipelineManager
    from service.studio import StudioService

    folder = Path(tempfile.mkdtemp())
    settings = Settings(*(folder / name for name in ("Lora", "ControlNet", "annotators", "embeddings",
                                                     "upscale_models", "VAE", "outputs")), folder / "styles.csv")
    service = StudioService(PipelineManager.load("demo", device="cpu"), folder / "outputs", create(settings),
                            max_batch=4)

    def run(**change):
        return lambda: service.run("txt2img", {**FIELDS, **change})

    times = interleaved({
        "plain": run(),
        "edited": run(prompt="[a red circle:a blue square:0.5] on a blue background"),
        "alternating": run(prompt="[a red circle|a blue square] on a blue background"),
        "composed": run(prompt="a red circle AND a blue square on a blue background"),
        "variation": run(subseed=7, subseed_strength=0.5),
        "tiling": run(tiling=True),
    }, rounds, warmup=1)
    figures = {name: median_ratio(times[name], times["plain"]) for name in times if name != "plain"}
    plain_ms = statistics.median(times["plain"]) * 1000
    print(f"parity  20 steps at 64 px, against the plain job ({plain_ms:.0f} ms): "
          + ", ".join(f"{name} {ratio:.3f}" for name, ratio in figures.items()))

    seeds = [11, 12, 13, 14]
    plot = {"script_name": "X/Y/Z plot", "script_args": ["Seed", ", ".join(map(str, seeds)), [], "Nothing", "", [],
                                                           "Nothing", "", [], True, False, False, False, 0, False]}
    grid_times = interleaved({
        "plot": run(**plot),
        "one by one": lambda: [service.run("txt2img", {**FIELDS, "seed": seed}) for seed in seeds],
    }, max(3, rounds // 3), warmup=1)
    figures["plot"] = median_ratio(grid_times["plot"], grid_times["one by one"])
    print(f"parity  X/Y/Z plot of 4 seeds (batched cells, a grid) / the 4 jobs one by one: {figures['plot']:.3f} "
          f"({statistics.median(grid_times['plot']) * 1000:.0f} / "
          f"{statistics.median(grid_times['one by one']) * 1000:.0f} ms); calls by jobs: "
          f"{service.queue_metrics()['calls_by_jobs']}")
    return figures


if __name__ == "__main__":
    main()
