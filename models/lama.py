"""LaMa (big-lama, Suvorov et al. 2021): a fill for large holes and outpainting that a diffusion model then refines.
Used by inpaint's masked content "lama", outpaint's "lama" pre-fill and ControlNet's `inpaint_only+lama`.

The model is loaded through spandrel (which knows big-lama's layout) from the one `.safetensors` file in the
annotator folder's `lama/` (`models/annotators/lama/big-lama.safetensors`); a pickled `.pth`/`.ckpt` there is
named and refused, never opened. It runs on the CPU, where the anchors run it too, over the mask's surroundings
only, scaled so that their longer side is at most `WORKING_SIDE` (sd-webui-controlnet works at 256 px, the fill
being a start that diffusion repaints): time and memory are bounded whatever the picture's size. Pixels outside
the mask come back unchanged.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path

from PIL import Image

from models.files import PICKLE_SUFFIXES, failure, shown_path

FOLDER = "lama"  # inside the annotator folder
WORKING_SIDE = 512  # px: the longest side LaMa sees
CONTEXT = 0.5  # the margin around the mask's box it sees, as a fraction of the box's longer side
MAX_FILE_BYTES = 512 * 2**20  # big-lama is 205 MB in float32

_lock = threading.Lock()
_loaded: dict = {}  # (path, size, mtime) -> the model: one at a time


def find(annotator_dir: Path | None) -> Path:
    """The LaMa file of the annotator folder, or ValueError saying what to put where."""
    folder = Path(annotator_dir) / FOLDER if annotator_dir is not None else None
    files = sorted(folder.iterdir()) if folder is not None and folder.is_dir() else []
    found = [path for path in files if path.suffix.lower() == ".safetensors" and path.is_file()
             and not path.is_symlink()]
    if found:
        return found[0]
    pickled = [path.name for path in files if path.suffix.lower() in PICKLE_SUFFIXES]
    where = shown_path(folder) if folder is not None else f"the annotator folder's {FOLDER}/"
    if pickled:
        raise ValueError(f"LaMa: {pickled[0]} in {where} is a pickle, which can run code when loaded: convert it to "
                         ".safetensors (only .safetensors are loaded)")
    raise ValueError(f"LaMa needs its weights: put big-lama.safetensors in {where}")


def missing(annotator_dir: Path | None) -> str | None:
    """Why LaMa cannot run here (what to put where), or None."""
    return failure(find, annotator_dir)


def fill(picture: Image.Image, mask: Image.Image, annotator_dir: Path | None) -> Image.Image:
    """`picture` (RGB) with the area where `mask` (L) is at least 128 filled by LaMa; every other pixel unchanged."""
    import numpy as np
    import torch

    hole = mask.convert("L").point([255 if v >= 128 else 0 for v in range(256)])
    box = hole.getbbox()
    if box is None:
        return picture.convert("RGB")
    model = _model(find(annotator_dir))
    area = _surroundings(box, picture.size)
    crop, crop_hole = picture.convert("RGB").crop(area), hole.crop(area)
    scale = min(1.0, WORKING_SIDE / max(crop.size))
    # spandrel's LaMa takes sides that are multiples of 8
    size = tuple(max(8, round(side * scale / 8) * 8) for side in crop.size)
    pixels = torch.from_numpy(np.asarray(crop.resize(size, Image.LANCZOS), np.float32) / 255).permute(2, 0, 1)[None]
    holes = torch.from_numpy(np.asarray(crop_hole.resize(size, Image.NEAREST), np.float32) / 255)[None, None]
    with _lock, torch.no_grad():
        filled = model(pixels, holes)[0]
    array = filled.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    patch = Image.fromarray(np.ascontiguousarray(array)).resize(crop.size, Image.LANCZOS)
    result = picture.convert("RGB")
    result.paste(patch, area[:2], crop_hole)
    return result


def _surroundings(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = box
    margin = round(max(right - left, bottom - top) * CONTEXT) + 8
    return (max(0, left - margin), max(0, top - margin), min(size[0], right + margin), min(size[1], bottom + margin))


def _model(path: Path):
    """The model in `path`, loaded once while the file is unchanged."""
    import torch
    from safetensors.torch import load_file
    from spandrel import MaskedImageModelDescriptor, ModelLoader, UnsupportedModelError

    stat = path.stat()
    if stat.st_size > MAX_FILE_BYTES:
        raise ValueError(f"LaMa: {path.name} has {stat.st_size:,} bytes, more than big-lama's")
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _lock:
        if key not in _loaded:
            try:
                with contextlib.redirect_stderr(io.StringIO()):  # spandrel's LaMa prints its settings there
                    model = ModelLoader().load_from_state_dict(load_file(path))
            except UnsupportedModelError:
                raise ValueError(f"LaMa: {path.name} is not a LaMa model spandrel knows") from None
            except Exception as error:  # a truncated or hostile file: its reader's complaint, not a server fault
                raise ValueError(f"LaMa: {path.name} is not a readable model file ({type(error).__name__})") from None
            if not isinstance(model, MaskedImageModelDescriptor):
                raise ValueError(f"LaMa: {path.name} is a {model.architecture.name} model, not LaMa")
            _loaded.clear()
            _loaded[key] = model.to(device="cpu", dtype=torch.float32).eval()
        return _loaded[key]
