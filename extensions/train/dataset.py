"""A training set from what a user uploads: image files, or a zip of them, each captioned by a `.txt` of the same
name beside it, or else by the instance prompt. Everything is read within bounds before it is decoded (the file
count, each member's size, the archive's total), in memory: nothing of a zip is written out, so its names cannot
reach the file system."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps

from models.limits import MAX_IMAGE_BYTES, MAX_PROMPT_CHARS, TooLarge, open_image

MAX_IMAGES = 200
MAX_ZIP_MEMBERS = 1000
MAX_ZIP_BYTES = 512 * 2**20  # what a zip's members add up to, uncompressed
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass(frozen=True)
class Example:
    image: Image.Image  # RGB, square, at the training resolution
    caption: str


def training_set(files, instance_prompt: str, resolution: int) -> list[Example]:
    """The examples of `files` (paths, gradio file dicts or bytes of images, `.txt` captions and zips)."""
    if not files:
        raise ValueError("images: add the images to train on (image files or a zip)")
    with _ONE_SET_AT_A_TIME:  # a set's files are read one at a time; sets read at once would add up
        return _examples(files, instance_prompt, resolution)


_ONE_SET_AT_A_TIME = threading.Lock()
Loader = Callable[[], bytes]  # a file's bytes, read (within its bound) only when called


def _examples(files, instance_prompt: str, resolution: int) -> list[Example]:
    named: dict[str, Loader] = {}  # file name -> its loader, images and captions alike
    for index, item in enumerate(files if isinstance(files, (list, tuple)) else [files]):
        name, load = _read(item, f"images[{index}]")
        if name.lower().endswith(".zip"):
            named.update(_unzipped(load(), f"images[{index}] ({name})"))
        else:
            named[name] = load
    captions = {PurePosixPath(name).stem: load for name, load in named.items() if name.lower().endswith(".txt")}
    pictures = {name: load for name, load in named.items() if PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES}
    others = sorted(set(named) - set(pictures) - {name for name in named if name.lower().endswith(".txt")})
    if others:
        raise ValueError(f"images: {', '.join(map(repr, others[:3]))} are not images (.png, .jpg, .webp, .bmp), "
                         "captions (.txt) or a zip")
    if not pictures:
        raise ValueError("images: no image among the files (.png, .jpg, .webp, .bmp, or a zip of them)")
    if len(pictures) > MAX_IMAGES:
        raise ValueError(f"images: {len(pictures)} images; at most {MAX_IMAGES}")
    examples = []
    for name, load in sorted(pictures.items()):
        caption = captions.get(PurePosixPath(name).stem)
        text = caption().decode("utf-8", errors="replace").strip() if caption is not None else instance_prompt
        if not text:
            raise ValueError(f"instance_prompt: {name!r} has no caption file, so an instance prompt is needed")
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"the caption of {name!r} is {len(text):,} characters; at most {MAX_PROMPT_CHARS:,}")
        picture = open_image(load(), f"images: {name!r}").convert("RGB")
        examples.append(Example(ImageOps.fit(picture, (resolution, resolution), Image.Resampling.LANCZOS), text))
    return examples


def _read(item, field: str) -> tuple[str, Loader]:
    """A file's name (its last part only) and its loader, within the bound of an upload."""
    if isinstance(item, dict) and "path" in item:
        item = item["path"]
    if isinstance(item, (bytes, bytearray)):
        return f"{field}.png", lambda: bytes(item)
    if isinstance(item, Image.Image):
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")
        return f"{field}.png", buffer.getvalue
    if not isinstance(item, (str, Path)):
        raise ValueError(f"{field} must be a file, got {type(item).__name__}")
    path = Path(item)
    if not path.is_file():
        raise ValueError(f"{field}: file {path.name!r} does not exist")
    limit = MAX_ZIP_BYTES if path.suffix.lower() == ".zip" else MAX_IMAGE_BYTES
    if path.stat().st_size > limit:
        raise TooLarge(f"{field} ({path.name}) is {path.stat().st_size / 2**20:.1f} MB; at most {limit // 2**20} MB")
    return path.name, path.read_bytes


def _unzipped(data: bytes, field: str) -> dict[str, Loader]:
    """A zip's images and captions by their names (the last part only), each bounded before it is read."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValueError(f"{field} is not a readable zip file") from None
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) > MAX_ZIP_MEMBERS:
        raise ValueError(f"{field} holds {len(members)} files; at most {MAX_ZIP_MEMBERS}")
    if sum(info.file_size for info in members) > MAX_ZIP_BYTES:
        raise TooLarge(f"{field} unpacks to more than {MAX_ZIP_BYTES // 2**20} MB")
    named = {}
    for info in members:
        name = PurePosixPath(info.filename.replace("\\", "/")).name
        if name.startswith((".", "__MACOSX")) or "__MACOSX" in info.filename:
            continue  # the archivers' own files
        if info.file_size > MAX_IMAGE_BYTES:
            raise TooLarge(f"{field}: {name!r} is {info.file_size / 2**20:.1f} MB; at most {MAX_IMAGE_BYTES // 2**20}")
        named[name] = lambda info=info, name=name: _bounded(archive.open(info), info.file_size,
                                                            f"{field}: {name!r} (bigger than its zip header says)")
    return named


def _bounded(file, limit: int, what: str) -> bytes:
    """A file's bytes, never more than `limit` (the size its header says: `read` sets that much memory aside)."""
    with file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"{what} is over {limit:,} bytes")
    return data
