"""Reading a LoRA file safely and checking it fits the loaded model before anything is loaded.

Accepted layouts, U-Net and text-encoder parts alike:
- kohya-ss / A1111: `lora_unet_<module_path_with_underscores>.lora_down.weight`, `.lora_up.weight`, `.alpha`
  and `lora_te_<text_model_...>` for the text encoder; for SDXL `lora_te1_` and `lora_te2_` for its two text
  encoders, and the U-Net's layers named by the LDM checkpoint's blocks (`lora_unet_input_blocks_4_1_...`);
- diffusers / PEFT: `unet.<module.path>.lora_A.weight` / `.lora_B.weight` (or the older `.lora.down.weight` /
  `.lora.up.weight`), `text_encoder.<module.path>...` and `text_encoder_2.<...>`.
A file for SDXL (a second text encoder, or LDM block names) on an SD 1.x / 2.x model, or one for those on SDXL, is
refused naming both families. Every key must then name a layer the model has, with matching input and output
widths; otherwise the file was made for another base or is not a plain LoRA, and it is refused naming the file and
the reason.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import torch
from diffusers.loaders.lora_conversion_utils import _maybe_map_sgm_blocks_to_diffusers
from safetensors.torch import load_file

from extensions.lora.lycoris import SUFFIXES as LYCORIS_SUFFIXES

SDXL_MARKERS = ("lora_te1_", "lora_te2_", "text_encoder_2.", "lora_unet_input_blocks_", "lora_unet_middle_block_",
                "lora_unet_output_blocks_")
KOHYA_PREFIXES = {"lora_unet_": "unet", "lora_te_": "text_encoder", "lora_te1_": "text_encoder",
                  "lora_te2_": "text_encoder_2"}
DIFFUSERS_PREFIXES = {"unet.": "unet", "text_encoder.": "text_encoder", "text_encoder_2.": "text_encoder_2"}
# suffix -> which matrix it is
KOHYA_SUFFIXES = {".lora_down.weight": "down", ".lora_up.weight": "up", ".alpha": "alpha",
                  **dict.fromkeys(LYCORIS_SUFFIXES, "lycoris")}  # LyCORIS's are checked by lycoris.py
DIFFUSERS_SUFFIXES = {
    ".lora_A.weight": "down", ".lora_B.weight": "up", ".lora.down.weight": "down", ".lora.up.weight": "up",
    ".alpha": "alpha",
}


def read_lora(path: Path, models: dict[str, torch.nn.Module], family: str = "SD 1.x") -> dict[str, torch.Tensor]:
    """The file's tensors, after checking every key against `models` ({"unet": ..., "text_encoder": ...,
    SDXL's "text_encoder_2": ...}) of a model of `family` (its name, for the messages)."""
    try:
        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises several kinds for a damaged file
        raise ValueError(f"LoRA file {path.name}: not a readable .safetensors file, perhaps truncated "
                         f"({error})") from None
    if not tensors:
        raise ValueError(f"LoRA file {path.name}: holds no tensors")
    check_fits(path.name, tensors, models, family)
    return tensors


def check_fits(file_name: str, tensors: dict[str, torch.Tensor], models: dict[str, torch.nn.Module],
               family: str = "SD 1.x") -> None:
    xl = "text_encoder_2" in models
    if any(key.startswith(SDXL_MARKERS) for key in tensors) != xl:
        made_for = "SD 1.x or 2.x (one text encoder)" if xl else "SDXL (a second text encoder or SDXL's U-Net blocks)"
        raise ValueError(f"LoRA file {file_name}: made for {made_for}; this model is {family}")
    if xl:  # kohya-ss's LDM block names as diffusers' (the ones the layer table has)
        tensors = diffusers_block_names(tensors, models["unet"])
    layers = {component: _layer_table(model, component) for component, model in models.items()}
    for key, tensor in tensors.items():
        component, layer_path, role = _split_key(key)
        if component is None:
            raise ValueError(f"LoRA file {file_name}: unknown key {key!r} (not a kohya-ss or diffusers LoRA layer)")
        layer = layers[component].get(layer_path)
        if layer is None:
            raise ValueError(f"LoRA file {file_name}: key {key!r} names no layer of this model's {component}")
        if role in ("alpha", "lycoris"):
            continue
        width_in, width_out = _widths(layer)
        if role == "down" and tensor.shape[1] != width_in or role == "up" and tensor.shape[0] != width_out:
            expected = width_in if role == "down" else width_out
            got = tensor.shape[1] if role == "down" else tensor.shape[0]
            raise ValueError(
                f"LoRA file {file_name}: made for another base model than this {family} one: {key!r} has width "
                f"{got}, this model's layer has {expected}"
            )


# diffusers renumbers kohya-ss's SDXL blocks, keeping their LDM names (its later conversion renames them)
_DIFFUSERS_BLOCKS = {"input_blocks": "down_blocks", "middle_block": "mid_block", "output_blocks": "up_blocks"}
_SGM_RENAMED = re.compile(r"(?<=^lora_unet_)(input_blocks|middle_block|output_blocks)")


def kohya_layers(models: dict[str, torch.nn.Module]) -> dict[str, tuple[str, str]]:
    """Each layer's kohya-ss name, prefix included (`lora_unet_...`, `lora_te_...`, SDXL's `lora_te1_...`), to its
    (component, module path)."""
    xl = "text_encoder_2" in models
    prefixes = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if xl else "lora_te_", "text_encoder_2": "lora_te2_"}
    return {prefixes[component] + name: (component, path) for component, model in models.items()
            for name, path in _layer_paths(model, component).items()}


def diffusers_block_names(tensors: dict[str, torch.Tensor], unet) -> dict[str, torch.Tensor]:
    """kohya-ss's SDXL U-Net keys, named by the LDM checkpoint's blocks, by diffusers' blocks (the other keys as
    they are)."""
    return {_SGM_RENAMED.sub(lambda m: _DIFFUSERS_BLOCKS[m[1]], key): tensor for key, tensor in
            _maybe_map_sgm_blocks_to_diffusers(dict(tensors), unet.config).items()}


def _split_key(key: str) -> tuple[str | None, str, str]:
    """(component, layer path as in the table, role) or (None, '', '') for a key of no known layout."""
    layouts = ((KOHYA_PREFIXES, KOHYA_SUFFIXES, True), (DIFFUSERS_PREFIXES, DIFFUSERS_SUFFIXES, False))
    for prefixes, suffixes, kohya in layouts:
        for prefix, component in prefixes.items():
            if not key.startswith(prefix):
                continue
            for suffix, role in suffixes.items():
                if key.endswith(suffix):
                    layer = key[len(prefix):-len(suffix)]
                    return component, layer.replace(".", "_") if not kohya else layer, role
    return None, "", ""


def _layer_table(model: torch.nn.Module, component: str) -> dict[str, torch.nn.Module]:
    """Linear and conv layers by kohya-style name (dots as underscores)."""
    modules = dict(model.named_modules())
    return {name: modules[path] for name, path in _layer_paths(model, component).items()}


def _layer_paths(model: torch.nn.Module, component: str) -> dict[str, str]:
    """Linear and conv layers' paths by kohya-style name (dots as underscores). A layer that already carries adapters
    is peft's wrapper around `<name>.base_layer`, named by the wrapper; the adapters' own layers are not targets. A
    text encoder's layers are named from `text_model`, as in every LoRA file, also where transformers (>= 5.6)
    flattened it away."""
    paths = {}
    for path, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and ".lora_" not in path \
                and not any(f".{name}" in path for name in ("hada_", "lokr_")):
            path = re.sub(r"(\.base_layer)+$", "", path)
            name = path.replace(".", "_")
            if component != "unet" and not path.startswith("text_model."):
                paths[f"text_model_{name}"] = path
            paths[name] = path
    return paths


def _widths(layer: torch.nn.Module) -> tuple[int, int]:
    while hasattr(layer, "base_layer"):  # adapters' wrappers, LoRA's and LyCORIS's
        layer = layer.base_layer
    if isinstance(layer, torch.nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels


def addnet_hash(path: Path) -> str:
    """A1111's LoRA hash for .safetensors ("addnet" hash): sha256 of the file after its JSON header."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        header_length = struct.unpack("<Q", file.read(8))[0]
        file.seek(8 + header_length)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
