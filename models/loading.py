"""Identify and load a base model: a Hub id, a local diffusers folder or a single `.safetensors` checkpoint.

Only safetensors weights are accepted: pickled files (`.ckpt`, `.pt`, `.bin`) can run code when loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from safetensors import safe_open

from models import families
from models.demo.shipped import PIPELINE_DIR as DEMO_MODEL_DIR  # the trained shapes model
from models.files import PICKLE_SUFFIXES, is_hub_id, sha256

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
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
    """Load the base pipeline from `path` on the CPU in `dtype`. `config` overrides a single file's configs (the
    family's in models/configs/)."""
    common = {"dtype": dtype, "safety_checker": None, "requires_safety_checker": False}
    if source.kind == "single_file":
        family, in_channels = single_file_family(path)
        cls = family.inpaint if in_channels == 9 else family.txt2img
        config = config or str(family.config_folder(in_channels))
        tokenizers = {} if family is families.SD1 else families.tokenizers(family)  # SD 1.x's configs hold theirs
        return cls.from_single_file(path, config=config, local_files_only=True, **tokenizers, **common)
    return DiffusionPipeline.from_pretrained(path, use_safetensors=True, **common)


def single_file_family(path: str) -> tuple[families.Family, int]:
    """The family of an A1111 checkpoint and its U-Net's input channels (9: an inpainting model), from its keys."""
    with safe_open(path, framework="pt") as checkpoint:
        keys = list(checkpoint.keys())
        if _UNET_KEY not in keys:
            raise ValueError(f"model file {path!r} has no Stable Diffusion U-Net ({_UNET_KEY} is missing)")
        channels = checkpoint.get_slice(_UNET_KEY).get_shape()[1]
    family = families.of_checkpoint(keys, path)
    family.config_folder(channels)  # an unknown channel count is refused before anything loads
    return family, channels


def model_hash(source: ModelSource, path: str) -> str:
    """A1111's short hash: the first 10 hex digits of the checkpoint's sha256 (the U-Net weights for folders)."""
    if source.kind == "single_file":
        return sha256(Path(path))[:10]
    weights = sorted((Path(path) / "unet").glob("*.safetensors"))
    return sha256(weights[0])[:10] if weights else ""
