"""What the detailer finds and the masks it repaints, as ADetailer makes them: boxes from a detector, filtered by
confidence, area ratio and the k largest, each a rectangle mask moved by the offsets and grown (or shrunk) by the
dilation, then one mask each, or merged (and inverted).

`face_haar` always works offline: OpenCV's frontal-face Haar cascade, shipped in opencv-python-headless 4.14's wheel
(`cv2.data`), no download. A Haar cascade gives no probability; its confidence here is its last stage's weight w
squashed into (0, 1) as w / (1 + w), so ADetailer's default 0.3 keeps detections of weight 0.43 on. MediaPipe's face
detectors work where their files are (`blazeface`).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from extensions.detailer import blazeface
from extensions.detailer.fields import DetailerUnit

Box = tuple[int, int, int, int]  # left, top, right, bottom
MAX_DETECTIONS = 16  # the largest ones a unit details in one picture: each is a pass, so a crowd is bounded


@dataclass(frozen=True)
class Detection:
    box: Box
    confidence: float


_cascades: dict = {}
_lock = threading.Lock()


def face_haar(picture: Image.Image) -> list[Detection]:
    import cv2

    with _lock:
        if "face" not in _cascades:
            _cascades["face"] = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        cascade = _cascades["face"]
        gray = cv2.cvtColor(np.asarray(picture.convert("RGB")), cv2.COLOR_RGB2GRAY)
        side = max(24, min(picture.size) // 20)  # a face smaller than this cannot be detailed anyway
        boxes, _, weights = cascade.detectMultiScale3(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side),
                                                      outputRejectLevels=True)
    return [Detection((int(x), int(y), int(x + w), int(y + h)), float(weight) / (1 + float(weight)))
            for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1))]


DETECTORS = {"face_haar": face_haar}  # ad_model -> the detectors that need no file


def detectors(annotator_dir: Path | None) -> dict[str, Callable[[Image.Image], list[Detection]]]:
    """The detectors here by ADetailer's ad_model names: face_haar, and MediaPipe's whose files are in the annotator
    folder."""
    found = dict(DETECTORS)
    for name in blazeface.MODELS:
        path = blazeface.file_of(name, annotator_dir)
        if path is not None:
            found[name] = functools.partial(_mediapipe, name, path)
    return found


def _mediapipe(name: str, path: Path, picture: Image.Image) -> list[Detection]:
    return [Detection(box, score) for box, score in blazeface.detect(name, path, picture)]


def masks(picture: Image.Image, unit: DetailerUnit, annotator_dir: Path | None = None) -> list[Image.Image]:
    """The masks (L, white = repaint) the unit's detector gives `picture`, in ADetailer's order: largest first."""
    width, height = picture.size
    found = [detection for detection in detectors(annotator_dir)[unit.ad_model](picture)
             if detection.confidence >= unit.ad_confidence]
    area = width * height
    boxes = [detection.box for detection in found
             if unit.ad_mask_min_ratio <= _area(detection.box) / area <= unit.ad_mask_max_ratio]
    boxes.sort(key=_area, reverse=True)
    boxes = boxes[:unit.ad_mask_k or MAX_DETECTIONS]
    shapes = [_mask(box, picture.size, unit) for box in boxes]
    if not shapes or unit.ad_mask_merge_invert == "None":
        return [shape for shape in shapes if shape.getbbox() is not None]
    merged = Image.new("L", picture.size, 0)
    for shape in shapes:
        merged.paste(255, mask=shape)
    if unit.ad_mask_merge_invert == "Merge and Invert":
        merged = merged.point([255 - v for v in range(256)])
    return [merged] if merged.getbbox() is not None else []


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[3] - box[1])


def _mask(box: Box, size: tuple[int, int], unit: DetailerUnit) -> Image.Image:
    """The box as a mask, moved by the offsets (y up, as ADetailer's) and dilated (eroded below 0): a box dilated
    by a square kernel is the box grown by as many pixels on each side."""
    grow, dx, dy = unit.ad_dilate_erode, unit.ad_x_offset, -unit.ad_y_offset
    left, top, right, bottom = box[0] - grow + dx, box[1] - grow + dy, box[2] + grow + dx, box[3] + grow + dy
    mask = Image.new("L", size, 0)
    if right > left and bottom > top:
        ImageDraw.Draw(mask).rectangle([left, top, right - 1, bottom - 1], fill=255)
    return mask
