"""LoRA training in the app: steps per second on the demo model (64 px, rank 8), batch 1 and 4, with and without
gradient checkpointing, through the Train extension as the tab runs it (interleaved, 2 rounds of 40 steps).

    python -m bench.train_lora
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from bench.common import interleaved
from extensions.lora import Lora
from extensions.train import Train
from models.manager import PipelineManager
from service.studio import StudioService

STEPS = 40


def main() -> dict:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "Lora").mkdir()
        files = []
        for index in range(12):
            image = Image.new("RGB", (64, 64), "white")
            ImageDraw.Draw(image).ellipse([8 + index, 8, 40 + index, 40], fill=(30, 60, 210))
            image.save(root / f"{index}.png")
            files.append(str(root / f"{index}.png"))
        service = StudioService(PipelineManager.load("demo", device="cpu"), root / "outputs",
                                [Lora(root / "Lora"), Train(root / "Lora", root / "work")])
        train = service.extension("train")
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


if __name__ == "__main__":
    main()
