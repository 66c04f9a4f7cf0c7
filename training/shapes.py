"""The procedural "shapes" dataset the demo model is trained on: flat shapes on flat backgrounds, with captions.

Why procedural: the offline demo model must draw something a person (and a test) can check, and it must be
trainable from nothing that needs downloading. A small closed vocabulary makes every caption redrawable and every
generated image measurable (`evaluate_shapes`): 3 kinds x 6 colours x 3 sizes x 5 positions on 6 backgrounds.

- `Shape` and `Scene` are frozen, validated dataclasses; a scene holds one or two shapes whose boxes keep a gap
  (`MIN_GAP`), and no shape has the background's colour.
- `caption(scene, seed)` writes one of `TEMPLATES` ("a large red circle on a blue background"); it always names
  colour, kind and background, and size and position whenever they are not the default (medium, centre).
  `parse_caption` is its inverse and returns None for anything outside the vocabulary.
- `render(scene, size, style)` draws at 4x and downsamples with LANCZOS (anti-aliased, deterministic);
  `style="pastel"` paints the shapes and the background in pastel (`pastel`: each colour mixed well toward white),
  the style the sample LoRA learns.
- `edges(image)` is a NumPy Canny (3x3 Sobel, non-maximum suppression, hysteresis 100/200 on the L1 gradient of
  the strongest channel), the same recipe as `cv2.Canny(rgb, 100, 200)` that the app's canny preprocessor runs,
  so a ControlNet trained on it sees at inference what it saw in training.
- `segmentation(scene, size)` is the scene's segmentation map in the ADE20K palette that sd-webui-controlnet's
  seg models read (`SEGMENT_CLASSES`: the background is "wall", each shape the class standing for its kind),
  one exact palette colour per pixel, the shape wherever `render` draws at least half a pixel of it.
- `sample(seed)` and `stream(seed)` produce (image, caption, scene) for training, reproducibly.

NumPy and PIL only (the ADE20K palette is imported from extensions/controlnet/ade20k.py when a map is made), so
the data can be made without torch; nothing runs at import time.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 60, 210),
    "yellow": (240, 210, 30),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
}
SIZES: dict[str, float] = {"small": 0.25, "medium": 0.4, "large": 0.6}  # side of the shape's box / image side
POSITIONS = ("centre", "top left", "top right", "bottom left", "bottom right")
STYLES = ("plain", "pastel")

MARGIN = 0.05  # a corner shape's box starts this far (fraction of the side) from the two image edges
MIN_GAP = 0.05  # two shapes' boxes are at least this far apart along x or y, so they never touch
SUPERSAMPLE = 4
PASTEL_MIX = 0.55  # how far toward white the pastel style moves each colour

TEMPLATES = (
    "{shapes} on a {background} background",
    "{shapes} on {background}",
    "{shapes}, {background} background",
    "{background} background with {shapes}",
)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the image side


def _check_choice(field: str, value: object, choices) -> None:
    if value not in choices:
        raise ValueError(f"{field} must be one of {tuple(choices)}, got {value!r}")


@dataclass(frozen=True)
class Shape:
    kind: str
    colour: str
    size: str = "medium"
    position: str = "centre"

    def __post_init__(self):
        _check_choice("Shape.kind", self.kind, KINDS)
        _check_choice("Shape.colour", self.colour, COLOURS)
        _check_choice("Shape.size", self.size, SIZES)
        _check_choice("Shape.position", self.position, POSITIONS)


@dataclass(frozen=True)
class Scene:
    shapes: tuple[Shape, ...]
    background: str

    def __post_init__(self):
        object.__setattr__(self, "shapes", tuple(self.shapes))
        _check_choice("Scene.background", self.background, COLOURS)
        if not 1 <= len(self.shapes) <= 2:
            raise ValueError(f"Scene.shapes must hold 1 or 2 shapes, got {len(self.shapes)}")
        for shape in self.shapes:
            if not isinstance(shape, Shape):
                raise ValueError(f"Scene.shapes must hold Shape objects, got {shape!r}")
            if shape.colour == self.background:
                raise ValueError(f"Scene.background must differ from every shape's colour, got {self.background!r}")
        if len(self.shapes) == 2 and not boxes_apart(shape_box(self.shapes[0]), shape_box(self.shapes[1])):
            raise ValueError(f"Scene.shapes must not overlap or touch, got {self.shapes!r}")


def shape_box(shape: Shape) -> Box:
    """Where `render` draws the shape: its bounding box as fractions of the image side."""
    side = SIZES[shape.size]
    if shape.position == "centre":
        x0 = y0 = 0.5 - side / 2
    else:
        vertical, horizontal = shape.position.split()
        x0 = MARGIN if horizontal == "left" else 1 - MARGIN - side
        y0 = MARGIN if vertical == "top" else 1 - MARGIN - side
    return (x0, y0, x0 + side, y0 + side)


def grown_box(shape: Shape, side: int, pad: int) -> tuple[int, int, int, int]:
    """The shape's box in pixels of a `side`-pixel image, grown by `pad` pixels and kept inside the image: the
    region an inpaint mask repaints (in training and in the evaluation alike)."""
    x0, y0, x1, y1 = (int(v * side) for v in shape_box(shape))
    return max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, side), min(y1 + pad, side)


def moved(scene: Scene, steps: int = 1) -> Scene:
    """The one-shape scene with its shape `steps` places further along `POSITIONS`: a layout its caption does not
    ask for (to set a ControlNet's edges against a caption)."""
    if len(scene.shapes) != 1:
        raise ValueError(f"scene must hold one shape to be moved, got {len(scene.shapes)}")
    shape = scene.shapes[0]
    position = POSITIONS[(POSITIONS.index(shape.position) + steps) % len(POSITIONS)]
    return dataclasses.replace(scene, shapes=(dataclasses.replace(shape, position=position),))


def reshaped(scene: Scene, steps: int = 1) -> Scene:
    """The one-shape scene with its shape `steps` kinds further along `KINDS`: a kind its caption does not ask for
    (to set a segmentation map against a caption)."""
    if len(scene.shapes) != 1:
        raise ValueError(f"scene must hold one shape to be reshaped, got {len(scene.shapes)}")
    shape = scene.shapes[0]
    kind = KINDS[(KINDS.index(shape.kind) + steps) % len(KINDS)]
    return dataclasses.replace(scene, shapes=(dataclasses.replace(shape, kind=kind),))


def boxes_apart(a: Box, b: Box, gap: float = MIN_GAP) -> bool:
    """True when the boxes are at least `gap` apart along x or along y."""
    eps = 1e-9
    apart_x = b[0] - a[2] >= gap - eps or a[0] - b[2] >= gap - eps
    apart_y = b[1] - a[3] >= gap - eps or a[1] - b[3] >= gap - eps
    return apart_x or apart_y


# --- captions ---------------------------------------------------------------------------------------------------


def _shape_phrase(shape: Shape) -> str:
    words = ["a"]
    if shape.size != "medium":
        words.append(shape.size)
    words += [shape.colour, shape.kind]
    if shape.position != "centre":
        words += ["in the", shape.position]
    return " ".join(words)


def caption(scene: Scene, seed: int = 0) -> str:
    """The scene in words, with template number `seed % len(TEMPLATES)`: "a large red circle on a blue background"."""
    shapes = " and ".join(_shape_phrase(shape) for shape in scene.shapes)
    return TEMPLATES[seed % len(TEMPLATES)].format(shapes=shapes, background=scene.background)


_BACKGROUND_PATTERNS = (
    re.compile(r"^(?P<shapes>.+) on (?:a )?(?P<background>\w+)(?: background)?$"),
    re.compile(r"^(?P<shapes>.+) (?P<background>\w+) background$"),  # "<shapes>, <bg> background" once "," is dropped
    re.compile(r"^(?P<background>\w+) background with (?P<shapes>.+)$"),
)
_SHAPE_PATTERN = re.compile(
    r"^(?:a |one )?(?:(?P<size>\w+) )?(?P<colour>\w+) (?P<kind>\w+)"
    r"(?: (?:in|at) the (?P<position>top left|top right|bottom left|bottom right|centre|center|middle))?$"
)
_POSITION_ALIASES = {"center": "centre", "middle": "centre"}


def _parse_shape(phrase: str) -> Shape | None:
    match = _SHAPE_PATTERN.match(phrase)
    if match is None:
        return None
    position = match["position"] or "centre"
    try:
        return Shape(
            kind=match["kind"],
            colour=match["colour"],
            size=match["size"] or "medium",
            position=_POSITION_ALIASES.get(position, position),
        )
    except ValueError:
        return None


def parse_caption(text: str) -> Scene | None:
    """The scene a caption describes, or None when it has a word outside the vocabulary or cannot be drawn.

    Accepts every `TEMPLATES` form, any case, "-" for " " ("top-left"), "center"/"middle" for the centre and an
    explicit "medium". A caption whose scene is invalid (shape colour = background, shapes that overlap) is None.
    """
    text = " ".join(text.lower().replace("-", " ").replace(",", " ").replace(".", " ").split())
    for pattern in _BACKGROUND_PATTERNS:
        match = pattern.match(text)
        if match is None:
            continue
        shapes = [_parse_shape(phrase) for phrase in match["shapes"].split(" and ")]
        if None in shapes:
            continue
        try:
            return Scene(shapes=tuple(shapes), background=match["background"])
        except ValueError:
            continue
    return None


# --- drawing ----------------------------------------------------------------------------------------------------


def pastel(colour: str) -> tuple[int, int, int]:
    """The colour mixed `PASTEL_MIX` of the way to white (white stays white, black becomes a light grey)."""
    rgb = np.array(COLOURS[colour], dtype=np.float64)
    return tuple(int(round(c)) for c in rgb + PASTEL_MIX * (255 - rgb))


def painted(colour: str, style: str) -> tuple[int, int, int]:
    return pastel(colour) if style == "pastel" else COLOURS[colour]


def _shape_mask(shape: Shape, canvas: int) -> Image.Image:
    x0, y0, x1, y1 = (round(v * canvas) for v in shape_box(shape))
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    if shape.kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=255)
    elif shape.kind == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    else:  # triangle, apex up
        draw.polygon([((x0 + x1 - 1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=255)
    return mask


def render(scene: Scene, size: int = 64, style: str = "plain") -> Image.Image:
    """The scene as a `size` x `size` RGB image, drawn at 4x and downsampled with LANCZOS."""
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an int of at least 32, got {size!r}")
    _check_choice("style", style, STYLES)
    return _drawn(scene, size, style).copy()


@functools.lru_cache(maxsize=8192)  # training draws each one-shape scene ~90 times; drawing at 4x is the slow part
def _drawn(scene: Scene, size: int, style: str) -> Image.Image:
    canvas = size * SUPERSAMPLE
    image = Image.new("RGB", (canvas, canvas), painted(scene.background, style))
    for shape in scene.shapes:
        image.paste(painted(shape.colour, style), (0, 0, canvas, canvas), _shape_mask(shape, canvas))
    return image.resize((size, size), Image.Resampling.LANCZOS)


# --- segmentation ---------------------------------------------------------------------------------------------

# The ADE20K class (as sd-webui-controlnet's seg models and the app's seg preprocessors name them) that stands for
# the background and for each kind of shape in a segmentation map: wall 0, box 41, tent 114, ball 119.
SEGMENT_CLASSES: dict[str, str] = {"background": "wall", "circle": "ball", "square": "box", "triangle": "tent"}


def segment_ids() -> dict[str, int]:
    """The ADE20K class id of the background and of each kind (`SEGMENT_CLASSES`)."""
    from extensions.controlnet.ade20k import CLASSES  # here: the dataset itself imports NumPy and PIL only

    return {part: CLASSES.index(name) for part, name in SEGMENT_CLASSES.items()}


def segment_colours() -> dict[str, tuple[int, int, int]]:
    """The ADE20K palette colour of the background and of each kind: what a segmentation map paints them."""
    from extensions.controlnet.ade20k import PALETTE

    return {part: tuple(int(c) for c in PALETTE[index]) for part, index in segment_ids().items()}


def segmentation(scene: Scene, size: int = 64) -> Image.Image:
    """The scene's segmentation map as a `size` x `size` RGB image in the ADE20K palette: "wall" everywhere, each
    shape in the colour of its kind's class (`SEGMENT_CLASSES`; the shapes' colours and the background's are not
    in it, they come from the caption). No blend at the edges: every pixel is exactly one palette colour, the
    shape's where at least half of the pixel is covered by the shape's mask as `render` draws it at 4x."""
    if not isinstance(size, int) or size < 32:
        raise ValueError(f"size must be an int of at least 32, got {size!r}")
    return _segmented(scene, size).copy()


@functools.lru_cache(maxsize=8192)
def _segmented(scene: Scene, size: int) -> Image.Image:
    from extensions.controlnet.ade20k import colorize

    ids = segment_ids()
    labels = np.full((size, size), ids["background"], dtype=np.int64)
    for shape in scene.shapes:
        coverage = _shape_mask(shape, size * SUPERSAMPLE).resize((size, size), Image.Resampling.LANCZOS)
        labels[np.asarray(coverage) >= 128] = ids[shape.kind]
    return Image.fromarray(colorize(labels), "RGB")


# --- sampling ---------------------------------------------------------------------------------------------------


def _random_shape(rng: np.random.Generator, colours: list[str], position: str) -> Shape:
    return Shape(
        kind=KINDS[rng.integers(len(KINDS))],
        colour=colours[rng.integers(len(colours))],
        size=list(SIZES)[rng.integers(len(SIZES))],
        position=position,
    )


def random_scene(rng: np.random.Generator, two_shapes_probability: float = 0.3) -> Scene:
    """A uniform scene: background first, shape colours among the other five; two shapes at distinct positions.

    Two-shape draws whose boxes would overlap are redrawn (from the same generator, so still deterministic).
    """
    if not 0.0 <= two_shapes_probability <= 1.0:
        raise ValueError(f"two_shapes_probability must be in [0, 1], got {two_shapes_probability!r}")
    background = list(COLOURS)[rng.integers(len(COLOURS))]
    colours = [c for c in COLOURS if c != background]
    if rng.random() >= two_shapes_probability:
        shape = _random_shape(rng, colours, POSITIONS[rng.integers(len(POSITIONS))])
        return Scene(shapes=(shape,), background=background)
    while True:
        first, second = rng.choice(len(POSITIONS), size=2, replace=False)
        shapes = (_random_shape(rng, colours, POSITIONS[first]), _random_shape(rng, colours, POSITIONS[second]))
        if boxes_apart(shape_box(shapes[0]), shape_box(shapes[1])):
            return Scene(shapes=shapes, background=background)


def sample(
    seed: int, size: int = 64, two_shapes_probability: float = 0.3, style: str = "plain"
) -> tuple[Image.Image, str, Scene]:
    """(image, caption, scene) for one seed; the caption template is `seed % len(TEMPLATES)`."""
    scene = random_scene(np.random.default_rng(seed), two_shapes_probability=two_shapes_probability)
    return render(scene, size=size, style=style), caption(scene, seed=seed), scene


def stream(
    seed: int = 0, size: int = 64, two_shapes_probability: float = 0.3, style: str = "plain", start: int = 0
) -> Iterator[tuple[Image.Image, str, Scene]]:
    """An endless, reproducible run of `sample`s; item k uses a seed derived from (seed, k), `start` skips ahead."""
    for k in itertools.count(start):
        item_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
        yield sample(item_seed, size=size, two_shapes_probability=two_shapes_probability, style=style)


# --- edges ------------------------------------------------------------------------------------------------------

CANNY_LOW, CANNY_HIGH = 100, 200
_TAN_22_5, _TAN_67_5 = 0.41421356, 2.41421356


def _sobel(channels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.pad(channels, ((1, 1), (1, 1), (0, 0)), mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return gx, gy


def _neighbour(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """a shifted so that out[y, x] = a[y + dy, x + dx], zero outside."""
    h, w = a.shape
    out = np.zeros_like(a)
    out[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = a[
        max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


def _non_maximum(mag: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Keep gradient ridges: above the neighbour before, not below the one after; above both on diagonals (OpenCV)."""
    ax, ay = np.abs(gx), np.abs(gy)
    horizontal = ay < ax * _TAN_22_5
    vertical = ay > ax * _TAN_67_5
    diagonal = ~(horizontal | vertical)
    same_sign = (gx * gy) > 0
    keep = np.zeros(mag.shape, dtype=bool)
    for region, (dy, dx) in ((horizontal, (0, 1)), (vertical, (1, 0))):
        keep |= region & (mag > _neighbour(mag, -dy, -dx)) & (mag >= _neighbour(mag, dy, dx))
    for region, (dy, dx) in ((diagonal & same_sign, (1, 1)), (diagonal & ~same_sign, (1, -1))):
        keep |= region & (mag > _neighbour(mag, -dy, -dx)) & (mag > _neighbour(mag, dy, dx))
    return keep


def _dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    out = mask.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            out |= _neighbour(mask, dy, dx)
    return out


def edges(image: Image.Image) -> Image.Image:
    """Canny edges as an L image (255 on edges, 0 elsewhere): the recipe of `cv2.Canny(rgb, 100, 200)`.

    Per pixel, the channel with the largest L1 Sobel gradient |gx| + |gy| gives magnitude and direction;
    non-maximum suppression thins ridges to one pixel; pixels above 200 seed edges that grow through 8-connected
    pixels above 100. No blur, as OpenCV's Canny has none. On these flat scenes it draws one-pixel outlines.
    """
    rgb = np.asarray(image.convert("RGB"), dtype=np.int32)
    gx, gy = _sobel(rgb)
    l1 = np.abs(gx) + np.abs(gy)
    best = l1.argmax(axis=2)[..., None]
    mag = np.take_along_axis(l1, best, axis=2)[..., 0]
    gx, gy = np.take_along_axis(gx, best, axis=2)[..., 0], np.take_along_axis(gy, best, axis=2)[..., 0]
    ridge = _non_maximum(mag, gx, gy)
    weak = ridge & (mag > CANNY_LOW)
    edge = ridge & (mag > CANNY_HIGH)
    while True:
        grown = _dilate(edge) & weak
        if (grown == edge).all():
            break
        edge = grown
    return Image.fromarray(edge.astype(np.uint8) * 255, "L")
