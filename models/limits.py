"""Bounds on everything that comes from outside, checked before any decode: encoded bytes, pixels, text length.

Every interface reads images and text through here, so one limit holds for the UI, gradio_client and REST, and
going over it is a `TooLarge` error (HTTP 413) that names the field, the size and the limit. Images are checked
from their header, before their pixels are decoded, and at most DECODE_SLOTS decode at once: a burst of large
uploads cannot take the server's memory whatever the queue size.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import threading
from pathlib import Path

from PIL import Image, UnidentifiedImageError

MAX_BODY_BYTES = 64 * 2**20  # one HTTP request body (a REST JSON with its base64 images, an upload)
MAX_IMAGE_BYTES = 32 * 2**20  # one encoded image file
MAX_IMAGE_PIXELS = 40_000_000  # one decoded image (e.g. 8000x5000: a large photo to inpaint "only masked")
MAX_IMAGE_SIDE = 16_384
MAX_PROMPT_CHARS = 32_768  # a prompt or negative prompt (about a hundred of A1111's 75-token chunks)
MAX_INFOTEXT_CHARS = 65_536  # the parameters text PNG Info reads from an image
DECODE_SLOTS = 4

_decode_slots = threading.BoundedSemaphore(DECODE_SLOTS)


class TooLarge(ValueError):
    """Input over one of the limits (HTTP 413 at the REST edge; a message naming the field everywhere)."""


class Unreadable(ValueError):
    """Bytes that are not an image Pillow can decode."""


def check_text(field: str, value: str, limit: int = MAX_PROMPT_CHARS) -> str:
    """Text within its bound that the tokenizer and a PNG text chunk can hold: Unicode that encodes as UTF-8 (a lone
    surrogate, which JSON can carry, fails in the tokenizer mid-job) and no NUL (a PNG chunk's separator)."""
    if isinstance(value, str):
        if len(value) > limit:
            raise TooLarge(f"{field} is {len(value):,} characters long; at most {limit:,} are accepted")
        if "\x00" in value:
            raise ValueError(f"{field} contains a NUL character (\\x00) at character {value.index(chr(0))}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise ValueError(f"{field} is not valid Unicode: a lone surrogate {value[error.start]!r} at character "
                             f"{error.start}") from None
    return value


def open_image(source, field: str) -> Image.Image:
    """A decoded image from a file path, bytes or a file object, after its size and dimensions were checked."""
    size = _encoded_size(source)
    if size > MAX_IMAGE_BYTES:
        raise TooLarge(f"{field} is a {size / 2**20:.1f} MB file; at most {MAX_IMAGE_BYTES // 2**20} MB are accepted")
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    with _decode_slots:
        try:
            with Image.open(source) as image:
                check_image(image, field)  # from the header: nothing decoded yet
                image.load()
                return image
        except FileNotFoundError:
            raise ValueError(f"{field}: file {Path(source).name!r} does not exist") from None  # no server path
        except Image.DecompressionBombError as error:  # Pillow's own check in open(), at twice its limit
            claimed = re.search(r"\((\d+) pixels\)", str(error))
            size = f"{int(claimed.group(1)):,} pixels" if claimed else f"over {MAX_IMAGE_PIXELS:,} pixels"
            raise TooLarge(f"{field} is {size}; at most {MAX_IMAGE_PIXELS:,} are accepted") from None
        except TooLarge:
            raise
        except Exception as error:  # Pillow raises many kinds (OSError, SyntaxError, struct.error, ...) on bad bytes
            reason = "no image format it knows" if isinstance(error, UnidentifiedImageError) else str(error)[:100]
            raise Unreadable(f"{field} is not a readable image ({type(error).__name__}: {reason})") from None


def check_image(image: Image.Image, field: str) -> Image.Image:
    """Refuse an image over the pixel limits (an opened image's size comes from its header)."""
    width, height = image.size
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise TooLarge(f"{field} is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS:,} pixels and "
                       f"{MAX_IMAGE_SIDE} on a side are accepted")
    return image


def decode_base64_image(value, field: str) -> Image.Image:
    """An image as A1111 clients send it: base64, or a data URL. File paths are not accepted: a client must not
    make the server read its files."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field} must be a base64-encoded image, got {type(value).__name__}")
    if value.startswith("data:") and "," not in value:
        raise ValueError(f"{field} is a data URL without its data (no comma): {value[:40]!r}")
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    if len(data) > (MAX_IMAGE_BYTES + 2) // 3 * 4 + 4:  # base64 is 4 characters for every 3 bytes
        raise TooLarge(f"{field} is {len(data) * 3 // 4 / 2**20:.1f} MB of base64; at most "
                       f"{MAX_IMAGE_BYTES // 2**20} MB are accepted")
    unreadable = f"{field} is not a readable base64-encoded image (starts {value[:24]!r})"
    try:
        raw = base64.b64decode(data, validate=True)
    except binascii.Error:
        raise ValueError(unreadable) from None
    except ValueError:  # b64decode's own, for characters beyond ASCII
        raise ValueError(f"{field} is not base64: it holds characters beyond ASCII (starts {value[:24]!r})") from None
    try:
        return open_image(raw, field)
    except Unreadable:
        raise ValueError(unreadable) from None


def _encoded_size(source) -> int:
    if isinstance(source, (bytes, bytearray)):
        return len(source)
    if isinstance(source, (str, Path)):
        try:
            return os.path.getsize(source)
        except OSError:
            return 0  # Image.open names the missing file
    return 0
