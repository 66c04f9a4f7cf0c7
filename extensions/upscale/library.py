"""The upscaler folder (--upscaler-dir): `.safetensors` files, subfolders allowed, named by their path inside the
folder without the suffix. spandrel detects the architecture from the state dict's keys and shapes (the library
ComfyUI uses), so no file says what it is. Pickles (.pth, .pt, .ckpt, .bin) are listed as refused and never
opened. A loaded model is kept until its file changes; at most `cap` at once (models/lru.py)."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from models.files import PICKLE_SUFFIXES
from models.lru import LRU
from models.validate import did_you_mean

MAX_FILE_BYTES = 1024 * 2**20  # the largest SR models (HAT-L, DAT) are a few hundred MB


class UpscalerLibrary:
    def __init__(self, folder: str | Path, cap: int = 2):
        self.folder = Path(folder)
        self._cache: LRU = LRU(cap)

    def _files(self, suffixes) -> dict[str, Path]:
        if not self.folder.is_dir():
            return {}
        found = {}
        for path in sorted(self.folder.rglob("*")):
            inside = path.relative_to(self.folder)
            if (path.suffix.lower() in suffixes and path.is_file() and not path.is_symlink()
                    and not any(part.startswith(".") for part in inside.parts)):
                found[inside.with_suffix("").as_posix()] = path
        return found

    def names(self) -> list[str]:
        return list(self._files({".safetensors"}))

    def refused(self) -> list[str]:
        """Files that are never loaded (pickles), by their path inside the folder."""
        return [path.relative_to(self.folder).as_posix() for path in self._files(PICKLE_SUFFIXES).values()]

    def missing(self, name: str, known: list[str]) -> str:
        """Why there is no upscaler `name`: a pickle of that name, or none at all (the `known` names listed)."""
        pickled = [file for file in self.refused() if file.rsplit(".", 1)[0] == name]
        if pickled:
            return f"upscaler {name!r}: {pickled[0]} is a pickle, which can run code when loaded: only .safetensors"
        return f"upscaler {name!r} is unknown; choose one of {', '.join(known)}{did_you_mean(name, known)}"

    def load(self, name: str):
        """spandrel's ImageModelDescriptor for the model called `name`; ValueError naming the upscaler otherwise."""
        path = self._files({".safetensors"}).get(name)
        if path is None:
            raise ValueError(self.missing(name, self.names()))
        stat = path.stat()
        if stat.st_size > MAX_FILE_BYTES:
            raise ValueError(f"upscaler {name!r}: {stat.st_size:,} bytes is more than any upscaler model")
        key = (name, stat.st_size, stat.st_mtime_ns)
        with self._cache.lock:  # one load of a file, however many ask at once
            model = self._cache.get(key)
            if model is None:
                model = _descriptor(name, path)
                self._cache.put(key, model)
        return model


def _descriptor(name: str, path: Path):
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    try:
        model = ModelLoader().load_from_state_dict(load_file(path))
    except UnsupportedModelError:
        raise ValueError(f"upscaler {name!r}: spandrel does not know this model's architecture") from None
    except Exception as error:  # a truncated or hostile file: its reader's complaint, not a server fault
        raise ValueError(f"upscaler {name!r}: not a readable model file ({type(error).__name__})") from None
    if not isinstance(model, ImageModelDescriptor) or model.purpose not in ("SR", "Restoration"):
        raise ValueError(f"upscaler {name!r}: a {model.architecture.name} model is not an image upscaler")
    return model.eval()
