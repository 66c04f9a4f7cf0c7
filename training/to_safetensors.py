"""Convert a pickled checkpoint (.pth, .ckpt, .pt) to the `.safetensors` file the app loads, without running any
code from it: torch's `weights_only` loader refuses a pickle that holds anything but tensors and plain containers.
A Lightning checkpoint's `state_dict` is taken out; `--keep` keeps only the keys under a prefix (big-lama's
`generator.`, which is all of LaMa that fills).

    .venv/bin/python -m training.to_safetensors big-lama.ckpt models/annotators/lama/big-lama.safetensors \
        --keep generator.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file


def convert(source: Path, target: Path, keep: str = "") -> int:
    """Write `source`'s tensors to `target`; returns how many."""
    loaded = torch.load(source, map_location="cpu", weights_only=True)
    tensors = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(tensors, dict):
        raise ValueError(f"{source.name}: not a checkpoint of named tensors")
    kept = {name: value.contiguous() for name, value in tensors.items()
            if isinstance(value, torch.Tensor) and name.startswith(keep)}
    if not kept:
        raise ValueError(f"{source.name}: no tensor{' under ' + repr(keep) if keep else ''}")
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(kept, target)
    return len(kept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--keep", default="", help="only the keys that start with this")
    arguments = parser.parse_args(argv)
    print(f"{convert(arguments.source, arguments.target, arguments.keep)} tensors written to {arguments.target}")


if __name__ == "__main__":
    main()
