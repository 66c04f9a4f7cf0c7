"""Textual-inversion embeddings: `.safetensors` files under one folder (subfolders allowed), named by their stem.

A file holds one word's vectors, (n, width), in one of the layouts A1111 reads: `emb_params` (kohya, Civitai),
`string_to_param.*` (A1111's own, flattened), or diffusers' learned_embeds (one key, the placeholder token). Which
ones a model can use depends on its text encoder's width (768 for SD 1.x), so the library answers per width: the
loaded ones, and the skipped ones with the reason in a user's words. Pickles (.pt, .bin, ...) are listed as skipped
and never opened; a safetensors file's keys, dtypes and shapes are checked from its header before any tensor is read.
A file is reread only when its size or mtime changes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from models.files import PICKLE_SUFFIXES, sha256

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024  # an embedding is a few KB to a few hundred KB; anything bigger is not one
MAX_VECTORS = 75  # one prompt chunk holds 75 tokens: more vectors cannot fit it
FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
KNOWN_WIDTHS = {768: "SD 1.x", 1024: "SD 2.x", 1280: "SDXL's second text encoder", 2048: "SDXL"}
_SUFFIXES = {".safetensors", *PICKLE_SUFFIXES}


@dataclass(frozen=True)
class Embedding:
    name: str  # the file's stem
    path: Path
    vectors: torch.Tensor = field(compare=False, repr=False)  # (n, width) float32 on the CPU, n >= 1; do not modify
    hash: str  # sha256 of the whole file, as A1111's hashes.sha256 computes it

    @property
    def shorthash(self) -> str:
        """A1111's short hash, written in the infotext's "TI hashes": the first 12 hex digits of the sha256."""
        return self.hash[:12]


@dataclass(frozen=True)
class _Read:
    """What one version (size, mtime) of one file holds, whatever the model."""

    stamp: tuple[int, int]
    embedding: Embedding | None = None
    problem: str | None = None  # why no model here can use it (None when `embedding` is set)
    width: int | None = None  # for the listing: the file's width and vector count where known
    vectors: int | None = None


class EmbeddingLibrary:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._reads: dict[str, _Read] = {}  # by the path inside the folder, "styles/ink.safetensors"
        self._warned: set[tuple[str, tuple[int, int], str]] = set()
        self.refresh()

    def refresh(self) -> None:
        """Rescan the folder: new files are read, changed ones (size or mtime) reread, gone ones dropped."""
        with self._lock:
            self._refresh()

    def loaded(self, width: int) -> dict[str, Embedding]:
        """The embeddings a text encoder whose token embeddings are `width` wide can use, by name."""
        return self._classify(width)[0]

    def skipped(self, width: int) -> dict[str, str]:
        """The files it cannot use, by name: why, naming the file by its path inside the folder."""
        return {name: reason for name, (reason, _) in self._classify(width)[1].items()}

    def listing(self, width: int) -> dict:
        """A1111's GET /sdapi/v1/embeddings: {"loaded": {name: item}, "skipped": {name: item}}."""
        loaded, skipped = self._classify(width)

        def item(shape, vectors) -> dict:
            return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": shape,
                    "vectors": vectors}

        return {
            "loaded": {name: item(width, len(e.vectors)) for name, e in loaded.items()},
            "skipped": {name: item(read.width, read.vectors) for name, (_, read) in skipped.items()},
        }

    def _classify(self, width: int) -> tuple[dict[str, Embedding], dict[str, tuple[str, _Read]]]:
        with self._lock:
            self._refresh()
            loaded: dict[str, Embedding] = {}
            skipped: dict[str, tuple[str, _Read]] = {}
            by_name: dict[str, list[str]] = {}
            for relative in sorted(self._reads):
                by_name.setdefault(Path(relative).stem, []).append(relative)
            for name, relatives in by_name.items():
                used = None
                for relative in relatives:
                    read = self._reads[relative]
                    reason = self._reason(relative, read, width)
                    if reason is None and used is None:
                        loaded[name], used = read.embedding, relative
                        continue
                    if reason is None:
                        reason = f"{relative}: not used: {used} has the same name"
                    self._warn_once(relative, read.stamp, reason)
                    if used is None and name not in skipped:
                        skipped[name] = (reason, read)
                if used is not None:
                    skipped.pop(name, None)
            return _sorted(loaded), _sorted(skipped)

    @staticmethod
    def _reason(relative: str, read: _Read, width: int) -> str | None:
        if read.problem is not None:
            return f"{relative}: {read.problem}"
        own = read.embedding.vectors.shape[1]
        if own == width:
            return None
        return f"{relative}: made for a {own}-wide text encoder{_model_words(own)}; this model's is {width}"

    def _warn_once(self, relative: str, stamp: tuple[int, int], reason: str) -> None:
        key = (relative, stamp, reason)
        if key not in self._warned:
            self._warned.add(key)
            log.warning("embedding skipped: %s", reason)

    def _refresh(self) -> None:
        root = self.folder.resolve()
        found: dict[str, tuple[Path, tuple[int, int]]] = {}
        if root.is_dir():
            for path in root.rglob("*"):
                if path.suffix.lower() not in _SUFFIXES or not path.resolve().is_relative_to(root):
                    continue  # another kind of file, or a symlink leading out of the folder
                try:
                    if not path.is_file():
                        continue
                    stat = path.stat()
                except OSError:
                    continue
                found[path.relative_to(root).as_posix()] = (path, (stat.st_size, stat.st_mtime_ns))
        reads = {}
        for relative, (path, stamp) in found.items():
            previous = self._reads.get(relative)
            reads[relative] = previous if previous is not None and previous.stamp == stamp else _read(path, stamp)
        self._reads = reads
        self._warned = {key for key in self._warned if key[0] in reads and reads[key[0]].stamp == key[1]}


def _read(path: Path, stamp: tuple[int, int]) -> _Read:
    """Read one file; never raises: a file that is no usable embedding comes back with its problem."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return _Read(stamp, problem="pickled files are never loaded: convert it to .safetensors")
    size = stamp[0]
    if size > MAX_FILE_BYTES:
        return _Read(stamp, problem=f"is {size / 2**20:.1f} MB; an embedding file is at most "
                                    f"{MAX_FILE_BYTES // 2**20} MB")
    try:
        with safe_open(path, framework="pt", device="cpu") as file:
            keys = list(file.keys())
            key, problem, width, vectors = _layout(keys, file)
            if problem is not None:
                return _Read(stamp, problem=problem, width=width, vectors=vectors)
            # SDXL's pair: one (vectors, clip_l's width + clip_g's) tensor, each text encoder taking its columns
            tensor = torch.cat([file.get_tensor("clip_l"), file.get_tensor("clip_g")], dim=-1) if key == PAIR \
                else file.get_tensor(key)
    except Exception as error:  # noqa: BLE001 - not safetensors, truncated, unreadable: one bad file, not a failed scan
        log.debug("embedding %s not read: %s", path, error)
        return _Read(stamp, problem="not a readable .safetensors file")
    # A copy in float32 (the file may be memory-mapped, and overwritten later), always (n, width).
    tensor = tensor.detach().to(torch.float32).reshape(-1, tensor.shape[-1]).clone()
    if not torch.isfinite(tensor).all():
        return _Read(stamp, problem="holds NaN or infinite values", width=width, vectors=vectors)
    embedding = Embedding(name=path.stem, path=path, vectors=tensor, hash=sha256(path))
    return _Read(stamp, embedding=embedding, width=width, vectors=vectors)


def _layout(keys: list[str], file) -> tuple[str | None, str | None, int | None, int | None]:
    """Which key holds the vectors, from the header alone: (key, problem, width, vectors)."""
    if "clip_g" in keys and "clip_l" in keys:  # A1111 reports the two widths summed, and clip_g's vector count
        g, g_problem = _shape(file, "clip_g")
        l_, l_problem = _shape(file, "clip_l")
        if g_problem or l_problem:
            return None, g_problem or l_problem, None, None
        if g[0] != l_[0]:
            return None, f"its clip_l has {l_[0]} vectors and its clip_g {g[0]}; an SDXL pair has as many", None, None
        return PAIR, None, g[1] + l_[1], g[0]
    if "emb_params" in keys:
        key = "emb_params"
    elif params := [k for k in keys if k.startswith("string_to_param.")]:
        if len(params) > 1:
            return None, f"holds {len(params)} terms (string_to_param.*); an embedding holds one", None, None
        key = params[0]
    elif len(keys) == 1:  # diffusers' learned_embeds: the placeholder token, "<cat-toy>"
        key = keys[0]
    elif not keys:
        return None, "not a textual-inversion embedding: it holds no tensors", None, None
    else:
        shown = ", ".join(repr(k[:40]) for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
        return None, f"not a textual-inversion embedding: keys {shown}", None, None
    (vectors, width), problem = _shape(file, key)
    return key, problem, width, vectors


PAIR = "clip_l+clip_g"  # _layout's key for SDXL's pair of tensors


def _shape(file, key: str) -> tuple[tuple[int | None, int | None], str | None]:
    """A tensor's (vectors, width) from the header, and what is wrong with it, if anything."""
    tensor = file.get_slice(key)
    shape, dtype = tuple(tensor.get_shape()), tensor.get_dtype()
    if len(shape) not in (1, 2) or 0 in shape:
        return (None, None), f"its tensor {key[:40]!r} has shape {list(shape)}, not (vectors, width)"
    vectors, width = (1, shape[0]) if len(shape) == 1 else shape
    if dtype not in FLOAT_DTYPES:
        return (vectors, width), f"its tensor {key[:40]!r} holds {dtype}, not floating-point numbers"
    if vectors > MAX_VECTORS:
        return (vectors, width), f"has {vectors} vectors; at most {MAX_VECTORS} fit a prompt chunk"
    return (vectors, width), None


def _model_words(width: int) -> str:
    return f" ({KNOWN_WIDTHS[width]})" if width in KNOWN_WIDTHS else ""


def _sorted(entries: dict) -> dict:
    return dict(sorted(entries.items(), key=lambda item: (item[0].lower(), item[0])))
