"""Measure whether an image shows the `shapes` scene it was asked for: background, colour, shape, pastel, edges.

Why: the trained demo model (and its sample LoRA and canny ControlNet) must be judged by what it draws, not by its
loss. Every caption of `training.shapes` parses back to a `Scene`, so a prompt says exactly what should be
drawn, and these checks need no second model: they read colours and outlines with NumPy.

How each check reads an image (PIL image or HxWx3 uint8 array):
- background: the palette colour nearest to most pixels of the border ring (outer 10% of the side).
- the shape's region: the box where `render` would draw it, padded by `REGION_PAD` of the side on each side;
  foreground is what differs from the ring's median colour by more than `FOREGROUND_DISTANCE`.
- colour: the per-channel median of the region's foreground, nearest palette colour.
- shape: the largest 8-connected foreground component, classified by its bounding-box fill ratio and how full
  the corners of that box are (circle ~0.79 / empty corners, square 1 / full, triangle 0.5 / full bottom only).
- pastel: the share of coloured pixels nearer a pastel colour than a plain one: ~0 plain, ~1 pastel.
- edges: F1 of Canny edge pixels against control edges, each matched within `EDGE_TOLERANCE` px.

The metrics are defined on single-shape scenes (`seeded_prompts`). For a two-shape scene they check the first
shape, with its region cut back at the middle of the gap to the other shape so the other one never counts;
`evaluate_pairs` checks both shapes of the two-shape scenes of `seeded_pairs`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np
from PIL import Image

from training.shapes import (
    COLOURS,
    KINDS,
    POSITIONS,
    SIZES,
    TEMPLATES,
    Scene,
    Shape,
    caption,
    edges,
    pastel,
    random_scene,
    shape_box,
)

RING = 0.1  # border ring width, fraction of the side
REGION_PAD = 0.15  # padding around the expected box, fraction of the side
FOREGROUND_DISTANCE = 60.0  # RGB distance from the background that makes a pixel foreground
MIN_COMPONENT = 0.01  # smallest shape component that is classified, fraction of the image area
CORNER = 0.2  # corner cells of the component's box, fraction of its width and height
EDGE_TOLERANCE = 2  # px (Euclidean) within which an edge pixel is matched

# (fill ratio of the bounding box, top-corner fill, bottom-corner fill) of the ideal shapes; the corner fills as
# measured on renders (a corner cell of a circle's box is ~12% inside the circle, of a triangle's base ~80%).
SHAPE_FEATURES: dict[str, tuple[float, float, float]] = {
    "circle": (0.785, 0.12, 0.12),
    "square": (1.0, 1.0, 1.0),
    "triangle": (0.5, 0.0, 0.8),
}

_PALETTE_NAMES = tuple(COLOURS)
_PALETTE = np.array([COLOURS[name] for name in _PALETTE_NAMES], dtype=np.float64)
# the plain palette, then the pastel one (same order)
_STYLED_PALETTE = np.concatenate([_PALETTE, np.array([pastel(name) for name in _PALETTE_NAMES], dtype=np.float64)])
_WHITE = _PALETTE_NAMES.index("white")


# --- reading pixels ---------------------------------------------------------------------------------------------


def _pixels(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] != array.shape[1] or array.shape[0] < 16:
        raise ValueError(f"image must be a square RGB image of at least 16 px, got shape {array.shape}")
    return array.astype(np.float64)


def _nearest(rgb: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for each RGB triple in `rgb` (..., 3)."""
    return np.linalg.norm(rgb[..., None, :] - _PALETTE, axis=-1).argmin(axis=-1)


def nearest_colour(rgb) -> str:
    """The palette colour name nearest (in RGB) to one colour."""
    return _PALETTE_NAMES[int(_nearest(np.asarray(rgb, dtype=np.float64)))]


def _ring(pixels: np.ndarray) -> np.ndarray:
    side = pixels.shape[0]
    width = max(1, round(RING * side))
    mask = np.ones((side, side), dtype=bool)
    mask[width:-width, width:-width] = False
    return pixels[mask]


def background_colour(image) -> str:
    """The palette colour nearest to most pixels of the border ring."""
    labels = _nearest(_ring(_pixels(image)))
    return _PALETTE_NAMES[int(np.bincount(labels, minlength=len(_PALETTE_NAMES)).argmax())]


def foreground_colour(image, least: float = 0.01) -> str | None:
    """The palette colour nearest to most pixels that are not the background's, wherever they are (a lone shape's
    colour without knowing its scene); None when fewer than `least` of the pixels are not the background's."""
    labels = _nearest(_pixels(image)).ravel()
    others = labels[labels != _PALETTE_NAMES.index(background_colour(image))]
    if len(others) < least * len(labels):
        return None
    return _PALETTE_NAMES[int(np.bincount(others, minlength=len(_PALETTE_NAMES)).argmax())]


def _check_scene(scene: Scene) -> None:
    if not isinstance(scene, Scene):
        raise ValueError(f"scene must be a Scene, got {scene!r}")


# --- the shape's region -----------------------------------------------------------------------------------------


def _region(scene: Scene, side: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) in pixels: the first shape's padded box, cut at the middle of the gap to any other shape."""
    a = shape_box(scene.shapes[0])
    x0, y0, x1, y1 = a[0] - REGION_PAD, a[1] - REGION_PAD, a[2] + REGION_PAD, a[3] + REGION_PAD
    for other in scene.shapes[1:]:
        b = shape_box(other)
        gaps = {"right": b[0] - a[2], "left": a[0] - b[2], "down": b[1] - a[3], "up": a[1] - b[3]}
        direction = max(gaps, key=gaps.get)
        if direction == "right":
            x1 = min(x1, (a[2] + b[0]) / 2)
        elif direction == "left":
            x0 = max(x0, (b[2] + a[0]) / 2)
        elif direction == "down":
            y1 = min(y1, (a[3] + b[1]) / 2)
        else:
            y0 = max(y0, (b[3] + a[1]) / 2)
    return tuple(int(round(min(max(v, 0.0), 1.0) * side)) for v in (y0, y1, x0, x1))


def _foreground(pixels: np.ndarray, scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The region's pixels and the mask of those that differ from the ring's median colour."""
    background = np.median(_ring(pixels), axis=0)
    y0, y1, x0, x1 = _region(scene, pixels.shape[0])
    region = pixels[y0:y1, x0:x1]
    return region, np.linalg.norm(region - background, axis=-1) > FOREGROUND_DISTANCE


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of a boolean mask (breadth-first search over flat Python lists)."""
    h, w = mask.shape
    flat = mask.ravel().tolist()
    seen = [False] * (h * w)
    best: list[int] = []
    for start in np.flatnonzero(mask).tolist():
        if seen[start]:
            continue
        seen[start] = True
        members, queue = [start], deque([start])
        while queue:
            y, x = divmod(queue.popleft(), w)
            for ny in (y - 1, y, y + 1):
                if not 0 <= ny < h:
                    continue
                for nx in (x - 1, x, x + 1):
                    j = ny * w + nx
                    if 0 <= nx < w and flat[j] and not seen[j]:
                        seen[j] = True
                        members.append(j)
                        queue.append(j)
        if len(members) > len(best):
            best = members
    out = np.zeros(h * w, dtype=bool)
    out[best] = True
    return out.reshape(h, w)


def _component(image, scene: Scene) -> tuple[np.ndarray, np.ndarray] | None:
    """The region's pixels and the first shape's component, or None when it is smaller than `MIN_COMPONENT`."""
    _check_scene(scene)
    pixels = _pixels(image)
    region, mask = _foreground(pixels, scene)
    component = _largest_component(mask)
    if component.sum() < MIN_COMPONENT * pixels.shape[0] ** 2:
        return None
    return region, component


# --- metrics ----------------------------------------------------------------------------------------------------


def background_correct(image, scene: Scene) -> bool:
    """Whether most of the border ring is nearest to the scene's background colour."""
    _check_scene(scene)
    return background_colour(image) == scene.background


def colour_correct(image, scene: Scene) -> bool:
    """Whether the median colour of the foreground in the first shape's region is nearest to its asked colour."""
    _check_scene(scene)
    region, mask = _foreground(_pixels(image), scene)
    if not mask.any():
        return False
    return nearest_colour(np.median(region[mask], axis=0)) == scene.shapes[0].colour


def shape_features(mask: np.ndarray) -> tuple[float, float, float]:
    """(fill ratio of the bounding box, mean fill of its two top corner cells, of its two bottom corner cells)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        raise ValueError("mask must have at least one set pixel, got an empty mask")
    box = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = box.shape
    ch, cw = max(1, round(CORNER * h)), max(1, round(CORNER * w))
    top = (box[:ch, :cw].mean() + box[:ch, -cw:].mean()) / 2
    bottom = (box[-ch:, :cw].mean() + box[-ch:, -cw:].mean()) / 2
    return float(box.mean()), float(top), float(bottom)


def classify_shape(mask: np.ndarray) -> str:
    """The kind whose ideal `SHAPE_FEATURES` are nearest to the mask's features."""
    features = np.array(shape_features(mask))
    return min(KINDS, key=lambda kind: float(np.linalg.norm(features - np.array(SHAPE_FEATURES[kind]))))


def shape_correct(image, scene: Scene) -> bool:
    """Whether the largest foreground component in the first shape's region is classified as its asked kind.

    False when that component covers less than `MIN_COMPONENT` of the image (nothing drawn there).
    """
    found = _component(image, scene)
    return found is not None and classify_shape(found[1]) == scene.shapes[0].kind


def pastel_share(image) -> float:
    """Share of the image's coloured pixels that are pastel: ~0 for the plain style, ~1 for `style="pastel"`.

    Each pixel goes to its nearest colour among the plain palette and the pastel one; pixels nearest white (the
    same in both) are left out. 0.0 when every pixel is white.
    """
    labels = np.linalg.norm(_pixels(image)[..., None, :] - _STYLED_PALETTE, axis=-1).argmin(axis=-1)
    coloured = labels != _WHITE
    return float((labels[coloured] >= len(_PALETTE_NAMES)).mean()) if coloured.any() else 0.0


def pastel_background(image) -> str:
    """The colour whose pastel is nearest to most pixels of the border ring (for the pastel style)."""
    distances = np.linalg.norm(_ring(_pixels(image))[:, None, :] - _STYLED_PALETTE[len(_PALETTE_NAMES):], axis=-1)
    return _PALETTE_NAMES[int(np.bincount(distances.argmin(axis=-1), minlength=len(_PALETTE_NAMES)).argmax())]


def _edge_mask(edge_image) -> np.ndarray:
    array = np.asarray(edge_image.convert("L") if isinstance(edge_image, Image.Image) else edge_image)
    if array.ndim == 3:
        array = array.max(axis=2)
    if array.ndim != 2:
        raise ValueError(f"control_edges must be an HxW edge map, got shape {array.shape}")
    return array > 127


def _within(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within `radius` (Euclidean) of a set pixel of `mask`."""
    padded = np.pad(mask, radius)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def edge_agreement(generated_image, control_edges) -> float:
    """F1 of the generated image's Canny edges against control edges, a pixel matching within `EDGE_TOLERANCE`.

    Precision: share of generated edge pixels near a control edge; recall: share of control edge pixels near a
    generated edge. 1.0 for the image the control edges came from; 1.0 when both are empty, 0.0 when one is.
    It measures where outlines are, not which shape they draw: a small circle's outline lies within 2 px of the
    same small square's at 64 px (F1 ~0.97), while a shape moved to another position scores below 0.35.
    """
    pixels = _pixels(generated_image).astype(np.uint8)
    control = _edge_mask(control_edges)
    if control.shape != pixels.shape[:2]:
        raise ValueError(f"control_edges must match the image size {pixels.shape[:2]}, got {control.shape}")
    generated = np.asarray(edges(Image.fromarray(pixels, "RGB"))) > 0
    if not generated.any() and not control.any():
        return 1.0
    if not generated.any() or not control.any():
        return 0.0
    precision = (generated & _within(control, EDGE_TOLERANCE)).sum() / generated.sum()
    recall = (control & _within(generated, EDGE_TOLERANCE)).sum() / control.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


# --- the evaluation set -----------------------------------------------------------------------------------------


def evaluate(images, scenes) -> dict[str, float]:
    """Accuracies over paired images and scenes: {"n", "background", "colour", "shape", "pastel"}.

    "pastel" is the mean `pastel_share` (for comparing the style LoRA with the base model), the others are the
    share of images that pass `background_correct`, `colour_correct`, `shape_correct`.
    """
    images, scenes = list(images), list(scenes)
    if len(images) != len(scenes) or not images:
        raise ValueError(f"images and scenes must be non-empty and pair up, got {len(images)} and {len(scenes)}")
    return {
        "n": len(images),
        "background": float(np.mean([background_correct(i, s) for i, s in zip(images, scenes)])),
        "colour": float(np.mean([colour_correct(i, s) for i, s in zip(images, scenes)])),
        "shape": float(np.mean([shape_correct(i, s) for i, s in zip(images, scenes)])),
        "pastel": float(np.mean([pastel_share(i) for i in images])),
    }


def seeded_prompts(n: int = 50, seed: int = 0) -> list[tuple[str, Scene]]:
    """A fixed set of single-shape (caption, scene) pairs: kinds and positions in turn, the rest drawn from `seed`.

    Prompt i has kind i % 3, position i % 5 and caption template i % 4; size, colour and background come from a
    NumPy generator seeded with `seed`, so the same arguments give the same list on every machine.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    sizes, colours = list(SIZES), list(COLOURS)
    prompts = []
    for i in range(n):
        background = colours[rng.integers(len(colours))]
        others = [c for c in colours if c != background]
        shape = Shape(
            kind=KINDS[i % len(KINDS)],
            colour=others[rng.integers(len(others))],
            size=sizes[rng.integers(len(sizes))],
            position=POSITIONS[i % len(POSITIONS)],
        )
        scene = Scene(shapes=(shape,), background=background)
        prompts.append((caption(scene, seed=i % len(TEMPLATES)), scene))
    return prompts


def seeded_pairs(n: int = 50, seed: int = 0) -> list[tuple[str, Scene]]:
    """A fixed set of two-shape (caption, scene) pairs, drawn as the dataset draws them from a generator seeded
    with `seed`; caption template i % 4."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng([seed, 2])
    scenes = [random_scene(rng, two_shapes_probability=1.0) for _ in range(n)]
    return [(caption(scene, seed=i % len(TEMPLATES)), scene) for i, scene in enumerate(scenes)]


def evaluate_pairs(images, scenes) -> dict[str, float]:
    """Over two-shape images and scenes: the share with both shapes' colours right in their places ("colours"),
    with both kinds right ("kinds"), with both right ("both"), and with the two colours the wrong way round
    ("swapped": each place holds the other shape's colour)."""
    images, scenes = list(images), list(scenes)
    if len(images) != len(scenes) or not images or any(len(scene.shapes) != 2 for scene in scenes):
        raise ValueError(f"images and two-shape scenes must be non-empty and pair up, got {len(images)} and "
                         f"{len(scenes)}")
    colours, kinds, swapped = [], [], []
    for image, scene in zip(images, scenes):
        a, b = scene.shapes
        each = (scene, Scene(shapes=(b, a), background=scene.background))
        colours.append(all(colour_correct(image, one) for one in each))
        kinds.append(all(shape_correct(image, one) for one in each))
        crossed = (Scene(shapes=(replace(a, colour=b.colour), b), background=scene.background),
                   Scene(shapes=(replace(b, colour=a.colour), a), background=scene.background))
        swapped.append(a.colour != b.colour and all(colour_correct(image, one) for one in crossed))
    return {"n": len(images), "colours": float(np.mean(colours)), "kinds": float(np.mean(kinds)),
            "both": float(np.mean([c and k for c, k in zip(colours, kinds)])), "swapped": float(np.mean(swapped))}
