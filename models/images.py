"""Images as the interfaces hand them over, turned into PIL images within models.limits' bounds (a file's size and
dimensions are checked before it is decoded)."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from models.limits import check_image, decode_base64_image, open_image


def load_image(value, field: str) -> Image.Image | None:
    """A PIL image, an array, a file path or a gradio file dict (what the UI and gradio_client give)."""
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return check_image(value, field)
    if isinstance(value, np.ndarray):
        return check_image(Image.fromarray(value), field)
    if isinstance(value, dict) and "path" in value:
        value = value["path"]
    if not isinstance(value, (str, Path)):
        raise ValueError(f"{field} must be an image file, got {type(value).__name__}")
    return open_image(value, field)


def load_mask(value, field: str = "mask") -> Image.Image | None:
    """A mask as grayscale, white = repaint. A mask with transparency counts its opaque (painted) pixels."""
    mask = load_image(value, field)
    if mask is None:
        return None
    if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema()[0] < 255:
        return mask.getchannel("A")
    return mask.convert("L")


def decode_image(value, field: str = "image") -> Image.Image:
    """An image from a JSON API: a PIL image, or base64 / a data URL as A1111 clients send them. File paths are not
    accepted: a client must not make the server read its files."""
    if isinstance(value, Image.Image):
        return check_image(value, field)
    return decode_base64_image(value, field)


def fit(image: Image.Image, size: tuple[int, int], resize_mode: str,
        resample: Image.Resampling = Image.Resampling.BILINEAR, keep_alpha: bool = False) -> Image.Image:
    """The image at `size`: stretched (Just Resize), scaled to cover and centre-cropped (Crop and Resize), or scaled
    to fit and padded with black, which reads as "no control" in edge and line maps (Resize and Fill). Also the
    REST API's img2img resize_mode. `keep_alpha`: an RGBA image stays RGBA, padded with transparency (an inpaint
    map's hole, which the model then fills)."""
    image = image if keep_alpha and image.mode == "RGBA" else image.convert("RGB")
    if resize_mode == "Just Resize" or image.size == size:
        return image.resize(size, resample)
    if resize_mode == "Crop and Resize":
        return ImageOps.fit(image, size, resample)
    return ImageOps.pad(image, size, resample, color=(0, 0, 0, 0) if image.mode == "RGBA" else "black")


def png_base64(image: Image.Image) -> str:
    """A picture as a base64 PNG, as A1111's JSON responses carry images."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def image_digest(image: Image.Image) -> str:
    """A hash of the pixels, mode and size (two equal images give one digest, whatever object holds them)."""
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image, got {type(image).__name__}")
    digest = hashlib.blake2b(f"{image.mode}|{image.width}x{image.height}|".encode(), digest_size=16)
    digest.update(image.tobytes())
    if image.mode == "P":
        digest.update(bytes(image.getpalette() or []))
    return digest.hexdigest()
