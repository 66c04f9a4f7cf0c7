"""The ControlNet preprocessors that run a model: controlnet-aux's detectors, and transformers' Depth Anything V2
(depth) and UperNet (ADE20K segmentation); where their weights come from, and how they load.

Weights come from `annotator_dir()` (the app's --annotator-dir, default models/annotators) in the file layout of the
Hub repositories they come from, `<annotator_dir>/<owner>/<repo>/<file>` (models/annotators/lllyasviel/Annotators/
body_pose_model.pth), else from the Hugging Face cache, else from the Hub when it answers. The transformers models
are safetensors. lllyasviel/Annotators has only pickled `.pth` files: each is first opened with torch's
`weights_only` loader, which refuses a pickle that is anything but tensors and plain containers, before
controlnet-aux loads it (itself with torch's default, weights_only too since torch 2.6).

Each model loads once, on first use, on the CPU, under a lock, and is kept (`Loaded`); a new annotator folder drops
them. controlnet-aux is imported on first use too: its `__init__` imports every detector, timm and torchvision (6 s).

Every DetectFn here takes an RGB uint8 array already at the detection size and returns a map of that size. Like
sd-webui-controlnet (`resize_image_with_pad`), the image is padded to a multiple of 64 by repeating its edge and the
map is cropped back, so that controlnet-aux's own resizing (to multiples of 64) is a no-op.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from extensions.controlnet import ade20k
from extensions.controlnet.simple_maps import DetectFn
from models.files import hub_unreachable, shown_path

DEFAULT_ANNOTATOR_DIR = Path(__file__).resolve().parents[2] / "models" / "annotators"
HUB_PROBE_SECONDS = 60.0  # how long a "Hub reachable?" answer is trusted


@dataclass(frozen=True)
class Weights:
    """Files of one Hub repository that a preprocessor loads."""

    repo: str
    files: tuple[str, ...]


ANNOTATORS = "lllyasviel/Annotators"
DEPTH_ANYTHING_V2 = Weights("depth-anything/Depth-Anything-V2-Small-hf",
                            ("config.json", "model.safetensors", "preprocessor_config.json"))
UPERNET_ADE20K = Weights("openmmlab/upernet-convnext-tiny",
                         ("config.json", "model.safetensors", "preprocessor_config.json"))


def annotators(*files: str) -> Weights:
    return Weights(ANNOTATORS, files)


# --- where the files are ---------------------------------------------------------------------------------------

_annotator_dir = [DEFAULT_ANNOTATOR_DIR]  # set once by the app (--annotator-dir)


def set_annotator_dir(folder) -> None:
    """Where preprocessor weights are looked for first: `folder/<owner>/<repo>/<file>`, as on the Hub. A new folder
    drops the models loaded from the former one."""
    folder = Path(folder)
    if folder != _annotator_dir[0]:
        _annotator_dir[0] = folder
        for model in _LOADED:
            model.forget()


def annotator_dir() -> Path:
    return _annotator_dir[0]


def missing(weights: tuple[Weights, ...]) -> str | None:
    """Why these weights cannot be had here, or None. Never waits long: only when a file is in neither the annotator
    folder nor the Hugging Face cache is the Hub probed (2 s at most, the answer kept for a minute; with
    HF_HUB_OFFLINE=1 not at all)."""
    for group in weights:
        if _where(group) is None and not _hub_reachable():
            return _not_found(group)
    return None


def folder(weights: Weights) -> Path:
    """The folder holding all of `weights`' files: the annotator folder's, the Hugging Face cache's, or one they are
    downloaded into. Raises ValueError naming the missing file, the folder and the Hub repository."""
    found = _where(weights)
    if found is not None:
        return found
    if not _hub_reachable():
        raise ValueError(_not_found(weights))
    from huggingface_hub import hf_hub_download

    try:
        paths = [Path(hf_hub_download(weights.repo, name)) for name in weights.files]
    except Exception as error:  # noqa: BLE001 - a file the repository lacks, a download cut short, ...
        raise ValueError(f"{_not_found(weights)} ({type(error).__name__}: {str(error)[:200]})") from None
    return paths[0].parent


def _where(weights: Weights) -> Path | None:
    local = annotator_dir() / weights.repo
    if all((local / name).is_file() for name in weights.files):
        return local
    from huggingface_hub import try_to_load_from_cache

    cached = [try_to_load_from_cache(weights.repo, name) for name in weights.files]
    if all(isinstance(path, str) for path in cached) and len({Path(path).parent for path in cached}) == 1:
        return Path(cached[0]).parent
    return None


def _not_found(weights: Weights) -> str:
    local = annotator_dir() / weights.repo
    absent = [name for name in weights.files if not (local / name).is_file()] or list(weights.files)
    shown = f"{shown_path(annotator_dir())}/{weights.repo}"  # never an absolute server path
    return (f"needs {', '.join(absent)} from the Hub repository {weights.repo}: not in {shown} nor in the Hugging "
            f"Face cache, and the Hub cannot be reached (put the repository's files into {shown})")


def _shown(path: Path) -> str:
    """A weights file as a message names it: inside the annotator folder, by its place there; else (the Hugging
    Face cache) by its name. Never an absolute server path."""
    try:
        return f"{shown_path(annotator_dir())}/{Path(path).relative_to(annotator_dir()).as_posix()}"
    except ValueError:
        return f"{Path(path).name} (Hugging Face cache)"


_probe_lock = threading.Lock()
_probe: list = [-HUB_PROBE_SECONDS - 1, False]  # [monotonic time of the last probe, reachable]


def _hub_reachable() -> bool:
    """models.files.hub_unreachable (at once with HF_HUB_OFFLINE=1), with a 2 s probe trusted for a minute: the
    preprocessor list asks for every detector that needs weights."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    with _probe_lock:
        if time.monotonic() - _probe[0] > HUB_PROBE_SECONDS:
            _probe[:] = [time.monotonic(), not hub_unreachable(timeout=2)]
        return _probe[1]


def checked_pickle(path: Path) -> Path:
    """`path` once torch's weights_only loader has read it through (memory-mapped where the file allows, so the
    check costs little); ValueError naming the file when it holds anything but tensors and plain containers."""
    import pickle

    import torch

    try:
        try:
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):  # a file from before torch's zip format cannot be mapped: read it whole
                raise
            torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        # torch's message opens with advice to load it with weights_only=False; keep only what it found
        found = [line.strip() for line in str(error).splitlines() if "GLOBAL" in line]
        raise ValueError(
            f"refused to load {_shown(path)}: it is not a plain file of tensors that torch's weights_only loader "
            "accepts "
            f"({type(error).__name__}{': ' + found[0][:200] if found else ''})"
        ) from None
    return path


# --- models, loaded once ---------------------------------------------------------------------------------------

_LOADED: list[Loaded] = []


class Loaded:
    """A model made by `load()` (from `weights`) on first use and kept; `lock` serialises its use (the detectors are
    not known to be thread-safe, and they share the CPU anyway)."""

    def __init__(self, name: str, load: Callable[[], object], weights: tuple[Weights, ...] = ()):
        self.name, self._load, self.weights = name, load, weights
        self.lock = threading.RLock()
        self._instance = None
        _LOADED.append(self)

    def __call__(self):
        with self.lock:
            if self._instance is None:
                self._instance = self._load()
            return self._instance

    def forget(self) -> None:
        with self.lock:
            self._instance = None

    @property
    def loaded(self) -> bool:
        return self._instance is not None


@functools.cache
def controlnet_aux():
    """The controlnet_aux package, imported once, without the warnings its import raises (timm's deprecated module
    paths, its own re-registration of timm models, mediapipe missing, torch.jit.script)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("controlnet_aux")


def aux_detector(class_name: str, weights: Weights | None = None, **options) -> Loaded:
    """One of controlnet-aux's detector classes: built plain (weight-free ones) or `from_pretrained` on the folder
    holding `weights`, each of whose files is checked first."""

    def load():
        cls = getattr(controlnet_aux(), class_name)
        if weights is None:
            return cls()
        where = folder(weights)
        for name in weights.files:
            checked_pickle(where / name)
        with warnings.catch_warnings():  # timm's renamed models, torch.jit.script: nothing a user can act on
            warnings.simplefilter("ignore")
            return cls.from_pretrained(str(where), **options)

    return Loaded(class_name, load, (weights,) if weights else ())


def _openpose_part(part: str, file: str) -> Loaded:
    """One network of OpenPose (body, hand or face), so that body-only detection needs body_pose_model.pth alone."""

    def load():
        controlnet_aux()
        module = importlib.import_module(f"controlnet_aux.open_pose.{part.lower()}")
        return getattr(module, part)(str(checked_pickle(folder(annotators(file)) / file)))

    return Loaded(f"openpose {part.lower()}", load, (annotators(file),))


OPENPOSE_BODY = _openpose_part("Body", "body_pose_model.pth")
OPENPOSE_HAND = _openpose_part("Hand", "hand_pose_model.pth")
OPENPOSE_FACE = _openpose_part("Face", "facenet.pth")


def _transformers_model(model_class: str, weights: Weights) -> Loaded:
    """(image processor, model) of a transformers safetensors checkpoint, in eval mode on the CPU."""

    def load():
        import transformers

        where = folder(weights)
        processor = transformers.AutoImageProcessor.from_pretrained(where)
        model = getattr(transformers, model_class).from_pretrained(where, use_safetensors=True)
        return processor, model.eval()

    return Loaded(model_class, load, (weights,))


DEPTH_ANYTHING = _transformers_model("DepthAnythingForDepthEstimation", DEPTH_ANYTHING_V2)
UPERNET = _transformers_model("UperNetForSemanticSegmentation", UPERNET_ADE20K)


# --- the DetectFns ---------------------------------------------------------------------------------------------


def pad64(rgb: np.ndarray) -> np.ndarray:
    """The image padded at the bottom and right to multiples of 64 by repeating its edge (sd-webui-controlnet)."""
    height, width = rgb.shape[:2]
    return np.pad(rgb, ((0, -height % 64), (0, -width % 64), (0, 0)), mode="edge")


_numpy_seed_lock = threading.Lock()


def aux(detector: Loaded, image_resolution: bool = True, seed: int | None = None, **options) -> DetectFn:
    """A DetectFn calling a controlnet-aux detector on the padded image at its size. `options` may give the
    thresholds as callables (threshold_a, threshold_b) -> value. `image_resolution=False`: the detector takes no
    such argument (lineart_standard). `seed`: the detector draws from NumPy's global generator (content shuffle);
    it is seeded for the call and restored, so that one image gives one map."""

    def detect(rgb, a, b):
        kwargs = {key: value(a, b) if callable(value) else value for key, value in options.items()}
        return _run_aux(detector(), detector.lock, rgb, image_resolution, seed, kwargs)

    return detect


def _run_aux(instance, lock, rgb: np.ndarray, image_resolution: bool, seed: int | None, kwargs: dict) -> np.ndarray:
    height, width = rgb.shape[:2]
    padded = pad64(rgb)
    side = min(padded.shape[:2])
    kwargs = {**kwargs, "detect_resolution": side, "output_type": "np"}
    if image_resolution:
        kwargs["image_resolution"] = side
    with lock:
        if seed is None:
            result = instance(padded, **kwargs)
        else:
            with _numpy_seed_lock:
                state = np.random.get_state()
                np.random.seed(seed)
                try:
                    result = instance(padded, **kwargs)
                finally:
                    np.random.set_state(state)
    result = result[1] if isinstance(result, tuple) else result  # normal_midas: (depth, normal)
    return np.asarray(result)[:height, :width]


def openpose(body: bool = True, hand: bool = False, face: bool = False) -> DetectFn:
    """OpenPose from controlnet-aux with the networks asked for. Faces and hands are found from the body's key
    points, so the body network always runs; `body=False` only leaves the body's skeleton out of the map."""

    def detect(rgb, a, b):
        parts = (OPENPOSE_BODY(), OPENPOSE_HAND() if hand else None, OPENPOSE_FACE() if face else None)
        detector = controlnet_aux().OpenposeDetector(*parts)  # holds the three networks, nothing else
        options = {"include_body": body, "include_hand": hand, "include_face": face}
        return _run_aux(detector, OPENPOSE_BODY.lock, rgb, True, None, options)

    return detect


def depth_anything_v2(rgb, a, b):
    """Relative depth from Depth Anything V2 at the model's own input size (518 px, the processor's resize), brought
    back to the detection size: a gray map normalised to 0-255, near bright, as sd-webui-controlnet's
    depth_anything_v2 makes it."""
    import torch

    processor, model = DEPTH_ANYTHING()
    with DEPTH_ANYTHING.lock, torch.inference_mode():
        inputs = processor(images=np.array(rgb), return_tensors="pt")  # a writable copy, as torch wants
        predicted = model(**inputs).predicted_depth
        depth = torch.nn.functional.interpolate(predicted[:, None].float(), size=rgb.shape[:2], mode="bilinear",
                                                align_corners=False)[0, 0]
    return depth_to_gray(depth.numpy())


def depth_to_gray(depth: np.ndarray) -> np.ndarray:
    """A relative depth (disparity: larger is nearer) as uint8 0-255, min to max; a flat depth gives black."""
    depth = depth.astype(np.float64) - float(depth.min())
    top = float(depth.max())
    return (depth / top * 255.0).round().astype(np.uint8) if top > 0 else np.zeros(depth.shape, np.uint8)


def seg_upernet_ade20k(rgb, a, b):
    """ADE20K classes from UperNet (ConvNeXt-T) at the detection size (padded to 64, like sd-webui-controlnet's
    seg_ufade20k), coloured with the ADE20K palette that sd-webui-controlnet's seg ControlNets were trained on.

    Named seg_upernet_ade20k, not seg_ufade20k: sd-webui-controlnet's seg_ufade20k is UniFormer (an mmsegmentation
    UperNet head on a UniFormer backbone, a pickled .pth that needs mmcv); this is UperNet on ConvNeXt-T from
    transformers' safetensors. Same classes and palette, another model, so another name."""
    import torch

    processor, model = UPERNET()
    if model.config.num_labels != len(ade20k.CLASSES):
        raise ValueError(f"seg_upernet_ade20k needs a model of the {len(ade20k.CLASSES)} ADE20K classes; the one from "
                         f"{UPERNET_ADE20K.repo} has {model.config.num_labels}")
    height, width = rgb.shape[:2]
    with UPERNET.lock, torch.inference_mode():
        inputs = processor(images=pad64(rgb), do_resize=False, return_tensors="pt")
        labels = model(**inputs).logits[0].argmax(0)[:height, :width]
    return ade20k.colorize(labels.numpy())
