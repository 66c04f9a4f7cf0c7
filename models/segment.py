"""Segment Anything (SAM, Kirillov et al. 2023): the area a few clicks point at, as a mask. Used by the inpaint tab's
"Click to mask" and gradio_client's /segment.

The model is transformers' `SamModel` with its `SamProcessor`, read from the annotator folder in the Hub's layout
(`models/annotators/facebook/sam-vit-base/`: config.json, model.safetensors, preprocessor_config.json); only the
safetensors file is loaded, never a pickle. It is loaded on first use, on the CPU, and kept while its files are
unchanged. Clicks on one picture are cheap after the first: the picture's embedding (the costly part) is kept for
the next click on the same picture.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

from PIL import Image

from models.files import PICKLE_SUFFIXES, failure, shown_path
from models.images import image_digest
from models.limits import check_image
from models.validate import brief

REPO = "facebook/sam-vit-base"  # inside the annotator folder, as on the Hub
FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
MAX_POINTS = 16

_lock = threading.Lock()
_loaded: dict = {}  # (folder, its files' sizes and times) -> (model, processor): one at a time
_embedded: dict = {}  # (model key, picture digest) -> the picture's image embedding: the last picture only


def find(annotator_dir: Path | None) -> Path:
    """The SAM folder of the annotator folder, or ValueError saying what to put where."""
    folder = Path(annotator_dir) / REPO if annotator_dir is not None else None
    where = f"{shown_path(annotator_dir)}/{REPO}" if folder is not None else f"the annotator folder's {REPO}/"
    absent = [name for name in FILES if folder is None or not (folder / name).is_file()]
    if not absent:
        return folder
    pickled = sorted(path.name for path in folder.iterdir()
                     if path.suffix.lower() in PICKLE_SUFFIXES) if folder is not None and folder.is_dir() else []
    if "model.safetensors" in absent and pickled:
        raise ValueError(f"SAM: {pickled[0]} in {where} is a pickle, which can run code when loaded: put the "
                         "model.safetensors of the same repository there (only .safetensors are loaded)")
    raise ValueError(f"SAM needs its weights: put {', '.join(absent)} of the Hub's {REPO} in {where}")


def missing(annotator_dir: Path | None) -> str | None:
    """Why SAM cannot run here (what to put where), or None."""
    return failure(find, annotator_dir)


def check_points(points, labels, size: tuple[int, int]) -> tuple[list[tuple[float, float]], list[int]]:
    """The clicks as (x, y) pixels inside a picture of `size` and their labels (1: include, 0: exclude; None: all
    1), or ValueError naming the field and the value."""
    if not isinstance(points, (list, tuple)) or not 1 <= len(points) <= MAX_POINTS:
        raise ValueError(f"points must be a list of 1 to {MAX_POINTS} [x, y] pairs, got {brief(points)}")
    width, height = size
    checked = []
    for index, point in enumerate(points):
        if (not isinstance(point, (list, tuple)) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in point)):
            raise ValueError(f"points[{index}] must be an [x, y] pair of numbers, got {brief(point)}")
        x, y = point
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"points[{index}] = {brief(list(point))} is outside the {width}x{height} picture")
        checked.append((float(x), float(y)))
    if labels is None:
        labels = [1] * len(checked)
    if not isinstance(labels, (list, tuple)) or len(labels) != len(checked):
        raise ValueError(f"labels must be a list of {len(checked)} labels (one per point), got {brief(labels)}")
    for index, label in enumerate(labels):
        if isinstance(label, bool) or label not in (0, 1):
            raise ValueError(f"labels[{index}] must be 1 (include) or 0 (exclude), got {brief(label)}")
    if 1 not in labels:
        raise ValueError(f"labels must include at least one point (a 1), got {brief(list(labels))}")
    return checked, [int(label) for label in labels]


def segment(picture: Image.Image, points, labels=None, *, annotator_dir: Path | None) -> Image.Image:
    """The mask (mode "L", the picture's size, 255: selected) of what the points show in `picture`: SAM's best
    guess among its three, by its own score of each."""
    import torch

    check_image(picture, "image")
    checked, labels = check_points(points, labels, picture.size)
    key, model, processor = _model(find(annotator_dir))
    picture = picture.convert("RGB")
    inputs = processor(picture, input_points=[[list(point) for point in checked]], input_labels=[labels],
                       return_tensors="pt")
    with _lock, torch.no_grad():
        embedding = _embedding(key, model, picture, inputs["pixel_values"])
        outputs = model(image_embeddings=embedding, input_points=inputs["input_points"],
                        input_labels=inputs["input_labels"], multimask_output=True)
    best = int(outputs.iou_scores[0, 0].argmax())
    # only the chosen mask is scaled to the picture's size (a large photo's three would take memory for nothing)
    masks = processor.post_process_masks(outputs.pred_masks[:, :, best:best + 1], inputs["original_sizes"],
                                         inputs["reshaped_input_sizes"])
    selected = masks[0][0, 0].numpy()
    return Image.fromarray(selected.astype("uint8") * 255)  # 2-D uint8: mode "L"


def _embedding(key, model, picture: Image.Image, pixel_values):
    """The picture's image embedding: kept for the next click on the same picture (call under the lock)."""
    digest = image_digest(picture)  # mode and size included
    if (key, digest) not in _embedded:
        _embedded.clear()
        _embedded[key, digest] = model.get_image_embeddings(pixel_values)
    return _embedded[key, digest]


def _model(folder: Path):
    """(key, model, processor) of `folder`, loaded once while its files are unchanged."""
    import torch
    from transformers import SamModel, SamProcessor

    key = (folder, *((stat.st_size, stat.st_mtime_ns) for stat in (folder.joinpath(name).stat() for name in FILES)))
    with _lock:
        if key not in _loaded:
            try:
                model = SamModel.from_pretrained(folder, use_safetensors=True, local_files_only=True)
                processor = SamProcessor.from_pretrained(folder, local_files_only=True)
            except Exception as error:  # a truncated, foreign or hostile file: its reader's complaint, not a fault
                raise ValueError(f"SAM: the files in {shown_path(folder)} are not a readable SAM model "
                                 f"({type(error).__name__})") from None
            _loaded.clear()
            _loaded[key] = model.to(device="cpu", dtype=torch.float32).eval(), processor
        return (key, *_loaded[key])
