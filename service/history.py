"""The History tab's data: the saved outputs (service/saving.py's outputs/<mode>-images/<date>/*.png), newest first,
a page at a time, filtered by their text, and deleted one by one.

Everything comes from the folder itself, so the history survives restarts and shows files other runs saved. A page
costs one directory scan and the text of its own images: infotexts are read lazily (only a PNG's header, up to its
image data) and cached by file and modification time, so a filter reads each file once.
"""

from __future__ import annotations

import datetime
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from models.limits import MAX_INFOTEXT_CHARS

PAGE_SIZE = 24


@dataclass(frozen=True)
class Page:
    files: list[Path]
    infotexts: list[str]
    captions: list[str]  # what tells them apart: "txt2img · 2026-12-05 20:31 · seed 42"
    number: int  # 1-based, within 1..pages
    pages: int
    total: int  # the files that match the filter


class History:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._texts: dict[Path, tuple[int, str]] = {}  # file -> (its mtime_ns when read, its infotext)
        self._lock = threading.Lock()

    def files(self) -> list[tuple[Path, int]]:
        """Every saved PNG with its mtime_ns, newest first."""
        found = []
        for mode_folder in _folders(self.folder, lambda name: name.endswith("-images")):
            for day_folder in _folders(mode_folder, lambda name: True):
                with os.scandir(day_folder) as entries:
                    for entry in entries:
                        if entry.name.endswith(".png") and entry.is_file(follow_symlinks=False):
                            found.append((Path(entry.path), entry.stat(follow_symlinks=False).st_mtime_ns))
        found.sort(key=lambda item: (item[1], item[0].name), reverse=True)
        return found

    def page(self, query: str = "", number: int = 1, size: int = PAGE_SIZE) -> Page:
        """Page `number` (clamped to those there are) of the files whose infotext contains `query` (any case)."""
        files = self.files()
        words = query.strip().lower()
        if words:
            files = [(path, mtime) for path, mtime in files if words in self.infotext(path, mtime).lower()]
        pages = max(1, math.ceil(len(files) / size))
        number = min(max(1, int(number)), pages)
        chosen = files[(number - 1) * size: number * size]
        return Page([path for path, _ in chosen], [self.infotext(path, mtime) for path, mtime in chosen],
                    [caption(path, mtime) for path, mtime in chosen], number, pages, len(files))

    def infotext(self, path: Path, mtime_ns: int) -> str:
        with self._lock:
            cached = self._texts.get(path)
        if cached is not None and cached[0] == mtime_ns:
            return cached[1]
        text = _read_text(path)
        with self._lock:
            self._texts[path] = (mtime_ns, text)
        return text

    def delete(self, path: str | Path) -> None:
        """Delete one saved output; anything else (outside the folder, not a PNG of it) is refused."""
        path = Path(path)
        resolved = path.resolve()
        mode_folder = resolved.parent.parent
        if (path.suffix != ".png" or path.is_symlink() or mode_folder.parent != self.folder.resolve()
                or not mode_folder.name.endswith("-images")):
            raise ValueError(f"image: {path.name!r} is not a saved output")
        resolved.unlink(missing_ok=True)
        with self._lock:
            self._texts.pop(path, None)


def caption(path: Path, mtime_ns: int) -> str:
    """A saved image's mode, day and time, and seed (its file name, 00003-42.png, says only its number and seed)."""
    mode = path.parent.parent.name.removesuffix("-images")
    when = datetime.datetime.fromtimestamp(mtime_ns / 1e9).strftime("%H:%M")
    seed = path.stem.partition("-")[2]
    return f"{mode} · {path.parent.name} {when}" + (f" · seed {seed}" if seed.isdigit() else "")


def _folders(parent: Path, wanted) -> list[Path]:
    if not parent.is_dir():
        return []
    with os.scandir(parent) as entries:
        return [Path(entry.path) for entry in entries if entry.is_dir(follow_symlinks=False) and wanted(entry.name)]


def _read_text(path: Path) -> str:
    """A PNG's `parameters` text; PIL reads only the chunks before the image data. A file that is not a readable
    PNG (half written, or dropped in by hand) has none."""
    try:
        with Image.open(path, formats=["PNG"]) as image:
            text = image.info.get("parameters") or ""
    except Exception:  # noqa: BLE001 - an unreadable file is listed without text, never breaks the page
        return ""
    return text[:MAX_INFOTEXT_CHARS] if isinstance(text, str) else ""
