"""AUTOMATIC1111's infotext: the generation parameters as text, stored in the PNG `parameters` chunk.

    {prompt}
    Negative prompt: {negative prompt}
    Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, ...
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

# A1111's own pattern (modules/infotext_utils.py): a key, then a quoted or a plain value up to the next comma.
PARAMETER = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def format_value(value) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if any(c in text for c in ",:\n") else text


def format_infotext(prompt: str, negative_prompt: str, parameters: dict) -> str:
    """Parameters keep their order; None values are left out, as A1111 does."""
    line = ", ".join(f"{key}: {format_value(value)}" for key, value in parameters.items() if value is not None)
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{line}"


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, parameters as strings) from an infotext, ours or A1111's."""
    *lines, last = text.strip().split("\n")
    if len(PARAMETER.findall(last)) < 3:  # no parameter line: all of it is prompt
        lines, last = lines + [last], ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line.removeprefix("Negative prompt:").strip()
        (negative if in_negative else prompt).append(line)
    parameters = {}
    for key, value in PARAMETER.findall(last):
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        parameters[key.strip()] = value
    return "\n".join(prompt), "\n".join(negative), parameters


def save_png(image: Image.Image, path: Path, infotext: str) -> Path:
    metadata = PngInfo()
    metadata.add_text("parameters", infotext)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=metadata)
    return path


def read_png_infotext(path: str | Path) -> str | None:
    with Image.open(path) as image:
        return image.info.get("parameters")
