"""What the scripts share: A1111's axis values (comma-separated, with ranges), a fixed seed, and a grid's infotext."""

from __future__ import annotations

import csv
import io
import random
import re

import numpy as np

from models.infotext import format_infotext, parse_infotext
from models.request import MAX_SEED

_INT_RANGE = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)(?:\s*\(([+-]\d+)\s*\))?\s*")
_INT_COUNT = re.compile(r"\s*([+-]?\s*\d+)\s*-\s*([+-]?\s*\d+)\s*\[(\d+)\s*]\s*")
_FLOAT = r"[+-]?\s*\d+(?:\.\d*)?"
_FLOAT_RANGE = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})(?:\s*\(([+-]\d+(?:\.\d*)?)\s*\))?\s*")
_FLOAT_COUNT = re.compile(rf"\s*({_FLOAT})\s*-\s*({_FLOAT})\s*\[(\d+)\s*]\s*")
MAX_VALUES = 64


def split_values(text: str) -> list[str]:
    """A1111's values: comma-separated as CSV (a value with a comma is quoted), each stripped."""
    return [value.strip() for row in csv.reader(io.StringIO(text)) for value in row]


def joined_values(values: list) -> str:
    with io.StringIO() as out:
        csv.writer(out).writerow(values)
        return out.getvalue().strip()


def numbers(name: str, text: str, kind: type) -> list:
    """Whole numbers or decimals from A1111's notation: `1, 5, 9`, `1-5` (every one), `1-9 (+2)` (a step), `1-9 [3]`
    (so many, evenly spread)."""
    found: list = []
    for value in split_values(text):
        whole = kind is int
        span, count = (_INT_RANGE if whole else _FLOAT_RANGE).fullmatch(value), \
            (_INT_COUNT if whole else _FLOAT_COUNT).fullmatch(value)
        if count is not None:
            start, end, many = kind(count[1].replace(" ", "")), kind(count[2].replace(" ", "")), int(count[3])
            found += [kind(number) for number in np.linspace(start, end, _bounded(name, many))]
        elif span is not None:
            start, end = kind(span[1].replace(" ", "")), kind(span[2].replace(" ", ""))
            step = kind(span[3]) if span[3] else kind(1)
            if step == 0 or (end - start) / step < 0:
                raise ValueError(f"{name}: the range {value!r} has no values")
            _bounded(name, int((end - start) / step) + 1)
            found += [int(number) for number in range(start, end + 1, step)] if whole else \
                [round(float(number), 8) for number in np.arange(start, end + step / 2, step)]
        else:
            try:
                found.append(kind(value))
            except ValueError:
                raise ValueError(f"{name}: {value!r} is not a {'whole number' if whole else 'number'}") from None
        _bounded(name, len(found))
    return found


def _bounded(name: str, count: int) -> int:
    if count > MAX_VALUES:
        raise ValueError(f"{name}: more than {MAX_VALUES} values")
    return count


def fixed_seed(seed) -> int:
    """A random seed chosen once for all of a script's jobs (A1111's fix_seed), or the seed given."""
    return random.randint(0, MAX_SEED - 64) if seed in (None, "", -1) else seed


def with_entries(infotext: str, entries: dict) -> str:
    """An image's infotext with the script's entries added (the grid's: the first cell's, and how it was made)."""
    prompt, negative, parameters = parse_infotext(infotext)
    return format_infotext(prompt, negative, {**parameters, **entries})
