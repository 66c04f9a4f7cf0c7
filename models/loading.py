"""Identify and load a base model: a Hub id, a local diffusers folder or a single `.safetensors` checkpoint.

Only safetensors weights are accepted: pickled files (`.ckpt`, `.pt`, `.bin`) can run code when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from safetensors import safe_open

from models.demo.shipped import PIPELINE_DIR as DEMO_MODEL_DIR  # the trained shapes model
from models.files import PICKLE_SUFFIXES, is_hub_id, sha256

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
# Component configs of SD 1.5 (no weights), so a single-file checkpoint loads without reaching the Hub.
SINGLE_FILE_CONFIGS = {4: MODELS_DIR / "configs" / "sd15", 9: MODELS_DIR / "configs" / "sd15-inpainting"}
_UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"  # the U-Net's conv_in in A1111 checkpoints


@dataclass(frozen=True)
class ModelSource:
    kind: str  # "demo", "hub", "folder" or "single_file"
    location: str
    name: str  # what the infotext calls "Model"


def identify(spec: str, local: bool = True) -> ModelSource:
    """Tell what kind of model `spec` names, refusing unsafe or unknown ones before anything is read. With
    `local` False only "demo" and Hub ids are taken, and nothing on the disk is looked at."""
    spec = spec.strip()
    if spec == "demo":
        return ModelSource("demo", str(DEMO_MODEL_DIR), DEMO_MODEL_DIR.name)
    if not local:
        if not is_hub_id(spec):
            raise ValueError(f"model {spec!r} is not 'demo' or a Hub id (owner/name)")
        return ModelSource("hub", spec, spec.split("/")[-1])
    path = Path(spec).expanduser()
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(
            f"model {spec!r} is a pickle file ({path.suffix}); pickles can run code when loaded, so only "
            ".safetensors checkpoints are accepted. Convert it to .safetensors first."
        )
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ValueError(f"model folder {spec!r} has no model_index.json: it is not a diffusers pipeline folder")
        return ModelSource("folder", str(path.resolve()), path.resolve().name)
    if path.suffix.lower() == ".safetensors":
        if not path.is_file():
            raise ValueError(f"model file {spec!r} does not exist")
        return ModelSource("single_file", str(path.resolve()), path.stem)
    if path.exists():
        raise ValueError(f"model {spec!r} is neither a diffusers folder nor a .safetensors checkpoint")
    if is_hub_id(spec):
        return ModelSource("hub", spec, spec.split("/")[-1])
    raise ValueError(f"model {spec!r} is not 'demo', an existing folder, a .safetensors file or a Hub id (owner/name)")


def local_path(source: ModelSource) -> str:
    """Where the weights lie on disk; a Hub model is downloaded (safetensors only) or found in the cache."""
    if source.kind == "hub":
        return DiffusionPipeline.download(source.location, use_safetensors=True)
    return source.location


def load_pipeline(source: ModelSource, path: str, dtype: torch.dtype, config: str | None = None) -> DiffusionPipeline:
    """Load the base pipeline from `path` on the CPU in `dtype`. `config` overrides a single file's configs."""
    common = {"dtype": dtype, "safety_checker": None, "requires_safety_checker": False}
    if source.kind == "single_file":
        in_channels = single_file_unet_channels(path)
        cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
        config = config or str(SINGLE_FILE_CONFIGS[in_channels])
        return cls.from_single_file(path, config=config, local_files_only=True, **common)
    return DiffusionPipeline.from_pretrained(path, use_safetensors=True, **common)


def single_file_unet_channels(path: str) -> int:
    with safe_open(path, framework="pt") as checkpoint:
        if _UNET_KEY not in checkpoint.keys():
            raise ValueError(f"model file {path!r} has no Stable Diffusion 1.x U-Net ({_UNET_KEY} is missing)")
        channels = checkpoint.get_slice(_UNET_KEY).get_shape()[1]
    if channels not in SINGLE_FILE_CONFIGS:
        raise ValueError(f"model file {path!r} has a {channels}-channel U-Net; SD 1.x has 4 or 9")
    return channels


def model_hash(source: ModelSource, path: str) -> str:
    """A1111's short hash: the first 10 hex digits of the checkpoint's sha256 (the U-Net weights for folders)."""
    if source.kind == "single_file":
        return sha256(Path(path))[:10]
    weights = sorted((Path(path) / "unet").glob("*.safetensors"))
    return sha256(weights[0])[:10] if weights else ""
