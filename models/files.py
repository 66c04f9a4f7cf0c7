"""File and Hub facts that need no torch, so the extensions can use them without loading the model stack at import:
which suffixes are pickles, a file's cached sha256, whether the Hugging Face Hub answers, and copying loaded
weights out of their files (torch is imported only there); and saved files as Gradio may hand them out."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")  # can run code when loaded: refused everywhere
# A Hugging Face repository id, owner/name, by the Hub's own rule (huggingface_hub's validate_repo_id, with the
# owner required): each part 1 to 96 of A-Z a-z 0-9 - _ ., neither starting nor ending with - or .; no "--" or ".."
# anywhere, and not ending with ".git". Use `is_hub_id`; the pattern is the same rule for `.match`.
_HUB_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
HUB_REPO_ID = re.compile(rf"(?!.*(?:--|\.\.))(?!.*\.git\Z){_HUB_PART}/{_HUB_PART}\Z", re.ASCII)


def is_hub_id(text) -> bool:
    """Whether `text` is a Hugging Face repository id, "owner/name" (see HUB_REPO_ID). A path never is: it has no
    other "/", no "..", no backslash, colon or leading "/"."""
    return isinstance(text, str) and HUB_REPO_ID.match(text) is not None


MAX_NAME_BYTES = 255  # a file name's part, in UTF-8, as the file systems allow (longer: OSError, not "no such file")


def is_inside_name(name) -> bool:
    """Whether `name` can only name something inside a folder: "/"-separated parts, none empty (no leading "/"),
    none "..", none longer than a file name may be, and no backslash or NUL."""
    parts = name.split("/") if isinstance(name, str) else [""]
    return ("" not in parts and ".." not in parts and "\\" not in name and "\x00" not in name
            and all(len(part.encode("utf-8", "replace")) <= MAX_NAME_BYTES for part in parts))


def shown_path(path) -> str:
    """A path as a message or a page may show it: relative to the working directory when inside it, else its last
    part only. No absolute server path reaches a client."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return path.name


def hub_unreachable(timeout: float = 3) -> bool:
    """True when the Hub cannot be asked at all (offline mode, or its host does not resolve or answer)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return False
    except OSError:
        return True


def sha256(path: Path) -> str:
    """sha256 of a file, cached in a small JSON keyed by path, size and mtime (A1111 caches them too)."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_file = Path(os.environ.get("SD_STUDIO_CACHE", Path.home() / ".cache" / "sd-studio")) / "hashes.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        digest = hashlib.sha256()
        with path.open("rb") as file:
            for block in iter(lambda: file.read(1 << 24), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_text(json.dumps(cache, indent=0))
        except OSError:
            log.warning("could not write the hash cache %s", cache_file)
    return cache[key]


def own_memory(*modules) -> None:
    """Copy the modules' weights out of their files. On the CPU, diffusers and transformers leave `.safetensors`
    weights memory-mapped: a file overwritten in place (`cp new.safetensors model.safetensors`) would change the
    loaded model silently, and a shorter one would crash the process (SIGBUS) on the next access."""
    import torch

    with torch.no_grad():
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                tensor.data = tensor.data.clone()


def servable(path: Path) -> Path:
    """A saved file (an image, a trained LoRA) as Gradio may hand it out. Gradio copies results into its cache
    (under a content hash) from the working directory or the temp folder only; the output folder is not served as
    such, so no client can fetch images by their predictable names. From a folder elsewhere, a copy in the temp
    folder."""
    resolved = Path(path).resolve()
    if any(resolved.is_relative_to(Path(folder).resolve()) for folder in (os.getcwd(), tempfile.gettempdir())):
        return path
    return content_file(resolved.read_bytes(), resolved.name)


def content_file(data: bytes, name: str) -> Path:
    """`data` as temp/sd-studio/<its hash>/<name>, written whole before it is renamed into place (one file for
    equal contents, however often they come)."""
    path = Path(tempfile.gettempdir()) / "sd-studio" / hashlib.sha256(data).hexdigest()[:32] / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{name}.{threading.get_ident()}.part")
        part.write_bytes(data)
        os.replace(part, path)
    return path


def failure(check, *args) -> str | None:
    """The message of the ValueError `check(*args)` raises (what to put where), or None when it passes."""
    try:
        check(*args)
    except ValueError as error:
        return str(error)
    return None
