"""A1111's styles.csv: one style a row, `name,prompt,negative_prompt`; a style's prompt holds `{prompt}` where the
request's prompt goes, else it is appended after ", ". Read again whenever the file changes; written whole (a new
file, then renamed into place) when a style is saved."""

from __future__ import annotations

import csv
import io
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from models.limits import check_text

MAX_FILE_BYTES = 1 << 20  # a styles file larger than 1 MB is not read
HEADER = ("name", "prompt", "negative_prompt")


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merged(style_text: str, text: str) -> str:
    """A style's prompt with the request's in it: at `{prompt}`, or after ", " (neither side empty)."""
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", text)
    return ", ".join(part for part in (text.strip(), style_text.strip()) if part)


class StyleLibrary:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._read: tuple[int, dict[str, Style]] = (-1, {})  # (the file's mtime_ns when read, its styles)

    def styles(self) -> dict[str, Style]:
        """The file's styles by name, in its order (none without a file)."""
        try:
            stat = self.path.stat()
        except OSError:
            return {}
        with self._lock:
            if self._read[0] == stat.st_mtime_ns:
                return dict(self._read[1])
        if stat.st_size > MAX_FILE_BYTES:
            raise ValueError(f"styles: the styles file is over {MAX_FILE_BYTES // 2**20} MB; it is not read")
        rows = csv.DictReader(io.StringIO(self.path.read_text(encoding="utf-8-sig", errors="replace")))
        found = {}
        for row in rows:
            name = (row.get("name") or "").strip()
            if name:
                found[name] = Style(name, row.get("prompt") or "", row.get("negative_prompt") or "")
        with self._lock:
            self._read = (stat.st_mtime_ns, found)
        return dict(found)

    def apply(self, names, prompt: str, negative_prompt: str) -> tuple[str, str]:
        """The prompts with the named styles merged in, in the order named."""
        styles = self.styles()
        for name in names:
            style = styles[name]
            prompt, negative_prompt = merged(style.prompt, prompt), merged(style.negative_prompt, negative_prompt)
        return prompt, negative_prompt

    def save(self, name: str, prompt: str, negative_prompt: str) -> None:
        """Add the style, or replace the one of that name, keeping the others and their order."""
        name = check_text("style name", name or "", 200).strip()
        if not name:
            raise ValueError("style name: give the style a name")
        styles = self.styles()
        styles[name] = Style(name, check_text("prompt", prompt or ""), check_text("negative_prompt",
                                                                                   negative_prompt or ""))
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(HEADER)
        writer.writerows((style.name, style.prompt, style.negative_prompt) for style in styles.values())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_name(f"{self.path.name}.{threading.get_ident()}.part")
        part.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(part, self.path)
