"""The base models a client may switch to (A1111's sd_model_checkpoint): "demo", the model the app started with,
Hub ids, and the checkpoints in the checkpoint folder (--ckpt-dir: single `.safetensors` files and diffusers
folders, subfolders allowed), named relative to that folder. No other file or folder on the server can be named,
and every other name gets the same answer, so a client cannot probe the disk."""

from __future__ import annotations

from pathlib import Path

from models.files import is_hub_id


def checkpoint_names(folder: Path) -> list[str]:
    """The checkpoints in `folder`, as names relative to it (a `.safetensors` file without its suffix)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = [path.relative_to(folder).with_suffix("").as_posix() for path in folder.rglob("*.safetensors")
             if not any(part.startswith(".") for part in path.relative_to(folder).parts)]
    names += [index.parent.relative_to(folder).as_posix() for index in folder.rglob("model_index.json")
              if index.parent != folder]
    # a diffusers folder's own .safetensors files are its parts, not checkpoints
    folders = [name for name in names if (folder / name / "model_index.json").is_file()]
    return sorted(name for name in names if name in folders or not any(name.startswith(f + "/") for f in folders))


def checkpoint_families(folder: Path) -> dict[str, str]:
    """Each checkpoint's family name ("SDXL", "SD 1.x", ...), told from its header or configs without loading it;
    a checkpoint whose family cannot be told is left out."""
    from models.families import of_location

    found = {}
    for name in checkpoint_names(folder):
        path = Path(folder) / name
        family = of_location(path if path.is_dir() else path.with_suffix(".safetensors"))
        if family is not None:
            found[name] = family.name
    return found


def resolve_checkpoint(name: str, folder: Path, startup: str) -> tuple[str, bool]:
    """(what to load, whether it may be a local path) for the name a client gave."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"sd_model_checkpoint must be a model name, got {name!r}")
    name = name.strip()
    if name in ("demo", startup):
        return name, True
    stem = name.removesuffix(".safetensors")
    if stem in checkpoint_names(folder):
        path = Path(folder) / stem
        return str(path if path.is_dir() else path.with_suffix(".safetensors")), True
    if is_hub_id(name):
        return name, False  # loaded from the Hub (or its cache) only, never as a path on this disk
    raise ValueError(
        f"sd_model_checkpoint: no model named {name!r}; name a checkpoint in {Path(folder).name}/ "
        f"({', '.join(checkpoint_names(folder)) or 'none there'}), 'demo', or a Hub id (owner/name)"
    )
