"""The LoRA library: `.safetensors` files under one folder (subfolders allowed), and Hub ids.

A file is named by its stem ("ink-style") and, always, by its path inside the folder without the suffix
("styles/ink-style"), which tells apart two files with the same stem. A name that is not in the folder but looks
like a Hub id ("owner/repo", or "owner/repo/weights.safetensors") is fetched from the Hub.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from models.files import PICKLE_SUFFIXES, is_hub_id, is_inside_name, shown_path
from models.validate import brief, did_you_mean

HUB_FILE = re.compile(r"[\w-][\w./-]*\.safetensors")  # a file in a Hub repository, after "owner/repo/"


class LoraLibrary:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._files: dict[str, Path] = {}
        self._names: list[str] = []
        self.refresh()

    def refresh(self) -> list[str]:
        """Rescan the folder; returns the names, sorted."""
        root = self.folder.resolve()
        by_relative_name: dict[str, Path] = {}
        if root.is_dir():
            for path in sorted(root.rglob("*.safetensors")):
                if path.resolve().is_relative_to(root):  # not a symlink leading out of the folder
                    by_relative_name[path.relative_to(root).with_suffix("").as_posix()] = path
        stems = [path.stem for path in by_relative_name.values()]
        files, names = dict(by_relative_name), []
        for relative_name, path in by_relative_name.items():
            unique = stems.count(path.stem) == 1
            names.append(path.stem if unique else relative_name)
            if unique:
                files[path.stem] = path
        with self._lock:
            self._files, self._names = files, sorted(names, key=str.lower)
        return self.names()

    def names(self) -> list[str]:
        """One name per file: the stem where it is unique, else the path inside the folder."""
        with self._lock:
            return list(self._names)

    def resolve(self, name: str) -> Path:
        """The file for `name`: from the folder (rescanned once if missing), else from the Hub."""
        for attempt in range(2):
            with self._lock:
                path = self._files.get(name)
            if path is not None:
                return path
            if attempt == 0:
                self.refresh()  # a file dropped in since the last scan
        if not is_inside_name(name):
            raise ValueError(f"LoRA {brief(name)} is not in the LoRA folder {shown_path(self.folder)}: a LoRA is "
                             "named by its path inside it")
        pickled = [self.folder / f"{name}{suffix}" for suffix in PICKLE_SUFFIXES]
        if any(path.is_file() for path in pickled):
            raise ValueError(
                f"LoRA {brief(name)}: only .safetensors files are loaded; pickled weights (.ckpt, .pt, .bin) can "
                "run code"
            )
        if _is_hub_name(name):
            return _from_hub(name)
        raise ValueError(f"LoRA {brief(name)} is not in the LoRA folder {shown_path(self.folder)} (press Refresh "
                         f"after adding files){did_you_mean(name, self.names())}")


def _is_hub_name(name: str) -> bool:
    """A Hub id, "owner/repo", or a file in it, "owner/repo/<path>.safetensors"."""
    parts = name.split("/", 2)
    return is_hub_id("/".join(parts[:2])) and (len(parts) == 2 or HUB_FILE.fullmatch(parts[2]) is not None)


def _from_hub(name: str) -> Path:
    from huggingface_hub import hf_hub_download, list_repo_files

    parts = name.split("/")
    repo, weight_name = "/".join(parts[:2]), "/".join(parts[2:])
    if ".." in parts:
        raise ValueError(f"LoRA {brief(name)}: not a Hub id")
    try:
        candidates = [weight_name] if weight_name else [f for f in list_repo_files(repo) if f.endswith(".safetensors")]
        if len(candidates) == 1:
            return Path(hf_hub_download(repo, candidates[0]))
    except Exception as error:  # offline, unknown repo, gated, ...
        raise ValueError(f"LoRA {brief(name)}: not in the LoRA folder and not fetched from the Hub "
                         f"({type(error).__name__})") from None
    raise ValueError(
        f"LoRA {brief(name)}: the Hub repo has {len(candidates)} .safetensors files; name one as "
        f"{repo}/<file>.safetensors"
    )
