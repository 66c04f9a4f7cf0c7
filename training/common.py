"""What the shapes-model training scripts share: batches from the procedural dataset as tensors, and resumable
runs (weights saved with save_pretrained as safetensors plus a small JSON state; resuming reloads the weights and
the step, and restarts the optimizer's moments)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.demo.shipped import DEMO_DIR
from training.shapes import stream

IMAGE_SIZE = 64
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # trains on a GPU when there is one
WORK_DIR = DEMO_DIR / "shapes-work"  # checkpoints while training (not shipped)


def to_tensor(images) -> torch.Tensor:
    """PIL RGB images -> a float batch in [-1, 1], NCHW, on DEVICE."""
    stacked = torch.from_numpy(np.stack([np.asarray(image) for image in images])).to(DEVICE)
    return stacked.permute(0, 3, 1, 2).float() / 127.5 - 1


def batches(seed: int, batch_size: int, start_step: int = 0, style: str = "plain"):
    """Endless (images, captions, scenes) batches; batch k is the same on every run, so a resumed run goes on
    with exactly the batches a straight run would have seen."""
    items = stream(seed, IMAGE_SIZE, style=style, start=start_step * batch_size)
    while True:
        chunk = [next(items) for _ in range(batch_size)]
        yield [item[0] for item in chunk], [item[1] for item in chunk], [item[2] for item in chunk]


def decayed(lr: float, step: int, steps: int, tail: float = 0.3) -> float:
    """`lr`, falling linearly to a tenth over the last `tail` of the run (a function of the step, so resuming keeps
    the same schedule)."""
    left = (steps - step) / (tail * steps)
    return lr * (0.1 + 0.9 * min(1.0, max(left, 0.0)))


class Run:
    """A resumable training run in `folder`: `step` from state.json, models saved under their names."""

    def __init__(self, folder: Path, seed: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        state_file = self.folder / "state.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {"step": 0, "seed": seed}
        if state["seed"] != seed:
            raise ValueError(f"seed {seed} differs from the seed {state['seed']} this run in {self.folder} started "
                             "with")
        self.step, self.seed = state["step"], seed
        self.started = time.monotonic()
        torch.manual_seed(seed + self.step)

    def model(self, name: str, cls, make):
        """The model saved as `name` when the run resumes, else `make()`; on DEVICE and in train mode, which
        from_pretrained does not give (in its eval mode a resumed VAE trained differently from a straight run)."""
        path = self.folder / name
        return (cls.from_pretrained(path) if (path / "config.json").exists() else make()).to(DEVICE).train()

    def save(self, models: dict, extra: dict | None = None) -> None:
        for name, model in models.items():
            model.save_pretrained(self.folder / name, safe_serialization=True)
        state = {"step": self.step, "seed": self.seed, **(extra or {})}
        (self.folder / "state.json").write_text(json.dumps(state, indent=1))

    def log(self, message: str) -> None:
        print(f"step {self.step} ({time.monotonic() - self.started:.0f} s): {message}", flush=True)

    def advance(self, loss: torch.Tensor, steps: int, save, every: int = 100) -> None:
        """Count a finished step; every `every` steps and at the end, log the loss and `save()`."""
        self.step += 1
        if self.step % every == 0 or self.step == steps:
            self.log(f"loss {loss.item():.4f}")
            save()


def command_line(train, doc: str, steps: int, batch: int = 32, argv: list[str] | None = None) -> None:
    """`python -m training.train_*` [--steps N] [--batch N] [--seed N] for a train(steps, batch, seed)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train(args.steps, args.batch, args.seed)
