"""MediaPipe's face detectors (BlazeFace short range, and full range), ADetailer's `mediapipe_face_short` and
`mediapipe_face_full`, run from their `.tflite` files with LiteRT (ai-edge-litert), decoded as MediaPipe's face
detection graphs decode them: SSD anchors, boxes relative to them, sigmoid scores, weighted non-maximum suppression.

Not through the mediapipe package: its wheels need opencv-contrib-python, which replaces the cv2 this app pins (and
drops the Haar cascades), and they ship no models. The files go in the annotator folder's `mediapipe/`, under the
names MediaPipe gives them: `blaze_face_short_range.tflite` (MediaPipe Tasks' model card) or
`face_detection_short_range.tflite`, and `face_detection_full_range_sparse.tflite` or
`face_detection_full_range.tflite` (the face detection solution's). A flatbuffer is data, not code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = "mediapipe"  # inside the annotator folder
IOU = 0.3  # MediaPipe's min_suppression_threshold
FLOOR = 0.05  # scores below this are never a face (the unit's confidence filters the rest)


@dataclass(frozen=True)
class Model:
    files: tuple[str, ...]  # its file names, by preference
    side: int  # the square input's side
    strides: tuple[int, ...]  # one per SSD layer; layers of one stride share a grid
    anchors_per_layer: int  # 2 with MediaPipe's interpolated scale, 1 without


MODELS = {
    "mediapipe_face_short": Model(("blaze_face_short_range.tflite", "face_detection_short_range.tflite"), 128,
                                  (8, 16, 16, 16), 2),
    "mediapipe_face_full": Model(("face_detection_full_range_sparse.tflite", "face_detection_full_range.tflite"), 192,
                                 (4,), 1),
}


def file_of(name: str, annotator_dir: Path | None) -> Path | None:
    """The model's file in the annotator folder, where it is there and LiteRT can run it."""
    if annotator_dir is None:
        return None
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return None
    folder = Path(annotator_dir) / FOLDER
    return next((folder / file for file in MODELS[name].files if (folder / file).is_file()), None)


def anchors(model: Model) -> np.ndarray:
    """(n, 2) anchor centres in [0, 1], in the network's output order: each grid's cells row by row, each cell's
    anchors together (SsdAnchorsCalculator with fixed-size anchors)."""
    centres = []
    layer = 0
    while layer < len(model.strides):
        stride, same = model.strides[layer], 0
        while layer + same < len(model.strides) and model.strides[layer + same] == stride:
            same += 1
        cells = model.side // stride
        ys, xs = np.meshgrid((np.arange(cells) + 0.5) / cells, (np.arange(cells) + 0.5) / cells, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(grid, model.anchors_per_layer * same, axis=0))
        layer += same
    return np.concatenate(centres)


_interpreters: dict = {}
_lock = threading.Lock()


def detect(name: str, path: Path, picture: Image.Image) -> list[tuple[tuple[int, int, int, int], float]]:
    """(box, score) of each face in `picture` (boxes in its pixels)."""
    from ai_edge_litert.interpreter import Interpreter

    model = MODELS[name]
    # letterboxed into the square input, as MediaPipe's ImageToTensor keeps the aspect ratio
    side = max(picture.size)
    square = Image.new("RGB", (side, side))
    left, top = (side - picture.width) // 2, (side - picture.height) // 2
    square.paste(picture.convert("RGB"), (left, top))
    pixels = np.asarray(square.resize((model.side, model.side), Image.BILINEAR), np.float32) / 127.5 - 1
    with _lock:
        key = (path, path.stat().st_mtime_ns)
        if key not in _interpreters:
            interpreter = Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
            _interpreters[key] = interpreter
        interpreter = _interpreters[key]
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels[None])
        interpreter.invoke()
        outputs = sorted((interpreter.get_tensor(detail["index"])[0] for detail in interpreter.get_output_details()),
                         key=lambda output: output.shape[-1], reverse=True)
    boxes, scores = _decoded(outputs[0], outputs[1][:, 0], model)
    return [((round(x0 * side) - left, round(y0 * side) - top, round(x1 * side) - left, round(y1 * side) - top),
             float(score)) for (x0, y0, x1, y1), score in _suppressed(boxes, scores)]


def _decoded(raw: np.ndarray, logits: np.ndarray, model: Model) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (x0, y0, x1, y1 in [0, 1] of the square) and scores above FLOOR."""
    centres = anchors(model)
    scores = 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -100, 100)))
    keep = scores >= FLOOR
    raw, centres, scores = raw[keep], centres[keep], scores[keep]
    x, y = raw[:, 0] / model.side + centres[:, 0], raw[:, 1] / model.side + centres[:, 1]
    w, h = raw[:, 2] / model.side, raw[:, 3] / model.side
    return np.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], axis=1), scores


def _suppressed(boxes: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: each cluster of overlapping boxes (IoU over IOU) becomes their
    score-weighted mean, with the best score."""
    order = list(np.argsort(-scores))
    kept = []
    while order:
        best = order[0]
        overlaps = [index for index in order if _iou(boxes[best], boxes[index]) > IOU]
        weights = scores[overlaps]
        kept.append(((boxes[overlaps] * weights[:, None]).sum(axis=0) / weights.sum(), scores[best]))
        order = [index for index in order if index not in overlaps]
    return kept


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
