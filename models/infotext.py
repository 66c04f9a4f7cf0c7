"""AUTOMATIC1111's infotext: the generation parameters as text, stored in the PNG `parameters` chunk.

    {prompt}
    Negative prompt: {negative prompt}
    Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, ...
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

# A1111 reads the parameter line with a regular expression (modules/infotext_utils.py): a key of word characters,
# spaces, "-" and "/" then ":", then a quoted or a plain value up to the next comma. Run over untrusted text, its
# backtracking takes time growing with the square of a run of key characters with no ":" (a 128 KB run: over a
# minute, with the server stalled), so `parameter_pairs` reads the same pairs in one pass.
_KEY_RUN = re.compile(r"[\w \-/]+")
_WORD = re.compile(r"\w")
_SPACES = re.compile(r"\s*")
_QUOTED = re.compile(r'"(?:\\.|[^\\"])+"')  # one way to match each character: no backtracking blow-up


class PerImage(tuple):
    """An infotext value that differs by image of a batch (a variation seed: subseed + i), by the image's index."""


def for_image(parameters: dict, index: int) -> dict:
    """`parameters` as image `index` of its batch has them."""
    return {key: value[index] if isinstance(value, PerImage) else value for key, value in parameters.items()}


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


def parameter_pairs(line: str) -> list[tuple[str, str]]:
    """The (key, raw value) pairs of a parameter line, as A1111's pattern finds them, in time linear in the line.
    A key is the run of key characters before a ":" from its first word character (at least two characters); a
    value is a quoted string followed by "," or the end, else everything up to the next ","."""
    pairs, start, end = [], 0, len(line)
    while (run := _KEY_RUN.search(line, start)) is not None:
        key_end = run.end()
        first_word = _WORD.search(line, run.start(), key_end)
        if key_end == end or line[key_end] != ":" or first_word is None or key_end - first_word.start() < 2:
            start = key_end + 1  # no key starts anywhere in this run
            continue
        value_start = _SPACES.match(line, key_end + 1).end()
        value_end = _quoted_end(line, value_start)
        if value_end is None:  # A1111's second choice: a plain value up to the next comma
            comma = line.find(",", value_start)
            value_end = end if comma < 0 else comma
        pairs.append((line[first_word.start():key_end], line[value_start:value_end]))
        start = value_end + 1  # past the comma
    return pairs


def _quoted_end(line: str, start: int) -> int | None:
    """Where a quoted value starting at `start` ends (after its closing quote) when a "," or the end of the line
    follows it; else None."""
    quoted = _QUOTED.match(line, start)
    if quoted is None or (quoted.end() < len(line) and line[quoted.end()] != ","):
        return None
    return quoted.end()


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """(prompt, negative prompt, parameters as strings) from an infotext, ours or A1111's."""
    *lines, last = text.strip().split("\n")
    pairs = parameter_pairs(last)
    if len(pairs) < 3:  # no parameter line: all of it is prompt
        lines, last, pairs = lines + [last], "", []
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line.removeprefix("Negative prompt:").strip()
        (negative if in_negative else prompt).append(line)
    parameters = {}
    for key, value in pairs:
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


# -- values read back (PNG Info's Send to) ---------------------------------------------------------------------


def read_value(fields: dict, field: str, key: str, value: str, kind, warnings: list[str]) -> None:
    """fields[field] = the value read as `kind` (a CONVERTERS name, or a (convert, description) pair); a value that
    does not read is left out with a warning."""
    convert, description = CONVERTERS[kind] if isinstance(kind, str) else kind
    try:
        fields[field] = convert(value)
    except ValueError:
        warnings.append(f"{key}: {value!r} is not {description}; left out")


def _number(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        number = _number(value)  # "20.0"
        if not number.is_integer():
            raise
        return int(number)


def _boolean(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise ValueError(value)
    return value.lower() == "true"


CONVERTERS = {
    "number": (_number, "a number"),
    "whole": (_whole, "a whole number"),
    "boolean": (_boolean, "True or False"),
    "text": (str, "text"),
}
