"""The loaded ControlNets, T2I-Adapters and IP-Adapters: a small LRU cache over the ControlNet library (library.py).

The cache checks a ControlNet or an IP-Adapter fits the base model (cross-attention width: SD 1.x 768, SD 2.x 1024,
SDXL 2048) before it keeps it; a failed load leaves the cache as it was. An IP-Adapter is kept as h94's state dict
(`{"image_proj": ..., "ip_adapter": ...}`), which diffusers turns into the U-Net's processors (image_prompts.py).
Single ControlNet files load with the library's config folder (the shipped SD 1.5 or SDXL ControlNet config, by the
file's width), so loading works offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from extensions.controlnet.library import (
    BASE_NAMES,
    IP_ADAPTER,
    T2I_ADAPTER,
    WEIGHTS_NAME,
    ControlNetEntry,
    ControlNetLibrary,
)
from models.files import hub_unreachable, own_memory, shown_path
from models.lru import LRU

if TYPE_CHECKING:
    from diffusers import ControlNetModel


class ControlNetCache:
    """Loaded ControlNets by name, at most `cap` of them, least recently used evicted first.

    Keyed by the weights file's path, size and mtime: a file replaced under the same name is loaded again."""

    def __init__(self, library: ControlNetLibrary, cap: int = 3, device: str = "cpu", dtype=None):
        self._models: LRU[tuple, ControlNetModel] = LRU(cap, on_evict=lambda key, model: self._free())
        self.library = library
        self.device = device
        self.dtype = dtype

    @property
    def cap(self) -> int:
        return self._models.cap

    def get(self, name: str, cross_attention_dim: int | None = None, family: str = "") -> ControlNetModel:
        """The ControlNetModel for `name`, loaded on first use. `cross_attention_dim` is the base model's text
        width: a ControlNet made for another base is refused, naming the file, both widths and the base model's
        `family`."""
        with self._models.lock:  # held while loading: one load at a time, and no second load of the same file
            entry = self.library.resolve(name)
            key = _cache_key(entry)
            kind = self.library.model_kind(name)
            model = self._models.peek(key)
            if model is not None:
                _check_width(entry, _width(model), cross_attention_dim, family, kind)
                return self._models.get(key)  # now the most recently used
            if cross_attention_dim is not None:
                _check_width(entry, self.library.cross_attention_dim(entry), cross_attention_dim, family, kind)
            model = self._load(entry, kind)
            _check_width(entry, _width(model), cross_attention_dim, family, kind)
            for stale in [k for k in self._models.keys() if k[0] == key[0]]:  # the same file, changed since
                self._models.pop(stale)
            self._models.put(key, model)  # evicts the least recently used beyond the cap, freeing each
            return model

    def loaded(self) -> list[str]:
        """Where the loaded ControlNets come from (path or Hub id), least recently used first."""
        return [key[0] for key in self._models.keys()]

    def clear(self) -> None:
        with self._models.lock:
            self._models.clear()
            self._free()

    def _load(self, entry: ControlNetEntry, kind: str) -> ControlNetModel:
        import torch
        from diffusers import ControlNetModel

        dtype = self.dtype or torch.float32
        if kind == IP_ADAPTER:
            return self._load_ip_adapter(entry, dtype)
        if kind == T2I_ADAPTER:
            return self._load_t2i_adapter(entry, dtype)
        if entry.kind == "single_file":
            self._check_single_file_config(entry)
        try:
            if entry.kind == "single_file":
                model = ControlNetModel.from_single_file(
                    entry.location, config=str(self.library.config_for(entry)), local_files_only=True, dtype=dtype
                )
            elif entry.kind == "folder":
                model = ControlNetModel.from_pretrained(entry.location, use_safetensors=True, dtype=dtype)
            else:
                model = ControlNetModel.from_pretrained(
                    entry.location, use_safetensors=True, dtype=dtype,
                    local_files_only=hub_unreachable(),  # offline: the local HF cache only, no waiting
                )
        except Exception as error:  # diffusers raises OSError, ValueError, SafetensorError, ... for a bad file
            if entry.kind == "hub":
                raise ValueError(
                    f"ControlNet {entry.name!r}: not in {shown_path(self.library.folder)} and not loaded from the Hub "
                    f"({type(error).__name__}: {_first_line(error)})"
                ) from None
            raise ValueError(
                f"ControlNet file {_file_name(entry)}: cannot be loaded: truncated, damaged or not shaped as its "
                f"config says ({type(error).__name__}: {_first_line(error)})"
            ) from None
        model = model.to(self.device).eval().requires_grad_(False)
        if model.device.type == "cpu":
            own_memory(model)
        elif model.device.type == "cuda":  # the U-Net's layout (models/manager.py)
            import torch

            model.to(memory_format=torch.channels_last)
        return model

    def _load_ip_adapter(self, entry: ControlNetEntry, dtype) -> dict:
        """h94's layout: `image_proj.*` (the image embedding's projection into tokens) and `ip_adapter.N.to_k_ip` /
        `to_v_ip` (the keys and values of those tokens in each cross-attention layer)."""
        from safetensors.torch import load_file

        try:
            tensors = load_file(entry.location, device=str(self.device))
        except Exception as error:  # SafetensorError, OSError: a damaged file
            raise ValueError(f"IP-Adapter file {_file_name(entry)}: cannot be loaded ({type(error).__name__}: "
                             f"{_first_line(error)})") from None
        weights: dict = {"image_proj": {}, "ip_adapter": {}}
        for key, tensor in tensors.items():
            part, _, rest = key.partition(".")
            if part in weights:
                weights[part][rest] = tensor.to(dtype)
        return weights

    def _load_t2i_adapter(self, entry: ControlNetEntry, dtype):
        from diffusers import T2IAdapter
        from safetensors.torch import load_file

        from extensions.controlnet.t2i_adapters import from_original

        try:
            if entry.kind == "single_file":  # TencentARC's original layout, as sd-webui-controlnet's files have it
                tensors = load_file(entry.location)
            else:
                model = T2IAdapter.from_pretrained(entry.location, use_safetensors=True, dtype=dtype,
                                                   local_files_only=entry.kind != "hub" or hub_unreachable())
        except Exception as error:  # OSError, ValueError, SafetensorError, ...
            raise ValueError(f"T2I-Adapter {entry.name!r}: cannot be loaded ({type(error).__name__}: "
                             f"{_first_line(error)})") from None
        if entry.kind == "single_file":
            model = from_original(tensors, _file_name(entry)).to(dtype=dtype)
        return model.to(self.device).eval().requires_grad_(False)

    def _check_single_file_config(self, entry: ControlNetEntry) -> None:
        """A single file loads with one config; a ControlNet of another width would fail with a shape error."""
        config_folder = self.library.config_for(entry)
        config_width = json.loads((config_folder / "config.json").read_text()).get("cross_attention_dim")
        width = self.library.cross_attention_dim(entry)
        if width is not None and config_width is not None and width != config_width:
            raise ValueError(
                f"ControlNet file {_file_name(entry)}: its cross-attention width is {width} "
                f"({BASE_NAMES.get(width, 'unknown base')}); single files load with the config in "
                f"{shown_path(config_folder)}, "
                f"of width {config_width}. Use it as a diffusers folder (config.json + {WEIGHTS_NAME}) instead."
            )

    def _free(self) -> None:
        if str(self.device).startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _width(model) -> int | None:
    """The cross-attention width a loaded model takes (None for a T2I-Adapter, which has no attention)."""
    if isinstance(model, dict):  # an IP-Adapter's state dict: its image tokens' keys take the text's width
        shapes = [tensor.shape for key, tensor in model["ip_adapter"].items() if key.endswith("to_k_ip.weight")]
        return shapes[0][1] if shapes else None
    return getattr(model.config, "cross_attention_dim", None)


def _check_width(entry: ControlNetEntry, width: int | None, expected: int | None, family: str = "",
                 kind: str = "ControlNet") -> None:
    if expected is None or width is None or width == expected:
        return
    raise ValueError(
        f"{kind} file {_file_name(entry)}: made for another base model: its cross-attention width is {width} "
        f"({BASE_NAMES.get(width, 'unknown base')}), the base model's is {expected} "
        f"({family or BASE_NAMES.get(expected, 'unknown base')})"
    )


def _cache_key(entry: ControlNetEntry) -> tuple:
    weights = entry.weights
    if weights is None:
        return (entry.location, 0, 0)
    try:
        stat = weights.stat()
    except OSError:
        raise ValueError(f"ControlNet file {_file_name(entry)}: cannot be read (was it removed?)") from None
    return (entry.location, stat.st_size, stat.st_mtime_ns)


def _file_name(entry: ControlNetEntry) -> str:
    if entry.kind == "folder":
        return f"{Path(entry.location).name}/{WEIGHTS_NAME}"
    return Path(entry.location).name if entry.kind == "single_file" else entry.location


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]
