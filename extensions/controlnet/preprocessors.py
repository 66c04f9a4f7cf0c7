"""ControlNet preprocessors ("annotators") by their sd-webui-controlnet module names, and a cache of detected maps.

Canny, content shuffle, lineart_standard and those that need weights (openpose, depth, segmentation, lineart, hed,
...) come from controlnet-aux or transformers through `detectors`; the weight-free maps controlnet-aux lacks are in
`simple_maps` (OpenCV and NumPy). A preprocessor with weights is listed only where its files are at hand (the
annotator folder, the Hugging Face cache, or the Hub answers). This module holds the table, the settings each one
takes (A1111's "Threshold A/B" sliders and "Processor Res"), their validation, and `detect`, which keeps the last maps
by image content and settings so that a preview followed by a generation with the same settings detects once.

Every preprocessor takes a PIL image, works with its short side at `resolution`, and returns an RGB map of the
input's size.
"""

from __future__ import annotations

import importlib.util
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from extensions.controlnet import detectors, image_encoders, inpaint_maps, simple_maps
from extensions.controlnet.detectors import Loaded, Weights, annotators, aux, aux_detector, openpose
from extensions.controlnet.simple_maps import DetectFn
from models.images import image_digest
from models.lru import LRU

RESOLUTION_RANGE = (64, 2048)
DEFAULT_RESOLUTION = 512


@dataclass(frozen=True)
class Slider:
    """A threshold as the UI shows it (A1111's "Threshold A" / "Threshold B")."""

    label: str
    minimum: float
    maximum: float
    default: float
    step: float = 1.0


@dataclass(frozen=True)
class Preprocessor:
    name: str
    detect_fn: DetectFn = field(repr=False)
    threshold_a: Slider | None = None
    threshold_b: Slider | None = None
    uses_resolution: bool = True
    weights: tuple[Weights, ...] = ()  # the Hub files it loads
    packages: tuple[str, ...] = ()  # Python packages it needs beyond requirements.txt
    class_map: bool = False  # a map of class colours (segmentation): resized by nearest neighbour, no blending
    masked: bool = False  # an inpaint map: takes and gives a picture whose hole is transparent (inpaint_maps)
    requirement: Callable[[], str | None] | None = None  # why it cannot run here, or None (LaMa's file)
    image_prompt: bool = False  # an IP-Adapter's: its picture goes to a CLIP image encoder, not made into a map

    def settings(self, resolution=DEFAULT_RESOLUTION, threshold_a=None, threshold_b=None):
        """(resolution, threshold_a, threshold_b) validated, None replaced by the default; a setting this
        preprocessor does not use becomes None (A1111 clients send all three for every module)."""
        return (
            _check_resolution(resolution) if self.uses_resolution else None,
            _check_threshold("threshold_a", threshold_a, self.threshold_a, self.name),
            _check_threshold("threshold_b", threshold_b, self.threshold_b, self.name),
        )

    def run(self, image: Image.Image, resolution=DEFAULT_RESOLUTION, threshold_a=None, threshold_b=None) -> Image.Image:
        """The detected map: an RGB image of `image`'s size (RGBA for an inpaint map)."""
        resolution, threshold_a, threshold_b = self.settings(resolution, threshold_a, threshold_b)
        if self.masked:
            if not inpaint_maps.has_hole(image):
                raise ValueError(f"{self.name} needs a mask: give the unit one (white = repaint), or use it in the "
                                 "inpaint tab, whose mask it takes")
            return Image.fromarray(self.detect_fn(np.asarray(image.convert("RGBA")), None, None), "RGBA")
        rgb = to_rgb_array(image)
        height, width = rgb.shape[:2]
        if resolution is not None:
            rgb = resize_short_side(rgb, resolution)
        detected = _as_rgb(self.detect_fn(rgb, threshold_a, threshold_b))
        if detected.shape[:2] != (height, width):
            shrink = detected.shape[0] * detected.shape[1] > height * width
            interpolation = cv2.INTER_NEAREST if self.class_map else cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
            detected = cv2.resize(detected, (width, height), interpolation=interpolation)
        return Image.fromarray(detected, "RGB")


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """HxWx3 uint8; transparent pixels become white, as controlnet-aux's HWC3 does."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise ValueError(f"image is empty ({image.width}x{image.height})")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def resize_short_side(rgb: np.ndarray, short_side: int) -> np.ndarray:
    height, width = rgb.shape[:2]
    scale = short_side / min(height, width)
    if scale == 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def _as_rgb(detected: np.ndarray) -> np.ndarray:
    detected = np.asarray(detected)
    if detected.dtype != np.uint8:
        detected = detected.clip(0, 255).astype(np.uint8)
    if detected.ndim == 2:
        detected = detected[:, :, None]
    if detected.shape[2] == 1:
        detected = np.repeat(detected, 3, axis=2)
    return np.ascontiguousarray(detected[:, :, :3])


def _check_resolution(resolution) -> int:
    low, high = RESOLUTION_RANGE
    if resolution is None:
        return DEFAULT_RESOLUTION
    whole = isinstance(resolution, numbers.Real) and np.isfinite(resolution) and resolution == int(resolution)
    if isinstance(resolution, bool) or not whole:
        raise ValueError(f"resolution must be a whole number of pixels, got {resolution!r}")
    if not low <= resolution <= high:
        raise ValueError(f"resolution must be in [{low}, {high}], got {resolution!r}")
    return int(resolution)


def _check_threshold(field_name: str, value, slider: Slider | None, module: str) -> float | None:
    if slider is None:
        return None
    if value is None:
        return float(slider.default)
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{field_name} ({slider.label}) must be a number, got {value!r}")
    if not slider.minimum <= value <= slider.maximum:
        raise ValueError(
            f"{field_name} ({slider.label}) of {module} must be in [{slider.minimum:g}, {slider.maximum:g}], "
            f"got {value!r}"
        )
    return float(value)


_MIDAS = aux_detector("MidasDetector", annotators("dpt_hybrid-midas-501f0c75.pt"))
_ZOE = aux_detector("ZoeDetector", annotators("ZoeD_M12_N.pt"))
_NORMAL_BAE = aux_detector("NormalBaeDetector", annotators("scannet.pt"))
_LINEART = aux_detector("LineartDetector", annotators("sk_model.pth", "sk_model2.pth"))
_LINEART_ANIME = aux_detector("LineartAnimeDetector", annotators("netG.pth"))
_HED = aux_detector("HEDdetector", annotators("ControlNetHED.pth"))
_PIDI = aux_detector("PidiNetDetector", annotators("table5_pidinet.pth"))
_MLSD = aux_detector("MLSDdetector", annotators("mlsd_large_512_fp32.pth"))
_MEDIAPIPE = aux_detector("MediapipeFaceDetector")
_BODY, _HAND, _FACE = detectors.OPENPOSE_BODY, detectors.OPENPOSE_HAND, detectors.OPENPOSE_FACE


def _encoder(encoder: str | None) -> Callable[[], str | None]:
    """An IP-Adapter module's requirement: its CLIP image encoder's files (None: either encoder's)."""
    return lambda: image_encoders.missing(encoder)


def _weighted(name: str, fn: DetectFn, models: tuple[Loaded, ...], a: Slider | None = None,
              b: Slider | None = None, class_map: bool = False) -> Preprocessor:
    """A preprocessor running `models`: available where their weights are."""
    weights = tuple(weights for model in models for weights in model.weights)
    return Preprocessor(name, fn, a, b, weights=weights, class_map=class_map)


# controlnet-aux's LeReS (depth_leres, depth_leres++) is left out: it parses the process's own command line with
# pix2pix's option parser, so the app's `--model demo` becomes pix2pix's --model and loading fails.
PREPROCESSORS: dict[str, Preprocessor] = {
    p.name: p
    for p in (
        Preprocessor("none", simple_maps.passthrough, uses_resolution=False),
        Preprocessor("canny", aux(aux_detector("CannyDetector"), low_threshold=lambda a, b: a,
                                  high_threshold=lambda a, b: b),
                     Slider("Canny Low Threshold", 1, 255, 100), Slider("Canny High Threshold", 1, 255, 200)),
        Preprocessor("invert", simple_maps.invert),
        Preprocessor("lineart_standard", aux(aux_detector("LineartStandardDetector"), image_resolution=False)),
        Preprocessor("shuffle", aux(aux_detector("ContentShuffleDetector"), seed=0)),
        Preprocessor("threshold", simple_maps.threshold, Slider("Binarization Threshold", 0, 255, 127)),
        Preprocessor("binary", simple_maps.binary, Slider("Binary threshold", 0, 255, 0)),
        Preprocessor("scribble_xdog", simple_maps.scribble_xdog, Slider("XDoG Threshold", 1, 64, 32)),
        Preprocessor("blur_gaussian", simple_maps.blur_gaussian, Slider("Sigma", 0.01, 64.0, 9.0, 0.01)),
        Preprocessor("tile_resample", simple_maps.tile_resample, Slider("Down Sampling Rate", 1.0, 8.0, 1.0, 0.01),
                     uses_resolution=False),
        Preprocessor("t2ia_color_grid", simple_maps.color_grid),
        Preprocessor("recolor_luminance", simple_maps.luminance, Slider("Gamma Correction", 0.1, 2.0, 1.0, 0.001)),
        Preprocessor("recolor_intensity", simple_maps.intensity, Slider("Gamma Correction", 0.1, 2.0, 1.0, 0.001)),
        _weighted("depth_anything_v2", detectors.depth_anything_v2, (detectors.DEPTH_ANYTHING,)),
        _weighted("seg_upernet_ade20k", detectors.seg_upernet_ade20k, (detectors.UPERNET,), class_map=True),
        _weighted("openpose", openpose(), (_BODY,)),
        _weighted("openpose_face", openpose(face=True), (_BODY, _FACE)),
        _weighted("openpose_faceonly", openpose(body=False, face=True), (_BODY, _FACE)),
        _weighted("openpose_hand", openpose(hand=True), (_BODY, _HAND)),
        _weighted("openpose_full", openpose(hand=True, face=True), (_BODY, _HAND, _FACE)),
        _weighted("depth_midas", aux(_MIDAS), (_MIDAS,)),
        _weighted("normal_midas", aux(_MIDAS, depth_and_normal=True, bg_th=lambda a, b: a), (_MIDAS,),
                  Slider("Normal Background Threshold", 0.0, 1.0, 0.4, 0.01)),
        _weighted("depth_zoe", aux(_ZOE), (_ZOE,)),
        _weighted("normal_bae", aux(_NORMAL_BAE), (_NORMAL_BAE,)),
        _weighted("lineart_realistic", aux(_LINEART), (_LINEART,)),
        _weighted("lineart_coarse", aux(_LINEART, coarse=True), (_LINEART,)),
        _weighted("lineart_anime", aux(_LINEART_ANIME), (_LINEART_ANIME,)),
        _weighted("softedge_hed", aux(_HED), (_HED,)),
        _weighted("softedge_hedsafe", aux(_HED, safe=True), (_HED,)),
        _weighted("scribble_hed", aux(_HED, scribble=True), (_HED,)),
        _weighted("softedge_pidinet", aux(_PIDI), (_PIDI,)),
        _weighted("softedge_pidisafe", aux(_PIDI, safe=True), (_PIDI,)),
        _weighted("scribble_pidinet", aux(_PIDI, scribble=True), (_PIDI,)),
        _weighted("mlsd", aux(_MLSD, thr_v=lambda a, b: a, thr_d=lambda a, b: b), (_MLSD,),
                  Slider("MLSD Value Threshold", 0.01, 2.0, 0.1, 0.01),
                  Slider("MLSD Distance Threshold", 0.01, 20.0, 0.1, 0.01)),
        Preprocessor(inpaint_maps.HARMONIOUS, inpaint_maps.marked, uses_resolution=False, masked=True),
        Preprocessor(inpaint_maps.ONLY, inpaint_maps.marked, uses_resolution=False, masked=True),
        Preprocessor(inpaint_maps.ONLY_LAMA, inpaint_maps.lama_filled, uses_resolution=False, masked=True,
                     requirement=inpaint_maps.lama_missing),
        *(Preprocessor(name, simple_maps.passthrough, uses_resolution=False, image_prompt=True,
                       requirement=_encoder(encoder)) for name, encoder in image_encoders.MODULE_ENCODERS.items()),
        Preprocessor("mediapipe_face", aux(_MEDIAPIPE, max_faces=lambda a, b: int(a), min_confidence=lambda a, b: b),
                     Slider("Max Faces", 1, 10, 1), Slider("Min Face Confidence", 0.01, 1.0, 0.5, 0.01),
                     packages=("mediapipe",)),
    )
}

# sd-webui-controlnet's internal module names (its API accepts them) -> the names above.
ALIASES = {
    "depth": "depth_midas",
    "normal_map": "normal_midas",
    "hed": "softedge_hed",
    "hed_safe": "softedge_hedsafe",
    "pidinet": "softedge_pidinet",
    "pidinet_safe": "softedge_pidisafe",
    "pidinet_scribble": "scribble_pidinet",
    "lineart": "lineart_realistic",
    "color": "t2ia_color_grid",
    "invert (from white bg & black line)": "invert",
    "lineart_standard (from white bg & black line)": "lineart_standard",
    "inpaint": inpaint_maps.HARMONIOUS,
    **image_encoders.ALIASES,
}


def available() -> list[str]:
    """The preprocessors that can run here, in table order ("none" and "canny" first)."""
    return [name for name, preprocessor in PREPROCESSORS.items() if missing(preprocessor) is None]


def missing(preprocessor: Preprocessor) -> str | None:
    """Why `preprocessor` cannot run here, or None (never waits more than a 2-second Hub probe)."""
    for package in preprocessor.packages:
        if importlib.util.find_spec(package) is None:
            return f"needs the {package} package"
    if preprocessor.requirement is not None and (reason := preprocessor.requirement()):
        return reason
    return detectors.missing(preprocessor.weights)


def get(name: str) -> Preprocessor:
    """The preprocessor called `name` (or one of sd-webui-controlnet's internal names), if it can run here."""
    preprocessor = PREPROCESSORS.get(ALIASES.get(name, name)) if isinstance(name, str) else None
    reason = missing(preprocessor) if preprocessor else None
    if preprocessor is None or reason:
        why = f" ({reason})" if reason else ""
        raise ValueError(f"preprocessor {name!r} is not available here{why}; available: {', '.join(available())}")
    return preprocessor


class MapCache:
    """The last `cap` detected maps, keyed by image content, module and settings; thread-safe. Returns copies,
    so a caller that draws on a map does not change the cached one."""

    def __init__(self, cap: int = 32):
        self._maps: LRU[tuple, Image.Image] = LRU(cap)
        self.hits = 0
        self.misses = 0

    @property
    def cap(self) -> int:
        return self._maps.cap

    def detect(self, image: Image.Image, module: str, resolution=DEFAULT_RESOLUTION, threshold_a=None,
               threshold_b=None) -> Image.Image:
        preprocessor = get(module)
        settings = preprocessor.settings(resolution, threshold_a, threshold_b)
        # another folder, other weights
        source = str(detectors.annotator_dir()) if preprocessor.weights or preprocessor.requirement else None
        key = (image_digest(image), preprocessor.name, settings, source)
        with self._maps.lock:  # the look-up and its count together
            cached = self._maps.get(key)
            if cached is not None:
                self.hits += 1
                return cached.copy()
            self.misses += 1
        detected = preprocessor.run(image, *settings)  # not under the lock: other maps are served meanwhile
        self._maps.put(key, detected)
        return detected.copy()

    def clear(self) -> None:
        self._maps.clear()

    def __len__(self) -> int:
        return len(self._maps)


_maps = MapCache(32)


def detect(image: Image.Image, module: str, resolution=DEFAULT_RESOLUTION, threshold_a=None,
           threshold_b=None) -> Image.Image:
    """`get(module).run(...)` through the shared cache of the last 32 maps."""
    return _maps.detect(image, module, resolution, threshold_a, threshold_b)
