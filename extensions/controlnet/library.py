"""The ControlNet library: a folder of ControlNet models, and Hub ids, by name (cache.py keeps the loaded ones).

A ControlNet in the folder is either a diffusers folder (`config.json` + `diffusion_pytorch_model.safetensors`)
or one `.safetensors` file: in lllyasviel's original layout (`control_v11p_sd15_canny.safetensors`), or diffusers'
keys in one file (SDXL's, as `diffusers_xl_canny_full.safetensors`). A single file carries no config, and diffusers
would fetch one from the Hub; the config shipped for its width is passed instead (`configs/sd15-controlnet/` for
SD 1.x's 768, `configs/sdxl-controlnet/`, SDXL's full-size ControlNet, for 2048), so loading works offline.
Pickled weights are refused (they can run code), and so is anything whose real path lies outside the folder.

Names are paths inside the folder without the suffix ("sub/canny"), and the bare stem where it is unique.
A name that is not in the folder but is a Hub id ("lllyasviel/control_v11p_sd15_canny") names that repository.
The library also reads, without loading anything, the cross-attention width a local ControlNet was made for
(SD 1.x 768, SD 2.x 1024, SDXL 2048), the short hash the infotext writes, and what kind of model a name is: the
folder holds, as sd-webui-controlnet's does, IP-Adapters (h94's single files: `image_proj.*` and `ip_adapter.*` keys)
and T2I-Adapters (diffusers folders whose config names `T2IAdapter`) beside ControlNets.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from models.files import PICKLE_SUFFIXES, is_hub_id, is_inside_name, sha256, shown_path
from models.validate import did_you_mean

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SD15_CONFIG = Path(__file__).resolve().parent / "configs" / "sd15-controlnet"
SDXL_CONFIG = Path(__file__).resolve().parent / "configs" / "sdxl-controlnet"
SINGLE_FILE_CONFIGS = {768: SD15_CONFIG, 2048: SDXL_CONFIG}  # by cross-attention width
BASE_NAMES = {768: "SD 1.x", 1024: "SD 2.x", 1280: "SDXL refiner", 2048: "SDXL"}
HASH_LENGTH = 8  # sd-webui-controlnet writes "Model: control_v11p_sd15_canny [d14c016b]"
CONTROLNET, IP_ADAPTER, T2I_ADAPTER = "ControlNet", "IP-Adapter", "T2I-Adapter"  # the kinds of model


@dataclass(frozen=True)
class ControlNetEntry:
    name: str
    kind: str  # "folder", "single_file" or "hub"
    location: str  # the resolved path, or the Hub id

    @property
    def weights(self) -> Path | None:
        """The weights file on disk (None for a Hub id)."""
        if self.kind == "folder":
            return Path(self.location) / WEIGHTS_NAME
        return Path(self.location) if self.kind == "single_file" else None


class ControlNetLibrary:
    def __init__(self, folder: str | Path, single_file_config: str | Path | None = None):
        """`single_file_config`: a folder with the `config.json` that every single file is loaded with (None: the
        shipped one of the file's width)."""
        self.folder = Path(folder)
        self.single_file_config = Path(single_file_config) if single_file_config is not None else None
        self._lock = threading.Lock()
        self._entries: dict[str, ControlNetEntry] = {}
        self._refused: dict[str, str] = {}
        self._names: list[str] = []

    def list_names(self) -> list[str]:
        """Rescan the folder; one name per ControlNet (the stem where unique, else the path inside), sorted."""
        root = self.folder.resolve()
        found: dict[str, tuple[str, Path]] = {}  # relative name -> (kind, path)
        refused: dict[str, str] = {}
        if root.is_dir():
            for directory, subdirectories, files in os.walk(root):
                here = Path(directory)
                relative = here.relative_to(root).as_posix()
                if "config.json" in files and here != root:
                    if WEIGHTS_NAME in files:
                        found[relative] = ("folder", here)
                    elif any(f.endswith(PICKLE_SUFFIXES) for f in files):
                        refused[relative] = _pickle_reason(relative, "a diffusers folder with pickled weights")
                    subdirectories[:] = []  # the files inside belong to this folder
                    continue
                for name in sorted(files) + [d for d in subdirectories if (here / d).is_symlink()]:
                    path = here / name
                    stem = path.relative_to(root).with_suffix("").as_posix()
                    if not path.resolve().is_relative_to(root):
                        refused[stem] = f"ControlNet {stem!r} is a link leading out of the folder {shown_path(root)}"
                    elif path.suffix.lower() == ".safetensors":
                        found.setdefault(stem, ("single_file", path.resolve()))
                    elif path.suffix.lower() in PICKLE_SUFFIXES:
                        refused[stem] = _pickle_reason(stem, f"a pickle file ({path.suffix})")
        entries, names = {}, []
        stems = [relative.rsplit("/", 1)[-1] for relative in found]
        for relative, (kind, path) in found.items():
            stem = relative.rsplit("/", 1)[-1]
            unique = stems.count(stem) == 1
            entry = ControlNetEntry(stem if unique else relative, kind, str(path))
            entries[relative] = entry
            if unique:
                entries.setdefault(stem, entry)
            names.append(entry.name)
        for relative, reason in list(refused.items()):
            refused.setdefault(relative.rsplit("/", 1)[-1], reason)
        with self._lock:
            self._entries, self._refused, self._names = entries, refused, sorted(names, key=str.lower)
            return list(self._names)

    def names(self) -> list[str]:
        """The names from the last scan (no rescan)."""
        with self._lock:
            return list(self._names)

    def resolve(self, name: str) -> ControlNetEntry:
        """The entry for `name`: from the folder (rescanned once on a miss), else a Hub id."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"ControlNet name must be a non-empty string, got {name!r}")
        name = name.strip()
        suffix = Path(name).suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            raise ValueError(_pickle_reason(name, f"a pickle file ({suffix})"))
        key = name[: -len(".safetensors")] if suffix == ".safetensors" else name
        parts = key.split("/")
        if not is_inside_name(key):
            raise ValueError(f"ControlNet name {name!r} is not a path inside the ControlNet folder "
                             f"{shown_path(self.folder)}")
        for attempt in range(2):
            with self._lock:
                entry, reason = self._entries.get(key), self._refused.get(key)
            if entry is not None:
                return entry
            if reason is not None:
                raise ValueError(reason)
            if attempt == 0:
                self.list_names()  # dropped in since the last scan?
        if is_hub_id(key) and not (self.folder / parts[0]).is_dir():
            return ControlNetEntry(key, "hub", key)
        available = ", ".join(self.names()) or "nothing (the folder is empty or missing)"
        raise ValueError(f"ControlNet {name!r} not found in {shown_path(self.folder)}"
                         f"{did_you_mean(key, self.names())}; available: {available}")

    def short_hash(self, name: str) -> str:
        """A1111's short hash: the first 8 hex digits of the weights file's sha256 ("" for an uncached Hub id)."""
        entry = self.resolve(name)
        weights = entry.weights if entry.kind != "hub" else _hub_cached_weights(entry.location)
        if weights is None or not weights.is_file():
            return ""
        return sha256(weights)[:HASH_LENGTH]  # cached by path, size and mtime

    def infotext_name(self, name: str) -> str:
        """What the infotext writes for the model: "control_v11p_sd15_canny [d14c016b]"."""
        entry, digest = self.resolve(name), self.short_hash(name)
        return f"{entry.name} [{digest}]" if digest else entry.name

    def model_kind(self, name: str) -> str:
        """CONTROLNET, IP_ADAPTER or T2I_ADAPTER, read from the config or the file's header without loading it (a
        Hub id by its name: "t2i-adapter" or "t2iadapter" in it)."""
        entry = self.resolve(name)
        if entry.kind == "hub":
            lowered = entry.location.lower()
            return T2I_ADAPTER if "t2i-adapter" in lowered or "t2iadapter" in lowered else CONTROLNET
        path = Path(entry.location) / "config.json" if entry.kind == "folder" else Path(entry.location)
        try:
            stat = path.stat()
        except OSError:
            return CONTROLNET  # loading it then says what is wrong
        return _kind_of(entry.kind, str(path), stat.st_size, stat.st_mtime_ns)

    def config_for(self, entry: ControlNetEntry) -> Path:
        """The config folder a single file loads with: the one given, else the shipped one of its width, else
        SD 1.5's."""
        if self.single_file_config is not None:
            return self.single_file_config
        return SINGLE_FILE_CONFIGS.get(self.cross_attention_dim(entry), SD15_CONFIG)

    def cross_attention_dim(self, entry: ControlNetEntry) -> int | None:
        """The width a local ControlNet's cross-attention takes, read without loading it (None if unknown)."""
        if entry.kind == "folder":
            try:
                return json.loads((Path(entry.location) / "config.json").read_text()).get("cross_attention_dim")
            except (OSError, ValueError, AttributeError):
                return None  # loading it then says what is wrong
        if entry.kind == "single_file":
            shapes = _safetensors_shapes(Path(entry.location))
            for key, shape in shapes.items():
                if (key.endswith("attn2.to_k.weight") or key.endswith(".to_k_ip.weight")) and len(shape) == 2:
                    return shape[1]  # a ControlNet's cross-attention, or an IP-Adapter's image keys
        return None


@functools.lru_cache(maxsize=256)
def _kind_of(kind: str, path: str, size: int, mtime: int) -> str:
    """A local model's kind, by its config (a folder) or its keys (a single file); cached by the file's stamp."""
    if kind == "folder":
        try:
            config = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return CONTROLNET
        return T2I_ADAPTER if isinstance(config, dict) and config.get("_class_name") == "T2IAdapter" else CONTROLNET
    keys = _safetensors_shapes(Path(path)).keys()
    if any(key.startswith("image_proj.") for key in keys) and any(key.startswith("ip_adapter.") for key in keys):
        return IP_ADAPTER
    # diffusers' `adapter.*` keys, or TencentARC's original `body.*` and `conv_in.*`
    return T2I_ADAPTER if any(key.startswith(("adapter.", "body.")) for key in keys) else CONTROLNET


def _pickle_reason(name: str, what: str) -> str:
    return (
        f"ControlNet {name!r} is {what}; pickled weights (.ckpt, .pt, .pth, .bin) can run code when loaded, "
        "so only .safetensors are accepted. Convert it to .safetensors first."
    )


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a .safetensors header ({} if the header is unreadable: loading then says why)."""
    try:
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            if length > 100_000_000:
                return {}
            header = json.loads(file.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    return {key: value.get("shape", []) for key, value in header.items() if isinstance(value, dict)}


def _hub_cached_weights(repo: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, WEIGHTS_NAME)
    return Path(found) if isinstance(found, str) else None
