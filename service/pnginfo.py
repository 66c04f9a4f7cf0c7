"""PNG Info: read the generation parameters an image carries and turn them into what our tabs' fields should be.

Images made here or by AUTOMATIC1111 keep their infotext in the PNG `parameters` text chunk. A1111 saves JPEG
and WebP with the infotext in the EXIF UserComment instead (piexif's `UserComment.dump(text, encoding="unicode")`:
b"UNICODE\\0" then UTF-16 big-endian), which PIL reads without a new dependency.

`fields_from_infotext` answers "send to tab": only what the infotext says becomes a field, so sending an image
changes nothing it does not mention. A value that is not a number where one belongs is left out with a warning
rather than raising: a picture from elsewhere should still fill in everything it can.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from extensions.base import Extension
from models.fields import read_entries
from models.infotext import parse_infotext
from models.limits import MAX_INFOTEXT_CHARS, check_text, open_image
from models.request import GUIDANCE, SEED, STEPS, STRENGTH, WIDTH
from models.sampler_names import SAMPLER_NAMES, join_name

EXIF_IFD = 0x8769  # the Exif sub-IFD, where UserComment lives (not in IFD0)
USER_COMMENT = 0x9286
_PREFIXES = {  # EXIF 2.3 UserComment character codes: 8 bytes before the text
    b"ASCII\0\0\0": "ascii",
    b"UNICODE\0": "utf-16",
    b"JIS\0\0\0\0\0": "shift_jis",
    b"\0\0\0\0\0\0\0\0": "undefined",
}

_SIMPLE = (STEPS, GUIDANCE, SEED, STRENGTH)  # the core fields whose entries read as their kind
_TEXTS = {"Model": "model", "Model hash": "model_hash"}  # facts about the model, not fields
# -- reading ------------------------------------------------------------------------------------------------


def read_infotext(source) -> str | None:
    """The infotext of an image (a PIL image, a file path, a gradio file dict or the file's bytes), or None when
    it carries none. Files are opened within models.limits' bounds, and a text longer than MAX_INFOTEXT_CHARS is
    refused."""
    if isinstance(source, dict) and "path" in source:
        source = source["path"]
    if not isinstance(source, (Image.Image, bytes, bytearray, str, Path)):
        raise ValueError(f"image must be a PIL image, a file path or bytes, got {type(source).__name__}")
    image = source if isinstance(source, Image.Image) else open_image(source, "image")
    return check_text("image's parameters text", _infotext_of(image), MAX_INFOTEXT_CHARS)


def _infotext_of(image: Image.Image) -> str | None:
    text = image.info.get("parameters")  # PNG tEXt/iTXt, ours and A1111's
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not text:
        text = _user_comment(image)
    text = (text or "").strip()
    return text or None


def _user_comment(image: Image.Image) -> str | None:
    try:
        value = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # noqa: BLE001 - a broken EXIF block means "no metadata", not a failed upload
        return None
    if value is None:
        return None
    return value if isinstance(value, str) else decode_user_comment(bytes(value))


def decode_user_comment(data: bytes) -> str:
    """EXIF UserComment bytes as text: an 8-byte character code, then the text. UNICODE is UTF-16 in either byte
    order (A1111 and piexif write big-endian; some tools follow the TIFF byte order), decided by a BOM or by
    where the zero bytes of ASCII characters fall. Without a known prefix, A1111's fallback: the bytes as UTF-8."""
    code = _PREFIXES.get(data[:8])
    body = data[8:] if code else data
    if code == "utf-16":
        text = _decode_utf16(body)
    elif code == "shift_jis":
        text = body.decode("shift_jis", errors="replace")
    else:  # ASCII (often UTF-8 in practice), undefined, or no prefix at all
        text = body.decode("utf-8", errors="replace")
    return text.rstrip("\0")


def _decode_utf16(body: bytes) -> str:
    if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
        return body.decode("utf-16", errors="replace")
    zeros_first = body[0::2].count(0)  # "A" is 00 41 in big-endian, 41 00 in little-endian
    zeros_second = body[1::2].count(0)
    return body.decode("utf-16-le" if zeros_second > zeros_first else "utf-16-be", errors="replace")


# -- fields for the tabs ------------------------------------------------------------------------------------


def fields_from_infotext(text: str, extensions: Sequence[Extension] = ()) -> dict:
    """What the tabs' fields become. Always: prompt and negative_prompt (as written, <lora:...> tags included;
    A1111 leaves the negative line out when it is empty), `other` (unknown entries, as strings) and `warnings`.
    The rest only when the infotext has it: steps, sampler, guidance_scale, seed, width, height, strength,
    model, model_hash, and each extension's fields (the inpaint settings, controlnet_units, ...)."""
    prompt, negative, parameters = parse_infotext(text)
    fields: dict = {"prompt": prompt, "negative_prompt": negative}
    warnings: list[str] = []
    rest = dict(parameters)
    for extension in extensions:  # first: hires fix reads "Denoising strength" too, which img2img's keeps
        fields.update(extension.from_infotext(rest, warnings))
    fields.update(read_entries(_SIMPLE, rest, warnings))
    for key, field in _TEXTS.items():
        if key in rest:
            fields[field] = rest.pop(key)
    if WIDTH.infotext in rest:  # "Size: 512x768", the width and the height
        fields.update(_size(rest.pop(WIDTH.infotext), warnings))
    if "Sampler" in rest:
        sampler = _sampler(rest.pop("Sampler"), rest.pop("Schedule type", None), warnings)
        if sampler is not None:
            fields["sampler"] = sampler
    fields["other"] = rest
    fields["warnings"] = warnings
    return fields


def _size(value: str, warnings: list[str]) -> dict:
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", value)
    if match is None:
        warnings.append(f"Size: {value!r} is not WIDTHxHEIGHT; left out")
        return {}
    return {"width": int(match[1]), "height": int(match[2])}


def _sampler(name: str, schedule_type: str | None, warnings: list[str]) -> str | None:
    """A1111 1.9+ writes Sampler and Schedule type apart; older infotexts a combined name such as
    "DPM++ 2M Karras". Either becomes one of our sampler names."""
    joined = join_name(name, schedule_type)
    if joined not in SAMPLER_NAMES:
        warnings.append(f"Sampler: {name!r} is not available here; left out")
        return None
    if schedule_type not in (None, "Automatic") and joined == name and not name.endswith(f" {schedule_type}"):
        warnings.append(f"Schedule type: {schedule_type!r} is not available for {name}; using {name} as it is")
    return joined


# -- the PNG Info tab -------------------------------------------------------------------------------------


def describe(text: str) -> str:
    """The infotext for reading: the prompt, the negative prompt, then one "key: value" line per entry."""
    prompt, negative, parameters = parse_infotext(text)
    lines = [f"Prompt: {prompt}"]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines += [f"{key}: {value}" for key, value in parameters.items()]
    return "\n".join(lines)
