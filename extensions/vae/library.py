"""The VAE folder (--vae-dir): single `.safetensors` files in A1111's (LDM) layout, as vae-ft-mse-840000 ships,
and diffusers folders (config.json and diffusion_pytorch_model.safetensors), subfolders allowed. A file is named by
its path inside the folder without the suffix, a folder by its path. Pickles are never opened.

A single file has no config: it is read in the shape of the model's own VAE (diffusers' single-file conversion,
offline), so a file of another shape fails to load and is refused. A folder brings its config, which must agree
with the model's VAE on latent channels and down-sampling. Loaded VAEs are kept (at most `cap`) until their file
changes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from models.files import PICKLE_SUFFIXES, sha256
from models.lru import LRU
from models.validate import did_you_mean

AUTOMATIC = "Automatic"  # the model's own VAE
WEIGHTS = "diffusion_pytorch_model.safetensors"
MAX_FILE_BYTES = 2 * 1024**3


class VaeLibrary:
    def __init__(self, folder: str | Path, cap: int = 2):
        self.folder = Path(folder)
        self._cache: LRU = LRU(cap)

    def entries(self) -> dict[str, Path]:
        """name -> its file (a single file, or a folder's weights), sorted by name."""
        if not self.folder.is_dir():
            return {}
        found = {}
        for path in sorted(self.folder.rglob("*.safetensors")):
            inside = path.relative_to(self.folder)
            if path.is_symlink() or any(part.startswith(".") for part in inside.parts):
                continue
            if path.name == WEIGHTS and (path.parent / "config.json").is_file():
                if path.parent != self.folder:
                    found[path.parent.relative_to(self.folder).as_posix()] = path
            else:
                found[inside.with_suffix("").as_posix()] = path
        return dict(sorted(found.items()))

    def names(self) -> list[str]:
        return list(self.entries())

    def check_name(self, name) -> str:
        """`name` if it is Automatic or a VAE here; else ValueError naming the field `vae`."""
        if name == AUTOMATIC:  # every request's default: no look at the folder
            return name
        names = [AUTOMATIC, *self.names()]
        if isinstance(name, str) and name in names:
            return name
        pickled = [path.name for path in self.folder.rglob("*") if path.suffix.lower() in PICKLE_SUFFIXES
                   and path.stem == str(name)] if self.folder.is_dir() else []
        if pickled:
            raise ValueError(f"vae {name!r}: {pickled[0]} is a pickle, which can run code when loaded: only "
                             ".safetensors files are used")
        raise ValueError(f"vae {name!r} is unknown; choose one of {', '.join(names)}{did_you_mean(str(name), names)}")

    def short_hash(self, name: str) -> str:
        """A1111's "VAE hash": the first 10 hex digits of the file's sha256."""
        return sha256(self.entries()[name])[:10]

    def load(self, name: str, model_vae):
        """The AutoencoderKL called `name`, fitting `model_vae` (the model's own); ValueError naming it if not."""
        path = self.entries().get(name)
        if path is None:
            self.check_name(name)  # says why
            raise ValueError(f"vae {name!r}: Automatic is the model's own VAE, not one to load")
        stat = path.stat()
        if stat.st_size > MAX_FILE_BYTES:
            raise ValueError(f"vae {name!r}: {stat.st_size:,} bytes is more than any VAE")
        shape = _shape(model_vae.config)
        key = (name, stat.st_size, stat.st_mtime_ns, json.dumps(shape))
        with self._cache.lock:
            vae = self._cache.get(key)
            if vae is None:
                vae = _read(name, path, model_vae)
                if _shape(vae.config) != shape:
                    raise ValueError(f"vae {name!r} does not fit this model: {_describe(vae.config)} against its "
                                     f"own {_describe(model_vae.config)}")
                self._cache.put(key, vae.requires_grad_(False).eval())
        return vae


def _shape(config) -> dict:
    return {"latent_channels": config.latent_channels, "downsampling": 2 ** (len(config.block_out_channels) - 1)}


def _describe(config) -> str:
    shape = _shape(config)
    return f"{shape['latent_channels']} latent channels, {shape['downsampling']}x down-sampling"


def _read(name: str, path: Path, model_vae):
    from diffusers import AutoencoderKL

    try:
        if path.name == WEIGHTS and (path.parent / "config.json").is_file():
            return AutoencoderKL.from_pretrained(path.parent, use_safetensors=True, local_files_only=True)
        with tempfile.TemporaryDirectory() as config:  # the model's VAE config: the shape a single file is read in
            model_vae.save_config(config)
            return AutoencoderKL.from_single_file(str(path), config=config, local_files_only=True)
    except Exception as error:  # a file of another shape, truncated or hostile: refused, not a server fault
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ValueError(f"vae {name!r} could not be loaded for this model ({type(error).__name__}: {reason})") \
            from None
